// Routed mode with real hosts: a LAN host on the router's uplink and guests on routed ports, each
// in its own network namespace, the router being userswitchd. The guests are set up as a Xen guest
// behind vif-route is: an address in the LAN's prefix and the router's address as gateway, so
// proxy ARP makes them reachable from the LAN as if they were on it.

import Foundation
import XCTest

final class RoutedIntegrationTests: XCTestCase {
    private func routedLab(environment: [String: String] = [:]) throws -> (Lab, String) {
        let dir = try requireIntegrationPrerequisites()
        let lab = try Lab(binDirectory: dir)
        try lab.addGuest("lan", ip: "10.80.0.7", macSuffix: 1)
        try lab.addGuest("g1", ip: "10.80.0.5", macSuffix: 2)
        try lab.addGuest("g2", ip: "10.80.0.6", macSuffix: 3)
        for g in ["g1", "g2"] { try lab.inNamespace(lab.guest(g), ["ip", "route", "add", "default", "via", "10.80.0.1"]) }
        try lab.startDaemon(environment: environment)
        let router = lab.prefix + "rt"
        try lab.mustCtl(["add-router", router, "uplink=\(lab.guest("lan").port)", "address=10.80.0.1/24"])
        for g in ["g1", "g2"] {
            try lab.mustCtl(["add-port", router, lab.guest(g).port, "ip=\(lab.guest(g).ip!)", "mac=\(lab.guest(g).mac)"])
        }
        return (lab, router)
    }

    func testGuestsAndTheLANReachEachOtherThroughTheRouter() throws {
        let (lab, router) = try routedLab()
        defer { lab.tearDown() }
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"), lab.daemonLogTail())
        XCTAssertTrue(try lab.canPing(from: "lan", to: "g1"))
        XCTAssertTrue(try lab.canPing(from: "g1", to: "g2"), "guest to guest is routed")
        // Proxy ARP: the LAN host holds the guest's address at the router's MAC.
        let routerMAC = try XCTUnwrap((try lab.ctlJSON(["show"]) as? [[String: Any]])?.first { $0["mode"] as? String == "route" }?["mac"] as? String)
        let neigh = try lab.inNamespace(lab.guest("lan"), ["ip", "neigh", "show", "10.80.0.5"])
        XCTAssertTrue(neigh.contains(routerMAC), "LAN host's neighbour entry for the guest: \(neigh)")
        // The router's own tables, as ip route / ip neigh print them.
        let routes = try lab.mustCtl(["routes", router])
        XCTAssertTrue(routes.contains("10.80.0.0/24 dev \(lab.guest("lan").port) proto connected"), routes)
        XCTAssertTrue(routes.contains("10.80.0.5 dev \(lab.guest("g1").port) proto host metric 2"), routes)
        let neighbours = try lab.mustCtl(["neigh", router])
        XCTAssertTrue(neighbours.contains("10.80.0.7 dev \(lab.guest("lan").port) lladdr \(lab.guest("lan").mac)"), neighbours)
    }

    func testTCPAndUDPCrossTheRouterBothWaysWithDefaultOffloads() throws {
        let (lab, _) = try routedLab()
        defer { lab.tearDown() }
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        // GSO super-frames cross the router whole: the TCP stream keeps the guests' offloads.
        try assertTCPTransferArrivesIntact(lab, from: "g1", to: "lan", address: "10.80.0.7", bytes: 50 * 1024 * 1024)
        try assertTCPTransferArrivesIntact(lab, from: "lan", to: "g2", address: "10.80.0.6", bytes: 20 * 1024 * 1024)
        XCTAssertEqual(try udpEchoes(lab, from: "g2", to: "lan", address: "10.80.0.7"), 20)
        XCTAssertEqual(try udpEchoes(lab, from: "lan", to: "g1", address: "10.80.0.5", size: 3000), 20, "fragmented datagrams too")
    }

