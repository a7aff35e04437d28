// The router's DHCP server (`dhcp=on`) with a real client: a guest namespace whose eth0 has no
// address runs Debian's ISC dhclient with its own dhclient-script, gets the port's address as a
// /32 with the router as gateway and the DNS servers of `dns=`, and reaches the LAN host through
// the router; releasing the lease is counted. The kernel has no DHCP server to compare with (vif-route
// has none either; vif-nat uses ISC dhcpd), so the client's own view is the oracle: the address,
// routes and resolv.conf that dhclient-script made from the server's answer.

import Foundation
import XCTest

final class RoutedDHCPIntegrationTests: XCTestCase {
    func testAGuestWithoutAnAddressGetsItsPortsAddressByDHCPAndReachesTheLAN() throws {
        let dir = try requireIntegrationPrerequisites()
        try requireTool("dhclient", package: "isc-dhcp-client")
        let lab = try Lab(binDirectory: dir)
        defer { lab.tearDown() }
        try lab.addGuest("lan", ip: "10.83.0.7", macSuffix: 1)
        let g = try lab.addGuest("g1", ip: nil, macSuffix: 2)
        // dhclient-script writes /etc/resolv.conf: `ip netns exec` bind-mounts this file over it
        // inside the guest's namespace, so the host's own file is never touched (checked below).
        let etc = URL(fileURLWithPath: "/etc/netns/\(g.namespace)")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: etc) }
        try "".write(to: etc.appendingPathComponent("resolv.conf"), atomically: true, encoding: .utf8)
        let hostResolv = try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)

        try lab.startDaemon()
        let router = lab.prefix + "rt"
        try lab.mustCtl(["add-router", router, "uplink=\(lab.guest("lan").port)", "address=10.83.0.1/24",
                         "dns=10.83.0.53 10.83.0.54"])
        try lab.mustCtl(["add-port", router, g.port, "ip=10.83.0.5", "mac=\(g.mac)", "dhcp=on"])
        XCTAssertTrue(try lab.mustCtl(["show"]).contains("guest dhcp"), "show marks the port")

        let pidFile = lab.workDirectory.appendingPathComponent("dhclient.pid").path
        let leaseFile = lab.workDirectory.appendingPathComponent("dhclient.leases").path
        // In the foreground (-d), so the lab stops it by its process id; its log shows the exchange.
        let log = lab.workDirectory.appendingPathComponent("dhclient.log")
        let client = try lab.startInNamespace(g, ["dhclient", "-4", "-d", "-v", "-pf", pidFile, "-lf", leaseFile, "eth0"],
                                              outputFile: log)
        var output = ""
        let bound = eventually(timeout: 30) {
            output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return output.contains("bound to 10.83.0.5")
        }
        XCTAssertTrue(bound, "dhclient got no lease: \(output)\n\(lab.daemonLogTail())")
        XCTAssertTrue(output.contains("DHCPOFFER of 10.83.0.5 from 10.83.0.1"), output)
        XCTAssertTrue(output.contains("DHCPACK of 10.83.0.5 from 10.83.0.1"), output)
        guard bound else { return }

        // What dhclient-script made of the answer: the address as a /32, the router on-link and the
        // default route through it, the MTU, the DNS servers.
        let addr = try lab.inNamespace(g, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        XCTAssertTrue(addr.contains("inet 10.83.0.5/32"), addr)
        let routes = try lab.inNamespace(g, ["ip", "-4", "route", "show"])
        XCTAssertTrue(routes.contains("default via 10.83.0.1 dev eth0"), routes)
        XCTAssertTrue(routes.contains("10.83.0.1 dev eth0"), routes)
        let resolv = try String(contentsOf: etc.appendingPathComponent("resolv.conf"), encoding: .utf8)
        XCTAssertTrue(resolv.contains("nameserver 10.83.0.53") && resolv.contains("nameserver 10.83.0.54"), resolv)
        XCTAssertEqual(try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8), hostResolv, "the host's resolv.conf changed")
        let lease = try String(contentsOfFile: leaseFile, encoding: .utf8)
        XCTAssertTrue(lease.contains("option dhcp-lease-time 86400"), lease)
        XCTAssertTrue(lease.contains("option subnet-mask 255.255.255.255"), lease)

        // The guest, configured by DHCP alone, reaches the LAN host and back through the router.
        XCTAssertTrue(try eventually(timeout: 8) {
            try lab.runInNamespace(g, ["ping", "-c", "1", "-W", "1", "-q", "10.83.0.7"], timeout: 5).succeeded
        }, "the guest cannot reach the LAN host with its DHCP configuration")
        XCTAssertTrue(try eventually(timeout: 8) {
            try lab.runInNamespace(lab.guest("lan"), ["ping", "-c", "1", "-W", "1", "-q", "10.83.0.5"], timeout: 5).succeeded
        }, "the LAN host cannot reach the guest")

        // A release is counted (`dhclient -r` reads the lease from the lease file and sends it).
        Command.stop(client, grace: 2)
        let release = try lab.runInNamespace(g, ["timeout", "20", "dhclient", "-4", "-r", "-v",
                                                 "-pf", pidFile + ".release", "-lf", leaseFile, "eth0"], timeout: 25)
        XCTAssertEqual(release.status, 0, release.output)
        func routerStats() throws -> [String: Any] {
            JSONSearch.objects(in: try lab.ctlJSON(["stats", "--bridge", router])).first { $0["drops"] != nil } ?? [:]
        }
        var events: [String: Int] = [:]
        XCTAssertTrue(try eventually(timeout: 5) {
            events = (try routerStats()["routerEvents"] as? [String: Any] ?? [:]).compactMapValues { $0 as? Int }
            return (events["dhcp-releases"] ?? 0) >= 1
        }, "no release counted: \(events)")
        XCTAssertEqual(events["dhcp-offers"], 1, "\(events)")
        XCTAssertEqual(events["dhcp-acks"], 1)
        XCTAssertEqual(events["dhcp-naks"], 0)
        XCTAssertEqual(events["dhcp-releases"], 1)
        let drops = try routerStats()["drops"] as? [String: Any] ?? [:]
        XCTAssertEqual(drops["bad-dhcp"] as? Int, 0, "\(drops)")
        XCTAssertEqual(drops["dhcp-ignored"] as? Int, 0, "\(drops)")

        // Saved with the router: a restart keeps dhcp=on and the DNS servers.
        let config = try lab.mustCtl(["show-config"])
        XCTAssertTrue(config.contains("\"dhcp\" : true") || config.contains("\"dhcp\": true"), config)
        XCTAssertTrue(config.contains("10.83.0.53"), config)
    }
}
