// The whole switch with real Linux hosts: guests in network namespaces, veth pairs into
// userswitchd in the root namespace, configured through userswitchctl (root only).
//
// Each test builds its own lab (unique pid-based names), and tearDown removes it even when the
// test failed half-way. Every wait has a timeout. Frames are crafted and captured in Swift with
// AF_PACKET sockets inside the guests' namespaces, using the local experimental ethertype 0x88b5
// and a random nonce, so nothing else on the wire can be mistaken for them.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class SwitchIntegrationTests: LabTestCase {
    // MARK: - forwarding between real hosts

    func testPingBetweenEveryPairOfThreeHosts() throws {
        let lab = try startedLab()
        for (i, name) in ["h1", "h2", "h3"].enumerated() {
            try lab.addGuest(name, ip: "10.77.0.\(i + 1)", macSuffix: UInt8(i + 1))
            try lab.addPort(name)
        }
        for from in ["h1", "h2", "h3"] {
            for to in ["h1", "h2", "h3"] where to != from {
                XCTAssertTrue(try lab.canPing(from: from, to: to), "\(from) cannot ping \(to)")
            }
        }
    }

    func testUnknownUnicastIsFloodedUntilTheDestinationIsLearned() throws {
        let lab = try startedLab()
        for (i, name) in ["h1", "h2", "h3"].enumerated() {
            try lab.addGuest(name, ip: nil, macSuffix: UInt8(i + 1))
            try lab.addPort(name)
        }
        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2"), s3 = try lab.packetSocket("h3")
        // A MAC nobody has used yet: the switch cannot know where it is.
        let unknown: [UInt8] = [0x02, 0xee, 0, UInt8.random(in: 0...255), UInt8.random(in: 0...255), 0x42]
        let h1 = macBytes(lab.guest("h1").mac)
        for s in [s1, s2, s3] { s.drain() }

        // 1. Unknown destination: flooded to both other ports (retried while ports come up).
        var seenAtH3 = false
        for _ in 0..<5 where !seenAtH3 {
            let nonce = TestFrame.nonce()
            try s1.send(TestFrame.make(destination: unknown, source: h1, payload: nonce))
            seenAtH3 = s3.receive(timeout: 1) { $0.carries(nonce) } != nil
        }
        XCTAssertTrue(seenAtH3, "a frame to an unknown unicast MAC was not flooded to h3")

        // 2. h2 sends from that MAC: the switch learns it on h2's port.
        try s2.send(TestFrame.make(destination: h1, source: unknown, payload: TestFrame.nonce()))
        usleep(300_000)
        for s in [s1, s2, s3] { s.drain() }

        // 3. The same destination again: only h2 gets it now.
        let nonce = TestFrame.nonce()
        try s1.send(TestFrame.make(destination: unknown, source: h1, payload: nonce))
        XCTAssertNotNil(s2.receive(timeout: 2) { $0.carries(nonce) }, "the learned destination h2 did not get the frame")
        XCTAssertTrue(s3.collect(for: 1) { $0.carries(nonce) }.isEmpty,
                      "a frame to a learned MAC was still flooded to h3")
    }

    /// Long frames that are not GSO super-frames (jumbo MTU): a flooded one reaches both other
    /// hosts whole, a learned one its host, in order; with the default receive path and with
    /// direct receive, which reads a long frame's body from the ingress socket into the switch's
    /// memory for a flood and straight into the one egress port's TX slot otherwise
    /// (PacketSocketPort+Receive.swift).
    func testJumboFramesFloodedAndForwardedArriveWhole() throws {
        try jumboFrames(startedLab())
    }

    /// The alternatives of the long-frame path: direct receive, and every frame through the TX
    /// ring (the default path, sendmsg for long frames, is the test above).
    func testJumboFramesWithDirectReceiveThroughTheTXRing() throws {
        let lab = try XCTUnwrap(lab)
        try lab.startDaemon(environment: ["USERSWITCH_DIRECT_RECEIVE": "1", "USERSWITCH_LONG_SEND": "0"])
        try lab.addBridge()
        try jumboFrames(lab)
    }

    private func jumboFrames(_ lab: Lab) throws {
        for (i, name) in ["h1", "h2", "h3"].enumerated() {
            try lab.addGuest(name, ip: nil, macSuffix: UInt8(i + 1))
            try Command.must("ip", ["link", "set", lab.guest(name).port, "mtu", "9000"])
            try lab.inNamespace(lab.guest(name), ["ip", "link", "set", "eth0", "mtu", "9000"])
            try lab.addPort(name)
        }
        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2"), s3 = try lab.packetSocket("h3")
        let unknown: [UInt8] = [0x02, 0xee, 0, UInt8.random(in: 0...255), UInt8.random(in: 0...255), 0x43]
        let h1 = macBytes(lab.guest("h1").mac), h2 = macBytes(lab.guest("h2").mac)
        func body(_ nonce: [UInt8], _ length: Int) -> [UInt8] { nonce + (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) } }
        // Flooded: every other host gets the whole 8000 bytes, several times in a row.
        var flooded = 0
        for _ in 0..<5 {
            let nonce = TestFrame.nonce(), payload = body(nonce, 8000)
            for s in [s2, s3] { s.drain() }
            try s1.send(TestFrame.make(destination: unknown, source: h1, payload: payload))
            let at2 = s2.receive(timeout: 1) { $0.carries(nonce) }, at3 = s3.receive(timeout: 1) { $0.carries(nonce) }
            if at2?.payload == payload && at3?.payload == payload { flooded += 1 }
        }
        XCTAssertGreaterThanOrEqual(flooded, 4, "flooded jumbo frames did not reach both hosts whole")
        // h2 is learned; jumbo frames to it arrive whole, interleaved with short ones, in order.
        try s2.send(TestFrame.make(destination: h1, source: h2, payload: TestFrame.nonce()))
        usleep(300_000)
        for s in [s1, s2, s3] { s.drain() }
        var sent: [[UInt8]] = []
        for k in 0..<10 {
            let payload = body(TestFrame.nonce(), k % 2 == 0 ? 7000 + k : 40)
            sent.append(payload)
            try s1.send(TestFrame.make(destination: h2, source: h1, payload: payload))
        }
        let got = s2.collect(for: 2) { $0.etherType == TestFrame.etherType }.map { Array($0.payload.prefix(sent[0].count + 20)) }
        let expected = sent.map { $0.count < 46 ? $0 + [UInt8](repeating: 0, count: 46 - $0.count) : $0 }
        XCTAssertEqual(got.count, sent.count, "frames lost")
        XCTAssertTrue(got == expected, "forwarded frames differ or are out of order")
        XCTAssertTrue(s3.collect(for: 0.5) { $0.etherType == TestFrame.etherType }.isEmpty, "learned unicast flooded")
    }

    /// Port security with the real daemon: `max-macs=2` on a port, a third source MAC's frames
    /// are dropped and counted while the first two keep working; `set-port max-macs=0` lifts it;
    /// the limit is shown and saved.
    func testMaxMACsLimitsLearningOnAPort() throws {
        let lab = try startedLab()
        for (i, name) in ["h1", "h2"].enumerated() {
            try lab.addGuest(name, ip: nil, macSuffix: UInt8(i + 1))
        }
        try lab.addPort("h1")
        try lab.addPort("h2", ["max-macs=2"])
        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2")
        let h1 = macBytes(lab.guest("h1").mac)
        let sources: [[UInt8]] = (1...3).map { [0x02, 0xcc, 0, 0, 0, UInt8($0)] }
        for src in sources.prefix(2) { try s2.send(TestFrame.make(destination: h1, source: src, payload: TestFrame.nonce())) }
        usleep(200_000)
        s1.drain()
        let nonce = TestFrame.nonce()
        try s2.send(TestFrame.make(destination: h1, source: sources[2], payload: nonce))
        XCTAssertNil(s1.receive(timeout: 1) { $0.carries(nonce) }, "the third MAC's frame got through")
        XCTAssertEqual(try lab.dropCounters()["mac-limit"], 1)
        let known = TestFrame.nonce()
        try s2.send(TestFrame.make(destination: h1, source: sources[0], payload: known))
        XCTAssertNotNil(s1.receive(timeout: 2) { $0.carries(known) }, "a learned MAC stopped working")
        let fdb = try lab.mustCtl(["fdb", lab.bridge])
        XCTAssertFalse(fdb.contains("02:cc:00:00:00:03"), fdb)
        XCTAssertTrue(try lab.mustCtl(["show-config"]).contains("\"maxMACs\" : 2"))
        let show = try lab.ctlJSON(["show"])
        XCTAssertEqual(JSONSearch.objects(in: show).first { $0["name"] as? String == lab.guest("h2").port }
                        .flatMap { ($0["addresses"] as? [String: Any])?["maxMACs"] as? Int }, 2)
        // Lifted: the third MAC is learned now.
        try lab.mustCtl(["set-port", lab.bridge, lab.guest("h2").port, "max-macs=0"])
        let later = TestFrame.nonce()
        try s2.send(TestFrame.make(destination: h1, source: sources[2], payload: later))
        XCTAssertNotNil(s1.receive(timeout: 2) { $0.carries(later) })
        XCTAssertFalse(try lab.mustCtl(["show-config"]).contains("maxMACs"), "no limit is not saved")
    }

    /// Storm control with the real daemon: a guest limited to 50 broadcasts a second sends 400
    /// at once; the other host gets a tenth of a second's worth and the rest are counted.
    func testStormControlLimitsAGuestsBroadcasts() throws {
        let lab = try startedLab()
        for (i, name) in ["h1", "h2"].enumerated() { try lab.addGuest(name, ip: nil, macSuffix: UInt8(i + 1)) }
        try lab.addPort("h1")
        try lab.addPort("h2", ["storm-broadcast=50"])
        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2")
        s1.drain()
        let nonce = TestFrame.nonce()
        let src = macBytes(lab.guest("h2").mac)
        for _ in 0..<400 { try s2.send(TestFrame.make(destination: [UInt8](repeating: 0xFF, count: 6), source: src, payload: nonce)) }
        let got = s1.collect(for: 1) { $0.carries(nonce) }.count
        XCTAssertGreaterThan(got, 0)
        XCTAssertLessThan(got, 150, "a storm limited to 50/s let \(got) of 400 through")
        XCTAssertGreaterThanOrEqual(try lab.dropCounters()["storm-broadcast"] ?? 0, 250)
        XCTAssertTrue(try lab.mustCtl(["show-config"]).contains("\"broadcast\" : 50"))
        try lab.mustCtl(["set-port", lab.bridge, lab.guest("h2").port, "storm-broadcast=0"])
        XCTAssertFalse(try lab.mustCtl(["show-config"]).contains("storm"))
    }

    func testVLANIsolationAndTrunkTagging() throws {
        let lab = try startedLab()
        try lab.addGuest("a10", ip: nil, macSuffix: 0x10)
        try lab.addGuest("b10", ip: nil, macSuffix: 0x11)
        try lab.addGuest("a20", ip: nil, macSuffix: 0x20)
        try lab.addGuest("tr", ip: nil, macSuffix: 0x99)
        try lab.addPort("a10", ["tag=10"])
        try lab.addPort("b10", ["tag=10"])
        try lab.addPort("a20", ["tag=20"])
        try lab.addPort("tr", ["trunks=10,20"])
        let a10 = try lab.packetSocket("a10"), b10 = try lab.packetSocket("b10")
        let a20 = try lab.packetSocket("a20"), tr = try lab.packetSocket("tr")
        let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        usleep(200_000)
        for s in [a10, b10, a20, tr] { s.drain() }

        // A broadcast from the VLAN 10 access port: to the other VLAN 10 port untagged, to the
        // trunk tagged VID 10, never to VLAN 20.
        var atTrunk: CapturedFrame?
        var nonce: [UInt8] = []
        for _ in 0..<5 where atTrunk == nil {
            nonce = TestFrame.nonce()
            try a10.send(TestFrame.make(destination: broadcast, source: macBytes(lab.guest("a10").mac), payload: nonce))
            atTrunk = tr.receive(timeout: 1) { [nonce] in $0.carries(nonce) }
        }
        let trunkFrame = try XCTUnwrap(atTrunk, "VLAN 10 broadcast did not reach the trunk")
        XCTAssertEqual(trunkFrame.vlanID, 10, "the trunk must receive the VLAN 10 frame tagged with VID 10")
        let atB10 = b10.receive(timeout: 1) { [nonce] in $0.carries(nonce) }
        XCTAssertNotNil(atB10, "VLAN 10 broadcast did not reach the other VLAN 10 access port")
        XCTAssertNil(atB10?.vlanID, "an access port must receive frames untagged")
        XCTAssertTrue(a20.collect(for: 0.5) { [nonce] in $0.carries(nonce) }.isEmpty,
                      "a VLAN 10 broadcast leaked to the VLAN 20 port")

        // A frame tagged VID 20 from the trunk: only the VLAN 20 access port, untagged.
        let trMAC = macBytes(lab.guest("tr").mac)
        let n20 = TestFrame.nonce()
        try tr.send(TestFrame.make(destination: broadcast, source: trMAC, vlanID: 20, payload: n20))
        let atA20 = a20.receive(timeout: 2) { $0.carries(n20) }
        XCTAssertNotNil(atA20, "a VID 20 tagged frame from the trunk did not reach the VLAN 20 port")
        XCTAssertNil(atA20?.vlanID, "the tag must be popped towards an access port")
        XCTAssertTrue(a10.collect(for: 0.5) { $0.carries(n20) }.isEmpty, "a VID 20 frame leaked into VLAN 10")
        XCTAssertTrue(b10.collect(for: 0.1) { $0.carries(n20) }.isEmpty, "a VID 20 frame leaked into VLAN 10")

        // A VLAN the trunk does not carry: dropped everywhere, and counted.
        let before = try lab.dropCounters()
        let n30 = TestFrame.nonce()
        try tr.send(TestFrame.make(destination: broadcast, source: trMAC, vlanID: 30, payload: n30))
        for s in [a10, b10, a20] {
            XCTAssertTrue(s.collect(for: 0.4) { $0.carries(n30) }.isEmpty, "a VID 30 frame was forwarded")
        }
        var after = before
        let counted = try eventually(timeout: 3) {
            after = try lab.dropCounters()
            return Self.increase(before, after, matching: "vlan") > 0
        }
        XCTAssertTrue(counted, "the VID 30 frame was not counted as a VLAN drop; drops before \(before), after \(after)")
    }

    /// Total increase of the drop counters whose reason contains `word` (all reasons when none do).
    private static func increase(_ before: [String: UInt64], _ after: [String: UInt64], matching word: String) -> UInt64 {
        let named = after.keys.filter { $0.lowercased().contains(word) }
        let keys = named.isEmpty ? Array(after.keys) : named
        return keys.reduce(0) { $0 + (after[$1, default: 0] &- min(before[$1, default: 0], after[$1, default: 0])) }
    }

    // MARK: - offloads

    func testTCPTransferOf100MBWithDefaultOffloadsArrivesIntact() throws {
        let lab = try startedLab()
        try lab.addGuest("h1", ip: "10.78.0.1", macSuffix: 1)
        try lab.addGuest("h2", ip: "10.78.0.2", macSuffix: 2)
        try lab.addPort("h1")
        try lab.addPort("h2")
        // The point of the test: veth keeps its default offloads (checksum partial, TSO/GSO).
        let features = try lab.inNamespace(lab.guest("h1"), ["ethtool", "-k", "eth0"])
        XCTAssertTrue(features.contains("tcp-segmentation-offload: on"), "veth offloads are not at their default:\n\(features)")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"), "h1 cannot reach h2")

        try assertTCPTransferArrivesIntact(lab, from: "h1", to: "h2", address: "10.78.0.2", bytes: 100 * 1024 * 1024)
    }

    // MARK: - interfaces that come and go

    func testPortGoesDownWhenItsVethVanishesAndReattachesWhenItReturns() throws {
        let lab = try startedLab()
        try lab.addGuest("h1", ip: "10.79.0.1", macSuffix: 1)
        let h2 = try lab.addGuest("h2", ip: "10.79.0.2", macSuffix: 2)
        try lab.addPort("h1")
        try lab.addPort("h2")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"), "no ping before the veth went away")
        XCTAssertEqual(try lab.portState(h2.port), "up")

        try Command.must("ip", ["link", "del", h2.port])
        var state: String?
        XCTAssertTrue(try eventually(timeout: 10) { state = try lab.portState(h2.port); return state == "down" },
                      "show does not report the vanished port as down (state \(state ?? "absent"))")
        XCTAssertFalse(try lab.runInNamespace(lab.guest("h1"), ["ping", "-c", "1", "-W", "1", "-q", "10.79.0.2"]).succeeded)

        try lab.createVeth(h2)
        XCTAssertTrue(try eventually(timeout: 15) { state = try lab.portState(h2.port); return state == "up" },
                      "the port did not come back up after the veth returned (state \(state ?? "absent"))")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2", timeout: 10), "no ping after the veth returned")
        XCTAssertTrue(try lab.canPing(from: "h2", to: "h1"), "no ping back after the veth returned")
    }

    // MARK: - the daemon's life

    func testDaemonExitsCleanlyOnSIGTERMAndRemovesItsSocket() throws {
        let lab = try startedLab()
        try lab.addGuest("h1", ip: nil, macSuffix: 1)
        try lab.addPort("h1")
        XCTAssertTrue(FileManager.default.fileExists(atPath: lab.socketPath), "no control socket at \(lab.socketPath)")
        let stopped = try XCTUnwrap(lab.stopDaemon(grace: 10))
        XCTAssertTrue(stopped.exitedOnTerm, "userswitchd did not exit within 10 s of SIGTERM")
        XCTAssertEqual(stopped.reason, .exit, "userswitchd died of a signal instead of exiting")
        XCTAssertEqual(stopped.status, 0, "userswitchd exit status on SIGTERM")
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.socketPath), "the control socket was left behind")
    }
}