    /// Long frames that are not GSO super-frames (a jumbo LAN): an 8000-byte echo request to the
    /// router itself is answered whole, an 8000-byte datagram to a guest on a 1500-byte link is
    /// fragmented, and TCP between jumbo hosts crosses; with the default receive path and with
    /// direct receive, where the router reads a long frame's body from the socket only when a
    /// stage needs it whole (PacketSocketPort+Receive.swift).
    func testJumboFramesAreAnsweredFragmentedAndForwardedWhole() throws {
        try jumboFrames(environment: [:])
    }

    func testJumboFramesWithDirectReceive() throws {
        try jumboFrames(environment: ["USERSWITCH_DIRECT_RECEIVE": "1"])
    }

    /// The same with every long frame through the TX ring (PacketSocketPort+Transmit.swift,
    /// "Long frames": sendmsg is the default).
    func testJumboFramesThroughTheTXRing() throws {
        try jumboFrames(environment: ["USERSWITCH_LONG_SEND": "0"])
    }

    private func jumboFrames(environment: [String: String]) throws {
        let (lab, router) = try routedLab(environment: environment)
        defer { lab.tearDown() }
        for port in [lab.guest("lan").port, lab.guest("g2").port] { try Command.must("ip", ["link", "set", port, "mtu", "9000"]) }
        for g in ["lan", "g2"] { try lab.inNamespace(lab.guest(g), ["ip", "link", "set", "eth0", "mtu", "9000"]) }
        // The LAN host sends its datagrams without DF, so the router fragments them.
        try lab.inNamespace(lab.guest("lan"), ["sysctl", "-qw", "net.ipv4.ip_no_pmtu_disc=1"])
        XCTAssertTrue(try lab.canPing(from: "lan", to: "g1"))
        Thread.sleep(forTimeInterval: 1.5) // the router reads the MTUs once a second
        let big = try lab.runInNamespace(lab.guest("lan"), ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "8000", "10.80.0.1"])
        XCTAssertTrue(big.output.contains("3 received"), "the router's own address, 8000 bytes: \(big.output)")
        XCTAssertTrue(big.output.contains("8008 bytes from 10.80.0.1"), big.output)
        XCTAssertEqual(try udpEchoes(lab, from: "lan", to: "g1", address: "10.80.0.5", size: 8000), 20,
                       "8000-byte datagrams fragmented towards the 1500-byte guest link and back")
        try assertTCPTransferArrivesIntact(lab, from: "lan", to: "g2", address: "10.80.0.6", bytes: 20 * 1024 * 1024)
        let stats = try lab.ctlJSON(["stats", "--bridge", router])
        let object = JSONSearch.objects(in: stats).first { $0["drops"] != nil } ?? [:]
        let sent = object["routerEvents"] as? [String: Any] ?? [:]
        XCTAssertGreaterThanOrEqual((sent["fragmented"] as? Int) ?? 0, 20, "\(sent)")
        XCTAssertGreaterThanOrEqual((sent["echo-replies"] as? Int) ?? 0, 3, "\(sent)")
    }

    func testPathMTUDiscoveryWorksThroughASmallerUplinkMTU() throws {
        let (lab, _) = try routedLab()
        defer { lab.tearDown() }
        // The uplink's MTU drops to 1400 while the router runs; the LAN host's side too.
        try Command.must("ip", ["link", "set", lab.guest("lan").port, "mtu", "1400"])
        try lab.inNamespace(lab.guest("lan"), ["ip", "link", "set", "eth0", "mtu", "1400"])
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        Thread.sleep(forTimeInterval: 1.5) // the router reads the MTU once a second
        let big = try lab.runInNamespace(lab.guest("g1"), ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1450", "10.80.0.7"])
        XCTAssertTrue(big.output.contains("mtu = 1400") || big.output.contains("Frag needed"), big.output)
        // TCP finds the path MTU and goes through.
        try assertTCPTransferArrivesIntact(lab, from: "g1", to: "lan", address: "10.80.0.7", bytes: 10 * 1024 * 1024)
    }

    func testTheRoutersForwardChainFiltersAndIsSaved() throws {
        let (lab, router) = try routedLab()
        defer { lab.tearDown() }
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        try lab.mustCtl(["filter", "--bridge", router, "-A", "FORWARD", "-i", lab.guest("g1").port, "-p", "IPv4",
                         "--ip-proto", "icmp", "-j", "DROP"])
        let blocked = try lab.runInNamespace(lab.guest("g1"), ["ping", "-c", "2", "-W", "1", "10.80.0.7"])
        XCTAssertNotEqual(blocked.status, 0, "the FORWARD rule let ICMP through: \(blocked.output)")
        XCTAssertTrue(try lab.canPing(from: "g2", to: "lan"), "another guest is not matched")
        let listing = try lab.mustCtl(["filter", "--bridge", router, "-L", "--Lc"])
        XCTAssertTrue(listing.contains("pcnt = 2"), listing)
        XCTAssertTrue(try lab.mustCtl(["show-config"]).contains("--ip-proto icmp"), "the rules are saved with the router")
    }

    /// Routed and bridged guests on one host: a veth pair joins a bridge port to a router port that
    /// carries the bridged segment's prefix (docs/routing.md, "A router and a bridge").
    func testARouterAndABridgeJoinedByAVethPairRouteBetweenRoutedAndBridgedGuests() throws {
        let (lab, router) = try routedLab()
        defer { lab.tearDown() }
        for (name, ip, k) in [("b1", "10.90.0.11", 21), ("b2", "10.90.0.12", 22)] {
            let g = try lab.addGuest(name, ip: ip, macSuffix: UInt8(k))
            // The router's address as gateway, on the link, as a routed guest has it.
            try lab.inNamespace(g, ["ip", "route", "add", "10.80.0.1", "dev", "eth0"])
            try lab.inNamespace(g, ["ip", "route", "add", "default", "via", "10.80.0.1"])
        }
        try lab.addBridge()
        try lab.addPort("b1")
        try lab.addPort("b2")
        let toBridge = lab.prefix + "vb", toRouter = lab.prefix + "vr"
        try Command.must("ip", ["link", "add", toBridge, "type", "veth", "peer", "name", toRouter])
        defer { _ = try? Command.run("ip", ["link", "del", toBridge]) }
        for d in [toBridge, toRouter] {
            try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(d)/disable_ipv6", atomically: false, encoding: .utf8)
            try Command.must("ip", ["link", "set", d, "up"])
        }
        try lab.mustCtl(["add-port", lab.bridge, toBridge])
        try lab.mustCtl(["add-port", router, toRouter, "ip=10.90.0.0/24"])
        try lab.inNamespace(lab.guest("lan"), ["ip", "route", "add", "10.90.0.0/24", "via", "10.80.0.1"])
        XCTAssertTrue(try lab.canPing(from: "b1", to: "g1"), "bridged guest to routed guest")
        XCTAssertTrue(try lab.canPing(from: "g2", to: "b2"), "routed guest to bridged guest")
        XCTAssertTrue(try lab.canPing(from: "lan", to: "b1"), "the LAN to a bridged guest")
        XCTAssertTrue(try lab.canPing(from: "b1", to: "b2"), "the bridged guests still switch between them")
        let neighbours = try lab.mustCtl(["neigh", router])
        XCTAssertTrue(neighbours.contains("10.90.0.11 dev \(toRouter) lladdr \(lab.guest("b1").mac)"), neighbours)
    }

    func testTTLOfOneGetsTimeExceededFromTheRouter() throws {
        let (lab, _) = try routedLab()
        defer { lab.tearDown() }
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        let r = try lab.runInNamespace(lab.guest("g1"), ["ping", "-c", "1", "-W", "2", "-t", "1", "10.80.0.7"])
        XCTAssertTrue(r.output.contains("From 10.80.0.1") && r.output.contains("exceeded"), r.output)
    }

    func testGuestDuplicateAddressDetectionPassesAndSpoofedSourcesAreDropped() throws {
        let (lab, router) = try routedLab()
        defer { lab.tearDown() }
        // arping -D: duplicate address detection of the guest's own address gets no answer.
        let dad = try lab.runInNamespace(lab.guest("g1"), ["arping", "-D", "-c", "2", "-w", "3", "-I", "eth0", "10.80.0.5"])
        XCTAssertEqual(dad.status, 0, "DAD found a duplicate: \(dad.output)")
        // A source the guest does not own never reaches the LAN (the guest knows the LAN host's MAC
        // first, so its pings go out; its ARP from that source would be dropped as spoofed-arp).
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        try lab.inNamespace(lab.guest("g1"), ["ip", "addr", "add", "10.80.0.66/32", "dev", "eth0"])
        let spoofed = try lab.runInNamespace(lab.guest("g1"), ["ping", "-c", "2", "-W", "1", "-I", "10.80.0.66", "10.80.0.7"])
        XCTAssertNotEqual(spoofed.status, 0, spoofed.output)
        let stats = try lab.ctlJSON(["stats", "--bridge", router])
        let drops = JSONSearch.objects(in: stats).compactMap { $0["drops"] as? [String: Any] }.first ?? [:]
        XCTAssertGreaterThanOrEqual((drops["spoofed-source-ip"] as? Int) ?? 0, 2, "\(drops)")
    }

    func testRouterIsSavedAndComesBackAfterSIGKILL() throws {
        let (lab, router) = try routedLab()
        defer { lab.tearDown() }
        try lab.mustCtl(["route-add", router, "192.0.2.0/24", "via", "10.80.0.7"])
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"))
        let before = try lab.mustCtl(["show-config"])
        XCTAssertTrue(before.contains("\"routers\""), before)
        XCTAssertTrue(before.contains("192.0.2.0/24"), before)
        // Under traffic: a ping every 50 ms from a guest to the LAN while the daemon dies.
        let pingLog = lab.workDirectory.appendingPathComponent("routed-ping.log")
        let pinger = try lab.startInNamespace(lab.guest("g1"), ["ping", "-i", "0.05", "10.80.0.7"], outputFile: pingLog)
        usleep(500_000)
        let d = try XCTUnwrap(lab.daemon)
        kill(d.processIdentifier, SIGKILL)
        XCTAssertEqual(lab.stopDaemon()?.reason, .uncaughtSignal)
        XCTAssertTrue(pinger.isRunning)
        try lab.startDaemon()
        // The pings get answers again by themselves, without any command.
        let answeredBefore = ((try? String(contentsOf: pingLog, encoding: .utf8)) ?? "").components(separatedBy: "bytes from").count
        XCTAssertTrue(eventually(timeout: 10) {
            ((try? String(contentsOf: pingLog, encoding: .utf8)) ?? "").components(separatedBy: "bytes from").count > answeredBefore + 5
        }, "traffic did not resume after the restart")
        XCTAssertEqual(try lab.mustCtl(["show-config"]), before, "the same configuration after a restart")
        XCTAssertTrue(try lab.canPing(from: "g1", to: "lan"), lab.daemonLogTail())
        XCTAssertTrue(try lab.canPing(from: "lan", to: "g2"))
        let routes = try lab.mustCtl(["routes", router])
        XCTAssertTrue(routes.contains("192.0.2.0/24 via 10.80.0.7 dev \(lab.guest("lan").port) proto static"), routes)
    }

    /// What the hosts observe of a routed set-up: the same questions put to userswitch and to the
    /// kernel set up as vif-route and network-route do.
    private struct Observations: Equatable {
        var guestReachesLAN: Bool
        var lanReachesGuest: Bool
        var guestReachesGuest: Bool
        var lanSeesGuestAtRouterMAC: Bool
        var ttlExceededFromRouter: Bool
        var duplicateAddressDetectionPasses: Bool
    }

    private func observe(_ lab: Lab, lan: String, g1: String, g2: String, routerMAC: String, routerIP: String) throws -> Observations {
        let reach = try lab.canPing(from: g1, to: lan)
        let back = try lab.canPing(from: lan, to: g1)
        let across = try lab.canPing(from: g1, to: g2)
        let neigh = try lab.inNamespace(lab.guest(lan), ["ip", "neigh", "show", lab.guest(g1).ip!])
        let ttl = try lab.runInNamespace(lab.guest(g1), ["ping", "-c", "1", "-W", "2", "-t", "1", lab.guest(lan).ip!])
        let dad = try lab.runInNamespace(lab.guest(g1), ["arping", "-D", "-c", "2", "-w", "3", "-I", "eth0", lab.guest(g1).ip!])
        return Observations(guestReachesLAN: reach, lanReachesGuest: back, guestReachesGuest: across,
                            lanSeesGuestAtRouterMAC: neigh.lowercased().contains(routerMAC.lowercased()),
                            ttlExceededFromRouter: ttl.output.contains("From \(routerIP)") && ttl.output.contains("exceeded"),
                            duplicateAddressDetectionPasses: dad.status == 0)
    }

    func testTheKernelSetUpAsVifRouteDoesGivesTheSameObservations() throws {
        let (lab, _) = try routedLab()
        defer { lab.tearDown() }
        let routerMAC = try XCTUnwrap((try lab.ctlJSON(["show"]) as? [[String: Any]])?.first { $0["mode"] as? String == "route" }?["mac"] as? String)
        let ours = try observe(lab, lan: "lan", g1: "g1", g2: "g2", routerMAC: routerMAC, routerIP: "10.80.0.1")

        // The kernel: dom0 in a namespace of its own, with the switch-side ends of three more hosts,
        // set up as network-route (ip_forward, proxy ARP on the uplink, dom0's address on it) and
        // vif-route (dom0's address as /32 on each vif, proxy ARP on it, a host route per guest
        // address with metric 2) do.
        let dom0 = lab.prefix + "-k0"
        try Command.must("ip", ["netns", "add", dom0])
        defer { _ = try? Command.run("ip", ["netns", "del", dom0]) }
        func k(_ a: [String]) throws { try Command.must("ip", ["netns", "exec", dom0] + a) }
        try lab.addGuest("klan", ip: "10.81.0.7", macSuffix: 11)
        try lab.addGuest("kg1", ip: "10.81.0.5", macSuffix: 12)
        try lab.addGuest("kg2", ip: "10.81.0.6", macSuffix: 13)
        for g in ["kg1", "kg2"] { try lab.inNamespace(lab.guest(g), ["ip", "route", "add", "default", "via", "10.81.0.1"]) }
        try k(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1"])
        for g in ["klan", "kg1", "kg2"] {
            try Command.must("ip", ["link", "set", lab.guest(g).port, "netns", dom0])
            try k(["ip", "link", "set", lab.guest(g).port, "up"])
        }
        let uplink = lab.guest("klan").port
        try k(["ip", "addr", "add", "10.81.0.1/24", "dev", uplink])
        try k(["sysctl", "-qw", "net.ipv4.conf.\(uplink).proxy_arp=1"])
        for g in ["kg1", "kg2"] {
            let vif = lab.guest(g).port
            try k(["ip", "addr", "add", "10.81.0.1/32", "dev", vif])
            try k(["sysctl", "-qw", "net.ipv4.conf.\(vif).proxy_arp=1"])
            try k(["ip", "route", "add", lab.guest(g).ip!, "dev", vif, "metric", "2"])
        }
        let kernelMAC = try Command.must("ip", ["netns", "exec", dom0, "cat", "/sys/class/net/\(uplink)/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let kernel = try observe(lab, lan: "klan", g1: "kg1", g2: "kg2", routerMAC: kernelMAC, routerIP: "10.81.0.1")
        XCTAssertEqual(ours, kernel, "userswitch (left) and the kernel as vif-route sets it up (right) differ")
        XCTAssertEqual(ours, Observations(guestReachesLAN: true, lanReachesGuest: true, guestReachesGuest: true,
                                          lanSeesGuestAtRouterMAC: true, ttlExceededFromRouter: true,
                                          duplicateAddressDetectionPasses: true))
    }
}
