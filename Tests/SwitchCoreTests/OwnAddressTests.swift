// The switch's own addresses (a TAP port's MAC: dom0's stack) as local FDB entries, through
// BridgeEngine with MemoryPorts: they never move or age, a frame from another port with such a
// source is dropped and counted (`own-address-source`) while dom0's traffic keeps its way, and
// they follow the port's VLANs and leave with it.

import SwitchCore
import SwitchTesting
import XCTest

final class OwnAddressTests: XCTestCase {
    let dom0 = Frame.host(0x10), guest = Frame.host(2), other = Frame.host(3)

    func testAGuestCannotTakeOverDom0sAddress() throws {
        // Port 0 is dom0's TAP port; measured before this change: one broadcast from a guest with
        // dom0's MAC as source moved the entry, and frames for dom0 went to the guest.
        let lab = try Lab(accessPorts: 3)
        XCTAssertTrue(lab.engine.setLocalMAC(0, dom0))
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: dom0), 0, "a local entry before dom0 sent anything")
        let spoof = Frame.ethernet(dst: .broadcast, src: dom0)
        lab.send(spoof, on: 1)
        XCTAssertEqual(lab.outAll(), [[], [], []], "the spoofed broadcast is not forwarded")
        assertDrops(lab, [.ownAddressSource: 1])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: dom0), 0, "the entry did not move")
        // Another host still reaches dom0, and only dom0.
        let toDom0 = Frame.ethernet(dst: dom0, src: other)
        lab.send(toDom0, on: 2)
        XCTAssertEqual(lab.outAll(), [[toDom0], [], []])
        // dom0's own frames go out as ever, and refresh nothing that could age.
        let fromDom0 = Frame.ethernet(dst: other, src: dom0)
        lab.send(fromDom0, on: 0, now: 10_000_000)
        XCTAssertEqual(lab.outAll(), [[], [], [fromDom0]])
        lab.engine.age(now: 10_000_000)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: dom0), 0, "a local entry never ages")
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: other), -1, "a learned one does")
        XCTAssertEqual(lab.engine.fdb.entries(now: 0).first { $0.mac == dom0 }?.isStatic, true)
    }

    func testLocalEntriesFollowThePortsVLANsAndLeaveWithIt() throws {
        let lab = try Lab([.trunk(allowed: [10, 20], native: nil), .access(10), .access(20), .access(30)])
        XCTAssertTrue(lab.engine.setLocalMAC(0, dom0))
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: dom0), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: dom0), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 30, mac: dom0), -1)
        lab.send(Frame.ethernet(dst: .broadcast, src: dom0), on: 2)
        assertDrops(lab, [.ownAddressSource: 1])
        // A MAC that is dom0's in VLAN 10 and 20 only: in VLAN 30 it is any host's.
        lab.send(Frame.ethernet(dst: .broadcast, src: dom0), on: 3)
        assertDrops(lab, [.ownAddressSource: 1, .noEgressPort: 1])  // VLAN 30 has no other port
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 30, mac: dom0), 3)
        // A new mode moves the local entries to the new VLANs.
        try lab.engine.setMode(0, .access(20))
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: dom0), -1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: dom0), 0)
        XCTAssertTrue(lab.engine.fdb.isLocal(vlan: 20, mac: dom0))
        // Flushing learned entries keeps them; removing the port removes them.
        lab.engine.fdb.flushLearned()
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: dom0), 0)
        try lab.engine.removePort(0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: dom0), -1)
        XCTAssertFalse(lab.engine.fdb.isLocal(vlan: 20, mac: dom0))
    }

    func testClearingTheLocalMACMakesItAnOrdinaryAddress() throws {
        let lab = try Lab(accessPorts: 2)
        lab.engine.setLocalMAC(0, dom0)
        lab.engine.setLocalMAC(0, nil)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: dom0), -1)
        lab.send(Frame.ethernet(dst: .broadcast, src: dom0), on: 1)
        assertDrops(lab, [:])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: dom0), 1)
    }

    func testMACTableLocalEntriesRefuseOtherPorts() {
        let t = MACTable(capacity: 64, maxPorts: 4)
        XCTAssertTrue(t.addLocal(vlan: 1, mac: dom0, port: 0))
        XCTAssertEqual(t.learn(vlan: 1, mac: dom0, port: 0, now: 5), .refreshed)
        XCTAssertEqual(t.learn(vlan: 1, mac: dom0, port: 2, now: 5), .ownAddress)
        XCTAssertTrue(t.addStatic(vlan: 1, mac: guest, port: 1))
        XCTAssertEqual(t.learn(vlan: 1, mac: guest, port: 2, now: 5), .staticConflict, "an ordinary static entry is not refused")
        XCTAssertEqual(t.lookup(vlan: 1, mac: dom0), 0)
        XCTAssertEqual(t.learnedCount, 0)
    }
}
