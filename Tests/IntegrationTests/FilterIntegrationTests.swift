// Filtering through real hosts: anti-spoofing with guests in namespaces, and a differential test
// that runs the same ebtables rule sets and the same crafted frames through the Linux bridge with
// ebtables (nft backend, inside a private namespace) and through userswitch, comparing which host
// receives which frame and the rule counters.

import Foundation
import XCTest
import SwitchCore

private func nonceFrame(dst: [UInt8], src: [UInt8], type: UInt16, header: [UInt8], nonce: [UInt8], vlan: UInt16? = nil) -> [UInt8] {
    TestFrame.make(destination: dst, source: src, vlanID: vlan, etherType: type, payload: header + nonce)
}

private func contains(_ f: CapturedFrame, _ nonce: [UInt8]) -> Bool {
    let all = f.payload
    guard all.count >= nonce.count else { return false }
    for i in 0...(all.count - nonce.count) where Array(all[i..<(i + nonce.count)]) == nonce { return true }
    return false
}

/// A valid IPv4/UDP header (the Linux bridge with br_netfilter drops bad IP headers), sized for the
/// 11-byte nonce that follows: 20 + 8 + 11 bytes.
private func udp4(src: [UInt8], dst: [UInt8], sport: UInt16, dport: UInt16, tos: UInt8 = 0) -> [UInt8] {
    var h: [UInt8] = [0x45, tos, 0, 39, 0, 0, 0, 0, 64, 17, 0, 0] + src + dst
    var sum: UInt32 = 0
    for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(h[i]) << 8 | UInt32(h[i + 1]) }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    let c = ~UInt16(sum)
    h[10] = UInt8(c >> 8); h[11] = UInt8(c & 255)
    return h + [UInt8(sport >> 8), UInt8(sport & 255), UInt8(dport >> 8), UInt8(dport & 255), 0, 19, 0, 0]
}

private func arp(op: UInt16, smac: [UInt8], sip: [UInt8], tip: [UInt8]) -> [UInt8] {
    [0, 1, 8, 0, 6, 4, 0, UInt8(op)] + smac + sip + [0, 0, 0, 0, 0, 0] + tip
}

private func udp6(srcLast: UInt8, dport: UInt16) -> [UInt8] {
    let a: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11)
    return [0x60, 0, 0, 0, 0, 19, 17, 64] + a + [srcLast] + a + [9] + [0x03, 0xe8, UInt8(dport >> 8), UInt8(dport & 255), 0, 19, 0, 0]
}

final class FilterIntegrationTests: XCTestCase {
    func testAntiSpoofingDropsSpoofedMACIPAndARP() throws {
        let dir = try requireIntegrationPrerequisites()
        let lab = try Lab(binDirectory: dir)
        defer { lab.tearDown() }
        let h1 = try lab.addGuest("h1", ip: "10.61.0.1", macSuffix: 1)
        try lab.addGuest("h2", ip: "10.61.0.2", macSuffix: 2)
        try lab.startDaemon()
        try lab.addBridge()
        try lab.addPort("h1", ["mac=\(h1.mac)", "ip=10.61.0.1"])
        try lab.addPort("h2")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"), "normal traffic must pass")
        XCTAssertTrue(try lab.mustCtl(["show"]).contains("anti-spoofing"))

        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2")
        s2.drain()
        let me = macBytes(h1.mac), bc: [UInt8] = [255, 255, 255, 255, 255, 255]
        let spoofMAC = [0x02, 0x00, 0x5e, 0x77, 0x77, 0x77] as [UInt8]
        var nonces: [[UInt8]] = []
        for (src, type, header) in [(spoofMAC, TestFrame.etherType, [UInt8]()),
                                    (me, UInt16(0x0800), udp4(src: [10, 61, 0, 99], dst: [10, 61, 0, 2], sport: 9, dport: 9)),
                                    (me, UInt16(0x0806), arp(op: 2, smac: me, sip: [10, 61, 0, 2], tip: [10, 61, 0, 2]))] {
            let n = TestFrame.nonce()
            nonces.append(n)
            try s1.send(nonceFrame(dst: bc, src: src, type: type, header: header, nonce: n))
        }
        let got = s2.collect(for: 1.0) { f in nonces.contains { contains(f, $0) } }
        XCTAssertEqual(got.count, 0, "spoofed frames reached h2")
        let d = try lab.dropCounters()
        XCTAssertEqual(d["spoofed-source-mac"], 1)
        XCTAssertEqual(d["spoofed-source-ip"], 1)
        XCTAssertEqual(d["spoofed-arp"], 1)
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"), "normal traffic still passes")
        // Off: the spoofed MAC passes.
        try lab.mustCtl(["set-port", lab.bridge, h1.port, "anti-spoofing=off"])
        let n = TestFrame.nonce()
        try s1.send(nonceFrame(dst: bc, src: spoofMAC, type: TestFrame.etherType, header: [], nonce: n))
        XCTAssertNotNil(s2.receive(timeout: 2) { contains($0, n) })
    }

