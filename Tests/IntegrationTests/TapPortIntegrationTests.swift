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

    /// dom0's TAP port is a local FDB entry: a guest that sends frames with its MAC as source
    /// (measured before: one broadcast, and the next pings from another host to dom0 were lost)
    /// has them dropped and counted, and dom0 stays reachable.
    func testAGuestSpoofingDom0sMACIsDroppedAndDom0StaysReachable() throws {
        let lab = try startedLab()
        try lab.addGuest("h1", ip: "10.79.0.1", macSuffix: 1)
        try lab.addGuest("h2", ip: "10.79.0.3", macSuffix: 2)
        try lab.addPort("h1")
        try lab.addPort("h2")
        let tap = lab.prefix + "tq"
        let ns = lab.prefix + "-tq"
        extraNamespace = ns
        _ = try lab.mustCtl(["add-port", lab.bridge, tap, "type=tap"])
        _ = try Command.must("ip", ["netns", "add", ns])
        _ = try Command.must("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        _ = try Command.must("ip", ["link", "set", tap, "netns", ns])
        _ = try Command.must("ip", ["netns", "exec", ns, "ip", "addr", "add", "10.79.0.2/24", "dev", tap])
        _ = try Command.must("ip", ["netns", "exec", ns, "ip", "link", "set", tap, "up"])
        let dom0MAC = try Command.must("ip", ["netns", "exec", ns, "cat", "/sys/class/net/\(tap)/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        // The entry is there, static, before dom0 has sent a frame.
        let fdb = try lab.mustCtl(["fdb", lab.bridge])
        XCTAssertTrue(fdb.contains(dom0MAC) && fdb.contains("yes"), fdb)
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"))

        let s2 = try lab.packetSocket("h2")
        for _ in 0..<3 {
            try s2.send(TestFrame.make(destination: [UInt8](repeating: 0xFF, count: 6), source: macBytes(dom0MAC), payload: TestFrame.nonce()))
        }
        let ping = try lab.inNamespace(lab.guest("h1"), ["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.79.0.2"], timeout: 20)
        XCTAssertTrue(ping.contains(" 0% packet loss"), "dom0 lost after the spoof:\n\(ping)")
        XCTAssertGreaterThanOrEqual(try lab.dropCounters()["own-address-source"] ?? 0, 3)
        let after = try lab.mustCtl(["fdb", lab.bridge])
        let line = after.split(separator: "\n").first { $0.contains(dom0MAC) } ?? ""
        XCTAssertTrue(line.contains(tap), "dom0's entry moved: \(line)")
    }
}
