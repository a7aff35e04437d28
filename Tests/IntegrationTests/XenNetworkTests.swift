// tools/xen/network-userswitch on a host in a namespace: the "dom0" namespace runs its own
// userswitchd and has a veth `eth0` as its NIC, whose other end sits in an "upstream" namespace
// with the gateway. start must move the NIC's address and default route to the bridge's TAP port
// (dom0 keeps reaching the gateway, now through the switch); stop must put them back.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class XenNetworkTests: XCTestCase {
    private var namespaces: [String] = []
    private var daemon: Process?
    private var work: URL?

    override func tearDown() {
        if let d = daemon { Command.stop(d, grace: 5) }
        for ns in namespaces { _ = try? Command.run("ip", ["netns", "del", ns], timeout: 10) }
        if let w = work { try? FileManager.default.removeItem(at: w) }
        super.tearDown()
    }

    private func inside(_ ns: String, _ command: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try Command.run("ip", ["netns", "exec", ns] + command, environment: environment, timeout: 30)
    }

    @discardableResult
    private func must(_ ns: String, _ command: [String], environment: [String: String] = [:]) throws -> String {
        let r = try inside(ns, command, environment: environment)
        guard r.succeeded else { throw HarnessError.failed("\(ns): \(command.joined(separator: " ")) -> \(r.status): \(r.output)") }
        return r.output
    }

    /// A "dom0" namespace whose NIC eth0 has `net`.2/24 and a default route to the gateway `net`.1
    /// in an "upstream" namespace, with its own userswitchd running. Returns the binaries'
    /// directory, both namespaces and the environment userswitchctl and the script need.
    private func startDom0(tag suffix: String, net: String, net6: String? = nil) throws
        -> (bin: URL, host: String, upstream: String, env: [String: String]) {
        let bin = try requireIntegrationPrerequisites()
        let tag = "u\(getpid() % 100_000)\(suffix)"
        let host = tag + "-dom0", upstream = tag + "-up"
        let w = FileManager.default.temporaryDirectory.appendingPathComponent("usw-net-\(tag)-\(UUID().uuidString.prefix(6))")
        work = w
        try FileManager.default.createDirectory(at: w, withIntermediateDirectories: true)
        for ns in [host, upstream] {
            namespaces.append(ns)
            try Command.must("ip", ["netns", "add", ns])
            if net6 == nil {
                try must(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            } else {
                // IPv6 on, but no router solicitations or autoconfiguration to match around.
                try must(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
                              "net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0"])
            }
            try must(ns, ["ip", "link", "set", "lo", "up"])
        }
        try must(host, ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", upstream])
        try must(host, ["ip", "addr", "add", "\(net).2/24", "dev", "eth0"])
        try must(host, ["ip", "link", "set", "eth0", "up"])
        try must(host, ["ip", "route", "add", "default", "via", "\(net).1"])
        try must(upstream, ["ip", "addr", "add", "\(net).1/24", "dev", "eth0"])
        try must(upstream, ["ip", "link", "set", "eth0", "up"])
        if let net6 {
            try must(host, ["ip", "addr", "add", "\(net6)::2/64", "dev", "eth0", "nodad"])
            try must(host, ["ip", "-6", "route", "add", "default", "via", "\(net6)::1"])
            try must(upstream, ["ip", "addr", "add", "\(net6)::1/64", "dev", "eth0", "nodad"])
        }

        let socket = w.appendingPathComponent("ctl.sock").path
        let env = ["USERSWITCH_SOCKET": socket, "USERSWITCH_STATE_DIR": w.appendingPathComponent("state").path,
                   "PATH": bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
        daemon = try Command.start("ip", ["netns", "exec", host, bin.appendingPathComponent("userswitchd").path,
                                          "--socket", socket, "--config", w.appendingPathComponent("config.json").path],
                                   outputFile: w.appendingPathComponent("userswitchd.log"))
        XCTAssertTrue(eventually(timeout: 10) { FileManager.default.fileExists(atPath: socket) }, "userswitchd did not start")
        return (bin, host, upstream, env)
    }

    func testStartMovesAddressAndRouteToTheBridgeAndStopMovesThemBack() throws {
        let (bin, host, _, env) = try startDom0(tag: "n", net: "10.86.0")

        let script = toolsDirectory.appendingPathComponent("xen/network-userswitch").path
        let start = try inside(host, [script, "start", "bridge=xbr0", "netdev=eth0"], environment: env)
        XCTAssertEqual(start.status, 0, start.output)

        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "xbr0"]).contains("10.86.0.2/24"))
        XCTAssertFalse(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).contains("10.86.0.2"))
        XCTAssertTrue(try must(host, ["ip", "route", "show", "default"]).contains("via 10.86.0.1 dev xbr0"))
        let show = try must(host, [bin.appendingPathComponent("userswitchctl").path, "show"], environment: env)
        XCTAssertTrue(show.contains("eth0") && show.contains("xbr0") && show.contains("tap"), show)
        // dom0 reaches its gateway through the switch now.
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(host, ["ping", "-c", "1", "-W", "1", "-q", "10.86.0.1"]).succeeded) ?? false
        }, "dom0 lost its gateway after start")
        // start again: nothing moves twice, nothing breaks.
        XCTAssertEqual(try inside(host, [script, "start", "bridge=xbr0", "netdev=eth0"], environment: env).status, 0)
        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "xbr0"]).contains("10.86.0.2/24"))
        let status = try inside(host, [script, "status", "bridge=xbr0", "netdev=eth0"], environment: env)
        XCTAssertEqual(status.status, 0)
        XCTAssertTrue(status.output.contains("10.86.0.2/24"), status.output)

        let stop = try inside(host, [script, "stop", "bridge=xbr0"], environment: env)
        XCTAssertEqual(stop.status, 0, stop.output)
        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).contains("10.86.0.2/24"))
        XCTAssertTrue(try must(host, ["ip", "route", "show", "default"]).contains("via 10.86.0.1 dev eth0"))
        XCTAssertFalse(try inside(host, ["ip", "link", "show", "xbr0"]).succeeded, "the TAP port is still there")
        let after = try must(host, [bin.appendingPathComponent("userswitchctl").path, "show"], environment: env)
        XCTAssertFalse(after.contains("xbr0"), after)
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(host, ["ping", "-c", "1", "-W", "1", "-q", "10.86.0.1"]).succeeded) ?? false
        }, "dom0 lost its gateway after stop")
    }

    func testStartModeRoutePutsDom0BehindTheRouterAndStopPutsItBack() throws {
        let (bin, host, upstream, env) = try startDom0(tag: "r", net: "10.87.0")
        let script = toolsDirectory.appendingPathComponent("xen/network-userswitch").path

        // The router's own address is required: it must not be dom0's.
        let refused = try inside(host, [script, "start", "mode=route", "netdev=eth0"], environment: env)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.output.contains("address=A/P"), refused.output)

        let start = try inside(host, [script, "start", "mode=route", "router=xrt0", "netdev=eth0", "address=10.87.0.3/24"],
                               environment: env)
        XCTAssertEqual(start.status, 0, start.output)
        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "xrt0"]).contains("10.87.0.2/24"))
        XCTAssertFalse(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).contains("10.87.0.2"))
        XCTAssertTrue(try must(host, ["ip", "route", "show", "default"]).contains("via 10.87.0.1 dev xrt0"))
        let routes = try must(host, [bin.appendingPathComponent("userswitchctl").path, "routes", "xrt0"], environment: env)
        XCTAssertTrue(routes.contains("10.87.0.2 dev xrt0 proto host metric 1"), routes)
        XCTAssertTrue(routes.contains("default via 10.87.0.1 dev eth0"), routes)
        // dom0 reaches its gateway through the router, and the LAN reaches dom0 (proxy ARP).
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(host, ["ping", "-c", "1", "-W", "1", "-q", "10.87.0.1"]).succeeded) ?? false
        }, "dom0 lost its gateway after start")
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(upstream, ["ping", "-c", "1", "-W", "1", "-q", "10.87.0.2"]).succeeded) ?? false
        }, "the LAN cannot reach dom0 behind the router")
        XCTAssertTrue(try inside(upstream, ["ping", "-c", "1", "-W", "1", "-q", "10.87.0.3"]).succeeded, "the router's own address")
        // start again: nothing moves twice.
        XCTAssertEqual(try inside(host, [script, "start", "mode=route", "router=xrt0", "netdev=eth0", "address=10.87.0.3/24"],
                                  environment: env).status, 0)
        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "xrt0"]).contains("10.87.0.2/24"))

        let stop = try inside(host, [script, "stop", "mode=route", "router=xrt0"], environment: env)
        XCTAssertEqual(stop.status, 0, stop.output)
        XCTAssertTrue(try must(host, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).contains("10.87.0.2/24"))
        XCTAssertTrue(try must(host, ["ip", "route", "show", "default"]).contains("via 10.87.0.1 dev eth0"))
        XCTAssertFalse(try inside(host, ["ip", "link", "show", "xrt0"]).succeeded, "the TAP port is still there")
        let after = try must(host, [bin.appendingPathComponent("userswitchctl").path, "show"], environment: env)
        XCTAssertFalse(after.contains("xrt0"), after)
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(host, ["ping", "-c", "1", "-W", "1", "-q", "10.87.0.1"]).succeeded) ?? false
        }, "dom0 lost its gateway after stop")
    }

    /// Routed mode with IPv6: address6= gives the router its own IPv6 address, the gateway comes
    /// from dom0's IPv6 default route, dom0's global IPv6 address moves to the TAP port with it,
    /// and the LAN reaches dom0 at that address through the router's proxied neighbour discovery.
    func testStartModeRouteCarriesDom0sIPv6AddressAndRoute() throws {
        let (bin, host, upstream, env) = try startDom0(tag: "s", net: "10.88.0", net6: "2001:db8:88")
        let script = toolsDirectory.appendingPathComponent("xen/network-userswitch").path
        let ctl = bin.appendingPathComponent("userswitchctl").path

        let start = try inside(host, [script, "start", "mode=route", "router=xrt6", "netdev=eth0", "address=10.88.0.3/24",
                                      "address6=2001:db8:88::3/64"], environment: env)
        XCTAssertEqual(start.status, 0, start.output)
        XCTAssertTrue(try must(host, ["ip", "-o", "-6", "addr", "show", "dev", "xrt6"]).contains("2001:db8:88::2/64"))
        XCTAssertFalse(try must(host, ["ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]).contains("2001:db8:88::2"))
        XCTAssertTrue(try must(host, ["ip", "-6", "route", "show", "default"]).contains("via 2001:db8:88::1 dev xrt6"))
        let show = try must(host, [ctl, "show", "--json"], environment: env)
        XCTAssertTrue(show.contains("2001:db8:88::3/64") && show.contains("2001:db8:88::1"), show)
        let routes = try must(host, [ctl, "routes", "xrt6"], environment: env)
        XCTAssertTrue(routes.contains("2001:db8:88::2 dev xrt6"), routes)
        XCTAssertTrue(routes.contains("default via 2001:db8:88::1 dev eth0"), routes)
        // Both ways over IPv6, and the router's own IPv6 address answers.
        XCTAssertTrue(eventually(timeout: 10) {
            (try? inside(host, ["ping", "-6", "-c", "1", "-W", "1", "-q", "2001:db8:88::1"]).succeeded) ?? false
        }, "dom0 lost its IPv6 gateway after start")
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(upstream, ["ping", "-6", "-c", "1", "-W", "1", "-q", "2001:db8:88::2"]).succeeded) ?? false
        }, "the LAN cannot reach dom0's IPv6 address behind the router")
        XCTAssertTrue(eventually(timeout: 8) {
            (try? inside(upstream, ["ping", "-6", "-c", "1", "-W", "1", "-q", "2001:db8:88::3"]).succeeded) ?? false
        }, "the router's own IPv6 address")
        // The LAN host learnt dom0's address at the router's MAC: proxied, not bridged.
        let neigh = try must(upstream, ["ip", "-6", "neigh", "show", "2001:db8:88::2"])
        let routerNeigh = try must(upstream, ["ip", "-6", "neigh", "show", "2001:db8:88::3"])
        let mac = { (line: String) in line.split(separator: " ").drop { $0 != "lladdr" }.dropFirst().first.map(String.init) }
        XCTAssertNotNil(mac(neigh), neigh)
        XCTAssertEqual(mac(neigh), mac(routerNeigh), "dom0's address should resolve to the router's MAC: \(neigh) / \(routerNeigh)")

        let stop = try inside(host, [script, "stop", "mode=route", "router=xrt6"], environment: env)
        XCTAssertEqual(stop.status, 0, stop.output)
        XCTAssertTrue(try must(host, ["ip", "-o", "-6", "addr", "show", "dev", "eth0"]).contains("2001:db8:88::2/64"))
        XCTAssertTrue(try must(host, ["ip", "-6", "route", "show", "default"]).contains("via 2001:db8:88::1 dev eth0"))
        XCTAssertTrue(eventually(timeout: 10) {
            (try? inside(host, ["ping", "-6", "-c", "1", "-W", "1", "-q", "2001:db8:88::1"]).succeeded) ?? false
        }, "dom0 lost its IPv6 gateway after stop")
    }
}