    /// Rule sets for the differential test: every match kind, targets, policies, user chains.
    static let ruleSets: [[String]] = [
        ["-A FORWARD -s 02:00:5e:77:77:77 -j DROP"],
        ["-A FORWARD -s ! 02:00:5e:77:77:77 -j DROP"],
        ["-A FORWARD -d Broadcast -j DROP"],
        ["-A FORWARD -d Multicast -j DROP"],
        ["-A FORWARD -d ! Unicast -j ACCEPT", "-P FORWARD DROP"],
        ["-A FORWARD -s 02:00:5e:00:00:00/ff:ff:ff:00:00:00 -j DROP"],
        ["-A FORWARD -p IPv4 -j DROP"],
        ["-A FORWARD -p ! IPv4 -j DROP"],
        ["-A FORWARD -p ARP -j DROP"],
        ["-A FORWARD -p LENGTH -j DROP"],
        ["-A FORWARD -p 802_1Q --vlan-id 10 -j DROP"],
        ["-A FORWARD -p 802_1Q --vlan-id ! 10 -j DROP"],
        ["-A FORWARD -p 802_1Q --vlan-prio 5 -j DROP"],
        ["-A FORWARD -p 802_1Q --vlan-encap IPv4 -j DROP"],
        ["-A FORWARD -p ARP --arp-op Request -j DROP"],
        ["-A FORWARD -p ARP --arp-ip-src 10.62.0.0/24 -j DROP"],
        ["-A FORWARD -p ARP --arp-ip-dst ! 10.62.0.2 -j DROP"],
        ["-A FORWARD -p ARP --arp-mac-src 02:00:5e:77:77:77 -j DROP"],
        ["-A FORWARD -p ARP --arp-gratuitous -j DROP"],
        ["-A FORWARD -p IPv4 --ip-src 10.62.0.1 -j DROP"],
        ["-A FORWARD -p IPv4 --ip-dst 10.62.0.0/16 -j DROP"],
        ["-A FORWARD -p IPv4 --ip-proto udp --ip-dport 67:68 -j DROP"],
        ["-A FORWARD -p IPv4 --ip-proto udp --ip-sport ! 9 -j DROP"],
        ["-A FORWARD -p IPv4 --ip-tos 10 -j DROP"],
        ["-A FORWARD -p IPv6 --ip6-src 2001:db8::5 -j DROP"],
        ["-A FORWARD -p IPv6 --ip6-proto udp --ip6-dport 547 -j DROP"],
        ["-A FORWARD --among-src 02:00:5e:77:77:77,02:00:5e:77:77:78 -j DROP"],
        ["-A FORWARD --among-dst ! ff:ff:ff:ff:ff:ff -j DROP"],
        ["-A FORWARD -i PORT1 -o PORT3 -j DROP"],
        ["-A FORWARD -i PREFIX+ -o ! PORT2 -j DROP"],
        ["-A FORWARD -p IPv4 --ip-proto udp --ip-dport 9 -j DROP"],
        ["-N c1", "-A c1 -p IPv4 -j RETURN", "-A c1 -j DROP", "-A FORWARD -j c1"],
        ["-N c1 -P DROP", "-A c1 -p ARP -j ACCEPT", "-A FORWARD -p ! IPv6 -j c1"],
        ["-A FORWARD -j CONTINUE", "-A FORWARD -p IPv4 -j CONTINUE", "-A FORWARD -s 02:00:5e:77:77:77 -j DROP", "-P FORWARD ACCEPT"],
        ["-P FORWARD DROP", "-A FORWARD -p IPv6 -j ACCEPT"],
    ]

