// Frames and a tiny routed network for the router's unit tests: an uplink (port 0) and guest ports
// of MemoryPorts on one RouterEngine, with builders for the ARP and IPv4 frames hosts send.

import SwitchCore
import SwitchRouting
import SwitchTesting
import XCTest

func ip(_ text: String) -> UInt32 { IPv4Prefix.parseAddress(text)! }
func mac(_ text: String) -> MACAddress { MACAddress(text)! }

enum Packet {
    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func ethernet(dst: MACAddress, src: MACAddress, type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var f = dst.bytes + src.bytes + be16(type) + payload
        if f.count < 60 { f += [UInt8](repeating: 0, count: 60 - f.count) }
        return f
    }

    static func arp(op: UInt16, sha: MACAddress, spa: UInt32, tha: MACAddress = .zero, tpa: UInt32,
                    dst: MACAddress = .broadcast) -> [UInt8] {
        ethernet(dst: dst, src: sha, type: 0x0806,
                 be16(1) + be16(0x0800) + [6, 4] + be16(op) + sha.bytes + be32(spa) + tha.bytes + be32(tpa))
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        bytes.withUnsafeBytes { Checksum.of($0.baseAddress!, count: $0.count) }
    }

    /// An IPv4 header (no options) with a valid checksum.
    static func ipv4Header(src: UInt32, dst: UInt32, proto: UInt8, payloadLength: Int, ttl: UInt8 = 64,
                           dontFragment: Bool = false, id: UInt16 = 0x1234) -> [UInt8] {
        var h = [0x45, 0] + be16(UInt16(20 + payloadLength)) + be16(id) + be16(dontFragment ? 0x4000 : 0)
            + [ttl, proto, 0, 0] + be32(src) + be32(dst)
        let c = checksum(h)
        h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xFF)
        return h
    }

    static func udp(src: UInt32, dst: UInt32, sport: UInt16 = 4000, dport: UInt16 = 5000, payload: [UInt8] = Array(repeating: 0xAB, count: 18),
                    ttl: UInt8 = 64, dontFragment: Bool = false, from: MACAddress, to: MACAddress) -> [UInt8] {
        let l4 = be16(sport) + be16(dport) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
        return ethernet(dst: to, src: from, type: 0x0800,
                        ipv4Header(src: src, dst: dst, proto: 17, payloadLength: l4.count, ttl: ttl, dontFragment: dontFragment) + l4)
    }

    static func echoRequest(src: UInt32, dst: UInt32, from: MACAddress, to: MACAddress, ttl: UInt8 = 64) -> [UInt8] {
        var icmp: [UInt8] = [8, 0, 0, 0] + be16(7) + be16(1) + Array("ping".utf8)
        let c = checksum(icmp)
        icmp[2] = UInt8(c >> 8); icmp[3] = UInt8(c & 0xFF)
        return ethernet(dst: to, src: from, type: 0x0800, ipv4Header(src: src, dst: dst, proto: 1, payloadLength: icmp.count, ttl: ttl) + icmp)
    }
}

/// A parsed frame, for assertions.
struct Seen {
    let bytes: [UInt8]
    var dst: MACAddress { MACAddress(bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]) }
    var src: MACAddress { MACAddress(bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11]) }
    var type: UInt16 { UInt16(bytes[12]) << 8 | UInt16(bytes[13]) }
    func u16(_ o: Int) -> UInt16 { UInt16(bytes[o]) << 8 | UInt16(bytes[o + 1]) }
    func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) << 16 | UInt32(u16(o + 2)) }
    // ARP
    var arpOp: UInt16 { u16(20) }
    var arpSHA: MACAddress { MACAddress(bytes[22], bytes[23], bytes[24], bytes[25], bytes[26], bytes[27]) }
    var arpSPA: UInt32 { u32(28) }
    var arpTPA: UInt32 { u32(38) }
    // IPv4
    var ttl: UInt8 { bytes[22] }
    var proto: UInt8 { bytes[23] }
    var ipSource: UInt32 { u32(26) }
    var ipDestination: UInt32 { u32(30) }
    var totalLength: Int { Int(u16(16)) }
    var headerChecksumValid: Bool {
        Array(bytes[14..<34]).withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, count: 20)) == 0xFFFF }
    }
    var icmpType: UInt8 { bytes[34] }
    var icmpCode: UInt8 { bytes[35] }
    var icmpChecksumValid: Bool {
        Array(bytes[34..<(14 + totalLength)]).withUnsafeBytes { Checksum.fold(Checksum.sum($0.baseAddress!, count: $0.count)) == 0xFFFF }
    }
}

/// An uplink and `guests` guest ports on one router at 192.0.2.1/24 (gateway 192.0.2.254).
final class RouterLab {
    static let routerMAC = mac("02:00:00:00:01:01")
    static let lanHostMAC = mac("02:00:00:00:02:01")
    static let gatewayMAC = mac("02:00:00:00:02:fe")
    let engine: RouterEngine<MemoryPort>
    var ports: [MemoryPort] = []
    var now: UInt32 = 1000

    init(guests: [RouterPortConfiguration], gateway: Bool = true, uplinkMTU: Int = 1500,
         settings: RouterSettings = RouterSettings()) throws {
        engine = RouterEngine(mac: RouterLab.routerMAC, settings: settings, maxPorts: 16)
        let uplink = MemoryPort(bufferSize: 70_000)
        ports.append(uplink)
        _ = try engine.addPort(name: "uplink", device: uplink, mtu: uplinkMTU)
        engine.setAddress(ip("192.0.2.1"), mask: 0xFFFF_FF00, gateway: gateway ? ip("192.0.2.254") : nil)
        for (k, c) in guests.enumerated() {
            let p = MemoryPort(bufferSize: 70_000)
            ports.append(p)
            _ = try engine.addPort(name: "vif\(k + 1).0", configuration: c, device: p)
        }
    }

    func send(_ frames: [[UInt8]], on p: Int, vnet: VirtioNetHeader = .none) {
        for f in frames { precondition(ports[p].inject(f, vnet: vnet)) }
        while ports[p].pendingReceive > 0 { engine.poll(port: p, now: now) }
    }
    func send(_ f: [UInt8], on p: Int, vnet: VirtioNetHeader = .none) { send([f], on: p, vnet: vnet) }
    func out(_ p: Int) -> [Seen] { ports[p].drain().map { Seen(bytes: $0) } }
    func outWithHeaders(_ p: Int) -> [(Seen, VirtioNetHeader)] { ports[p].drainWithHeaders().map { (Seen(bytes: $0.bytes), $0.vnet) } }
    func drops(_ r: RouterDropReason) -> UInt64 { engine.dropCount(r) }
    /// Time passes: the neighbour timers run every 100 ms.
    func wait(milliseconds: UInt32) {
        var left = milliseconds
        while left > 0 {
            let step = min(left, 100)
            now &+= step
            left -= step
            engine.housekeeping(now: now)
        }
    }
}
