// A TAP port made by the switch itself (`add-port BR NAME type=tap`), the way a bridge's own port
// gives the host's stack a way onto the bridge. The test moves the TAP device into a namespace of its
// own so that no address is ever added in the root namespace, pings across the switch to it, and
// checks that the daemon removes the device when it stops.

import Foundation
import XCTest

final class TapPortIntegrationTests: LabTestCase {
    private var extraNamespace: String?

    override func tearDown() {
        super.tearDown()
        if let ns = extraNamespace { _ = try? Command.run("ip", ["netns", "del", ns], timeout: 10) }
    }

    func testTapPortCarriesTrafficAndIsRemovedOnStop() throws {
        let lab = try startedLab()
        try lab.addGuest("h1", ip: "10.78.0.1", macSuffix: 1)
        try lab.addPort("h1")

        let tap = lab.prefix + "tp"
        let ns = lab.prefix + "-tap"
        extraNamespace = ns
        _ = try lab.mustCtl(["add-port", lab.bridge, tap, "type=tap"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"), "the switch did not create \(tap)")
        XCTAssertEqual(try lab.portState(tap), "up")

        _ = try Command.must("ip", ["netns", "add", ns])
        _ = try Command.must("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        _ = try Command.must("ip", ["link", "set", tap, "netns", ns])
        _ = try Command.must("ip", ["netns", "exec", ns, "ip", "addr", "add", "10.78.0.2/24", "dev", tap])
        _ = try Command.must("ip", ["netns", "exec", ns, "ip", "link", "set", tap, "up"])

        let ping = try lab.inNamespace(lab.guest("h1"), ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.78.0.2"], timeout: 20)
        XCTAssertTrue(ping.contains(" 0% packet loss"), "h1 could not ping the TAP port's host stack:\n\(ping)")

        let stopped = try XCTUnwrap(lab.stopDaemon())
        XCTAssertTrue(stopped.exitedOnTerm)
        XCTAssertEqual(stopped.status, 0)
        let after = try Command.run("ip", ["netns", "exec", ns, "ip", "link", "show", tap], timeout: 10)
        XCTAssertNotEqual(after.status, 0, "the TAP device outlived the daemon")
    }
}