    func testDifferentialAgainstLinuxBridgeWithEbtables() throws {
        let dir = try requireIntegrationPrerequisites()
        try requireTool("ebtables", package: "iptables")
        let lab = try Lab(binDirectory: dir)
        defer { lab.tearDown() }
        // userswitch side: three guests on trunk ports (native VLAN 1), so tagged frames pass as
        // they do through a bridge without VLAN filtering.
        for (i, n) in ["u1", "u2", "u3"].enumerated() { try lab.addGuest(n, ip: nil, macSuffix: UInt8(10 + i)) }
        try lab.startDaemon()
        try lab.addBridge()
        for n in ["u1", "u2", "u3"] { try lab.addPort(n, ["trunks=1-4094", "native=1"]) }
        // Linux side: a bridge in its own namespace with three more guests.
        let linNS = lab.prefix + "-lin"
        try Command.must("ip", ["netns", "add", linNS])
        defer { _ = try? Command.run("ip", ["netns", "del", linNS]) }
        func lin(_ a: [String]) throws -> CommandResult { try Command.run("ip", ["netns", "exec", linNS] + a) }
        _ = try lin(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        _ = try lin(["ip", "link", "add", "br0", "type", "bridge"])
        _ = try lin(["ip", "link", "set", "br0", "up"])
        var linGuests: [String] = []
        for (i, n) in ["l1", "l2", "l3"].enumerated() {
            let g = try lab.addGuest(n, ip: nil, macSuffix: UInt8(20 + i))
            try Command.must("ip", ["link", "set", g.port, "netns", linNS])
            _ = try lin(["ip", "link", "set", g.port, "master", "br0"])
            _ = try lin(["ip", "link", "set", g.port, "up"])
            linGuests.append(g.port)
        }
        // A broken ebtables (no nf_tables in this kernel, say) fails the test: it is the oracle.
        let listing = try lin(["ebtables", "-L"])
        guard listing.succeeded else {
            XCTFail("ebtables does not work in a namespace here: \(listing.output)")
            return
        }

        let sockets = try ["u1", "u2", "u3", "l1", "l2", "l3"].map { try lab.packetSocket($0) }
        let src: [UInt8] = [0x02, 0x00, 0x5e, 0x77, 0x77, 0x77]
        let unknown: [UInt8] = [0x02, 0x00, 0x5e, 0x66, 0x66, 0x66]
        let bc: [UInt8] = [255, 255, 255, 255, 255, 255]
        // (destination, source, type, header, vlan)
        let frames: [([UInt8], [UInt8], UInt16, [UInt8], UInt16?)] = [
            (bc, src, TestFrame.etherType, [], nil),
            (unknown, [0x02, 0x00, 0x5e, 0x77, 0x77, 0x78], TestFrame.etherType, [], nil),
            (bc, src, 0x0806, arp(op: 1, smac: src, sip: [10, 62, 0, 1], tip: [10, 62, 0, 2]), nil),
            (bc, src, 0x0806, arp(op: 2, smac: src, sip: [10, 63, 0, 1], tip: [10, 63, 0, 1]), nil),
            (bc, src, 0x0800, udp4(src: [10, 62, 0, 1], dst: [10, 62, 0, 2], sport: 9, dport: 9, tos: 0x10), nil),
            (unknown, src, 0x0800, udp4(src: [10, 64, 0, 1], dst: [10, 64, 0, 2], sport: 68, dport: 67), nil),
            (bc, src, 0x86DD, udp6(srcLast: 5, dport: 547), nil),
            (bc, src, 0x0800, udp4(src: [10, 62, 0, 1], dst: [10, 62, 0, 2], sport: 9, dport: 9), 10),
            (bc, src, 0x0806, arp(op: 1, smac: src, sip: [10, 62, 0, 1], tip: [10, 62, 0, 2]), 20),
            (bc, src, 0x0026, [0x42, 0x42, 0x03], nil), // 802.3 length field
        ]
        let portsU = ["u1", "u2", "u3"].map { lab.guest($0).port }
        var mismatches: [String] = []
        for rules in FilterIntegrationTests.ruleSets {
            // Reset both.
            _ = try lin(["ebtables", "-F"]); _ = try lin(["ebtables", "-X"])
            for c in ["INPUT", "FORWARD", "OUTPUT"] { _ = try lin(["ebtables", "-P", c, "ACCEPT"]) }
            try lab.mustCtl(["filter", "-F"]); try lab.mustCtl(["filter", "-X"])
            try lab.mustCtl(["filter", "-P", "FORWARD", "ACCEPT"])
            for r in rules {
                func words(_ ports: [String], bridge: String) -> [String] {
                    r.replacingOccurrences(of: "PORT1", with: ports[0]).replacingOccurrences(of: "PORT2", with: ports[1])
                        .replacingOccurrences(of: "PORT3", with: ports[2]).replacingOccurrences(of: "PREFIX", with: String(ports[0].dropLast(2)))
                        .replacingOccurrences(of: "BRIDGE", with: bridge).split(separator: " ").map(String.init)
                }
                let l = try lin(["ebtables"] + words(linGuests, bridge: "br0"))
                XCTAssertTrue(l.succeeded, "ebtables \(r): \(l.output)")
                try lab.mustCtl(["filter"] + words(portsU, bridge: lab.bridge))
            }
            for s in sockets { s.drain() }
            var nonces: [[UInt8]] = []
            for f in frames {
                let n = TestFrame.nonce()
                nonces.append(n)
                let frame = nonceFrame(dst: f.0, src: f.1, type: f.2, header: f.3, nonce: n, vlan: f.4)
                try sockets[0].send(frame)
                try sockets[3].send(frame)
            }
            Thread.sleep(forTimeInterval: 0.3)
            var seen = Array(repeating: Set<Int>(), count: 6)
            for s in [1, 2, 4, 5] {
                for f in sockets[s].collect(for: 0.4, where: { _ in true }) {
                    if let i = nonces.firstIndex(where: { contains(f, $0) }) { seen[s].insert(i) }
                }
            }
            if seen[1] != seen[4] || seen[2] != seen[5] {
                mismatches.append("\(rules): userswitch \(seen[1].sorted())/\(seen[2].sorted()) linux \(seen[4].sorted())/\(seen[5].sorted())")
            }
            // Counters: pcnt of every rule, in listing order.
            func pcnts(_ text: String) -> [String] {
                text.split(separator: "\n").compactMap { line in
                    guard let r = line.range(of: "pcnt = ") else { return nil }
                    return String(line[r.upperBound...].prefix { $0.isNumber })
                }
            }
            let lc = pcnts(try lin(["ebtables", "-L", "--Lc"]).output)
            let uc = pcnts(try lab.mustCtl(["filter", "-L", "--Lc"]))
            if lc != uc { mismatches.append("\(rules): counters userswitch \(uc) linux \(lc)") }
        }
        XCTAssertEqual(mismatches, [], mismatches.joined(separator: "\n"))
    }
}
