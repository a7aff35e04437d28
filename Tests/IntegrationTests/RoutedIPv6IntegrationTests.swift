// Routed mode's IPv6 with real hosts: a LAN host on the router's uplink and two guests on routed
// ports, each in its own namespace with IPv6 on. The guests hold an address of the LAN's prefix
// as a /128 and the router's link-local address as gateway, so proxied neighbour discovery makes
// them reachable from the LAN, as proxy ARP does for IPv4. The kernel is asked the same questions
// set up as a vif-route with IPv6 would be (forwarding, proxy_ndp with one proxy entry per guest
// address, a host route per guest address).

import Foundation
import XCTest

final class RoutedIPv6IntegrationTests: XCTestCase {
    /// IPv6 on inside guest `name`'s namespace, `address` on its eth0, and a default route.
    private func enableIPv6(_ lab: Lab, _ name: String, address: String, gateway: String?) throws {
        let g = lab.guest(name)
        try lab.inNamespace(g, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
                                "net.ipv6.conf.eth0.disable_ipv6=0"])
        try lab.inNamespace(g, ["ip", "-6", "addr", "add", address, "dev", "eth0"])
        if let gateway { try lab.inNamespace(g, ["ip", "-6", "route", "add", "default", "via", gateway, "dev", "eth0"]) }
    }

    private func canPing6(_ lab: Lab, from: String, to address: String, timeout: Double = 12) throws -> Bool {
        try eventually(timeout: timeout) {
            try lab.runInNamespace(lab.guest(from), ["ping", "-6", "-c", "1", "-W", "1", "-q", address], timeout: 5).succeeded
        }
    }

    /// userswitchd's router with the LAN host, g1 and g2, IPv4 as in the IPv4 tests and IPv6 on top.
    private func lab6(raOnG2: Bool = false) throws -> (Lab, String, String) {
        let dir = try requireIntegrationPrerequisites()
        let lab = try Lab(binDirectory: dir)
        try lab.addGuest("lan", ip: "10.82.0.7", macSuffix: 1)
        try lab.addGuest("g1", ip: "10.82.0.5", macSuffix: 2)
        try lab.addGuest("g2", ip: "10.82.0.6", macSuffix: 3)
        try lab.startDaemon()
        let router = lab.prefix + "rt"
        try lab.mustCtl(["add-router", router, "uplink=\(lab.guest("lan").port)", "address=10.82.0.1/24",
                         "address6=2001:db8:82::1/64"])
        let show = try lab.ctlJSON(["show"]) as? [[String: Any]]
        let routerLL = try XCTUnwrap(show?.first { $0["mode"] as? String == "route" }?["linkLocal"] as? String)
        try enableIPv6(lab, "lan", address: "2001:db8:82::7/64", gateway: nil)
        try enableIPv6(lab, "g1", address: "2001:db8:82::5/128", gateway: routerLL)
        try enableIPv6(lab, "g2", address: "2001:db8:82::6/128", gateway: raOnG2 ? nil : routerLL)
        for (g, a6) in [("g1", "2001:db8:82::5"), ("g2", "2001:db8:82::6")] {
            var words = ["add-port", router, lab.guest(g).port, "ip=\(lab.guest(g).ip!) \(a6)", "mac=\(lab.guest(g).mac)"]
            if g == "g2" && raOnG2 { words.append("ra=on") }
            try lab.mustCtl(words)
        }
        return (lab, router, routerLL)
    }

    /// What the hosts observe over IPv6, asked of userswitch and of the kernel alike.
    private struct Observations: Equatable {
        var guestReachesLAN: Bool
        var lanReachesGuest: Bool
        var guestReachesGuest: Bool
        var lanSeesGuestAtRouterMAC: Bool
        var hopLimitExceededFromRouter: Bool
        var duplicateAddressDetectionPasses: Bool
    }

    private func observe(_ lab: Lab, lan: String, g1: String, lanIP: String, g1IP: String, g2IP: String, dadIP: String,
                         routerMAC: String, routerIP: String) throws -> Observations {
        let reach = try canPing6(lab, from: g1, to: lanIP)
        let back = try canPing6(lab, from: lan, to: g1IP)
        let across = try canPing6(lab, from: g1, to: g2IP)
        let neigh = try lab.inNamespace(lab.guest(lan), ["ip", "-6", "neigh", "show", g1IP])
        let hop = try lab.runInNamespace(lab.guest(g1), ["ping", "-6", "-c", "1", "-W", "2", "-t", "1", lanIP])
        // A second address on g1, with duplicate-address detection: it must not fail.
        try lab.inNamespace(lab.guest(g1), ["ip", "-6", "addr", "add", dadIP + "/128", "dev", "eth0"])
        let settled = eventually(timeout: 8) {
            !((try? lab.inNamespace(lab.guest(g1), ["ip", "-6", "addr", "show", "dev", "eth0"])) ?? "tentative").contains("tentative")
        }
        let addresses = try lab.inNamespace(lab.guest(g1), ["ip", "-6", "addr", "show", "dev", "eth0"])
        return Observations(guestReachesLAN: reach, lanReachesGuest: back, guestReachesGuest: across,
                            lanSeesGuestAtRouterMAC: neigh.lowercased().contains(routerMAC.lowercased()),
                            hopLimitExceededFromRouter: hop.output.contains("From \(routerIP)") && hop.output.contains("exceeded"),
                            duplicateAddressDetectionPasses: settled && !addresses.contains("dadfailed") && addresses.contains(dadIP))
    }

    func testIPv6IsRoutedAsTheKernelSetUpLikeVifRouteRoutesIt() throws {
        let (lab, router, _) = try lab6()
        defer { lab.tearDown() }
        let show = try lab.ctlJSON(["show"]) as? [[String: Any]]
        let routerMAC = try XCTUnwrap(show?.first { $0["mode"] as? String == "route" }?["mac"] as? String)
        let ours = try observe(lab, lan: "lan", g1: "g1", lanIP: "2001:db8:82::7", g1IP: "2001:db8:82::5", g2IP: "2001:db8:82::6",
                               dadIP: "2001:db8:82::15", routerMAC: routerMAC, routerIP: "2001:db8:82::1")
        XCTAssertEqual(ours, Observations(guestReachesLAN: true, lanReachesGuest: true, guestReachesGuest: true,
                                          lanSeesGuestAtRouterMAC: true, hopLimitExceededFromRouter: true,
                                          duplicateAddressDetectionPasses: true), lab.daemonLogTail())
        let routes = try lab.mustCtl(["routes", router])
        XCTAssertTrue(routes.contains("2001:db8:82::/64 dev \(lab.guest("lan").port) proto connected"), routes)
        XCTAssertTrue(routes.contains("2001:db8:82::5 dev \(lab.guest("g1").port) proto host metric 2"), routes)
        let neighbours = try lab.mustCtl(["neigh", router])
        XCTAssertTrue(neighbours.contains("2001:db8:82::7 dev \(lab.guest("lan").port) lladdr \(lab.guest("lan").mac)"), neighbours)

        // The kernel in a dom0 namespace of its own: forwarding, the router's address on the
        // uplink, proxy_ndp with a proxy entry per guest address, a /128 host route per guest.
        let dom0 = lab.prefix + "-k6"
        try Command.must("ip", ["netns", "add", dom0])
        defer { _ = try? Command.run("ip", ["netns", "del", dom0]) }
        func k(_ a: [String]) throws { try Command.must("ip", ["netns", "exec", dom0] + a) }
        try k(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.proxy_ndp=1",
               "net.ipv6.conf.default.accept_dad=0"])
        try lab.addGuest("klan", ip: "10.83.0.7", macSuffix: 11)
        try lab.addGuest("kg1", ip: "10.83.0.5", macSuffix: 12)
        try lab.addGuest("kg2", ip: "10.83.0.6", macSuffix: 13)
        for g in ["klan", "kg1", "kg2"] {
            try Command.must("ip", ["link", "set", lab.guest(g).port, "netns", dom0])
            try k(["sysctl", "-qw", "net.ipv6.conf.\(lab.guest(g).port).disable_ipv6=0"])
            try k(["ip", "link", "set", lab.guest(g).port, "up"])
        }
        let uplink = lab.guest("klan").port
        try k(["ip", "-6", "addr", "add", "2001:db8:83::1/64", "dev", uplink, "nodad"])
        for (g, a6) in [("kg1", "2001:db8:83::5"), ("kg2", "2001:db8:83::6")] {
            try k(["ip", "-6", "route", "add", a6 + "/128", "dev", lab.guest(g).port, "metric", "2"])
            try k(["ip", "-6", "neigh", "add", "proxy", a6, "dev", uplink])
        }
        // Each guest's gateway: dom0's link-local address on its vif.
        func linkLocal(_ port: String) throws -> String {
            let text = try Command.must("ip", ["netns", "exec", dom0, "ip", "-6", "-o", "addr", "show", "dev", port, "scope", "link"])
            let word = text.split(separator: " ").first { $0.hasPrefix("fe80::") }
            return try XCTUnwrap(word.map { String($0.split(separator: "/")[0]) }, text)
        }
        var kernelLL = ""
        XCTAssertTrue(eventually(timeout: 5) { (try? linkLocal(lab.guest("kg1").port)) != nil })
        try enableIPv6(lab, "klan", address: "2001:db8:83::7/64", gateway: nil)
        for (g, a6) in [("kg1", "2001:db8:83::5/128"), ("kg2", "2001:db8:83::6/128")] {
            kernelLL = try linkLocal(lab.guest(g).port)
            try enableIPv6(lab, g, address: a6, gateway: kernelLL)
        }
        let kernelMAC = try Command.must("ip", ["netns", "exec", dom0, "cat", "/sys/class/net/\(uplink)/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let kernel = try observe(lab, lan: "klan", g1: "kg1", lanIP: "2001:db8:83::7", g1IP: "2001:db8:83::5", g2IP: "2001:db8:83::6",
                                 dadIP: "2001:db8:83::15", routerMAC: kernelMAC, routerIP: "2001:db8:83::1")
        XCTAssertEqual(ours, kernel, "userswitch (left) and the kernel set up like vif-route with IPv6 (right) differ")
    }

    func testIPv6TCPPacketTooBigRouterAdvertisementsAndSpoofing() throws {
        let (lab, router, routerLL) = try lab6(raOnG2: true)
        defer { lab.tearDown() }
        XCTAssertTrue(try canPing6(lab, from: "g1", to: "2001:db8:82::7"), lab.daemonLogTail())
        // GSO super-frames over IPv6 cross whole, both ways.
        try assertTCPTransferArrivesIntact(lab, from: "g1", to: "lan", address: "2001:db8:82::7", bytes: 20 * 1024 * 1024)
        try assertTCPTransferArrivesIntact(lab, from: "lan", to: "g1", address: "2001:db8:82::5", bytes: 10 * 1024 * 1024)
        XCTAssertEqual(try udpEchoes(lab, from: "g1", to: "lan", address: "2001:db8:82::7"), 20)

        // ra=on: g2 learns its default route from the router's advertisements, via its link-local.
        XCTAssertTrue(eventually(timeout: 20) {
            let r = (try? lab.inNamespace(lab.guest("g2"), ["ip", "-6", "route", "show", "default"])) ?? ""
            return r.contains("via \(routerLL)") && r.contains("proto ra")
        }, (try? lab.inNamespace(lab.guest("g2"), ["ip", "-6", "route"])) ?? "")
        XCTAssertTrue(try canPing6(lab, from: "g2", to: "2001:db8:82::7"))
        // g1 has no ra=on: no route from an advertisement.
        XCTAssertFalse(try lab.inNamespace(lab.guest("g1"), ["ip", "-6", "route"]).contains("proto ra"))

        // Packet too big: the uplink's MTU drops to 1400; the router tells the guest, whose
        // path MTU then lets TCP through.
        try Command.must("ip", ["link", "set", lab.guest("lan").port, "mtu", "1400"])
        try lab.inNamespace(lab.guest("lan"), ["ip", "link", "set", "eth0", "mtu", "1400"])
        Thread.sleep(forTimeInterval: 1.5) // the router reads the MTU once a second
        let big = try lab.runInNamespace(lab.guest("g1"), ["ping", "-6", "-c", "1", "-W", "2", "-M", "do", "-s", "1450", "2001:db8:82::7"])
        XCTAssertTrue(big.output.lowercased().contains("too big") || big.output.contains("mtu=1400") || big.output.contains("mtu = 1400"),
                      big.output)
        try assertTCPTransferArrivesIntact(lab, from: "g1", to: "lan", address: "2001:db8:82::7", bytes: 5 * 1024 * 1024)

        // A source g1 does not own never reaches the LAN.
        try lab.inNamespace(lab.guest("g1"), ["ip", "-6", "addr", "add", "2001:db8:82::66/128", "dev", "eth0", "nodad"])
        let spoofed = try lab.runInNamespace(lab.guest("g1"), ["ping", "-6", "-c", "2", "-W", "1", "-I", "2001:db8:82::66", "2001:db8:82::7"])
        XCTAssertNotEqual(spoofed.status, 0, spoofed.output)
        let stats = try lab.ctlJSON(["stats", "--bridge", router])
        let object = JSONSearch.objects(in: stats).first { $0["drops"] != nil } ?? [:]
        let drops = object["drops"] as? [String: Any] ?? [:]
        XCTAssertGreaterThanOrEqual((drops["spoofed-source-ip"] as? Int) ?? 0, 2, "\(drops)")
        XCTAssertGreaterThanOrEqual((drops["packet-too-big"] as? Int) ?? 0, 1, "\(drops)")
        let sent = object["routerEvents"] as? [String: Any] ?? [:]
        XCTAssertGreaterThanOrEqual((sent["router-advertisements"] as? Int) ?? 0, 1, "\(sent)")
        XCTAssertGreaterThanOrEqual((sent["neighbour-advertisements"] as? Int) ?? 0, 1, "\(sent)")
        // Saved with the router, and back the same after a restart.
        let before = try lab.mustCtl(["show-config"])
        XCTAssertTrue(before.contains("2001:db8:82::1/64") && before.contains("2001:db8:82::6"), before)
        XCTAssertNotNil(lab.stopDaemon())
        try lab.startDaemon()
        XCTAssertEqual(try lab.mustCtl(["show-config"]), before)
        XCTAssertTrue(try canPing6(lab, from: "g2", to: "2001:db8:82::7"), lab.daemonLogTail())
    }
}
