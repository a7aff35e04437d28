// Port security (`max-macs`) through BridgeEngine with MemoryPorts: new source MACs beyond a
// port's limit are not learned and their frames are dropped and counted (`mac-limit`), the ones
// learned before keep working, a MAC moving in from another port counts as new, other ports are
// not limited, and 0 lifts the limit.

import SwitchCore
import SwitchTesting
import XCTest

final class PortSecurityTests: XCTestCase {
    func testNewSourcesBeyondTheLimitAreDroppedAndOldOnesKeepWorking() throws {
        let lab = try Lab(accessPorts: 3)
        lab.engine.setMACLimit(1, 2)
        XCTAssertEqual(lab.engine.macLimit(1), 2)
        let a = Frame.host(0x21), b = Frame.host(0x22), c = Frame.host(0x23), peer = Frame.host(0x30)
        lab.send([Frame.ethernet(dst: .broadcast, src: a), Frame.ethernet(dst: .broadcast, src: b)], on: 1)
        XCTAssertEqual(lab.out(0).count, 2)
        _ = lab.outAll()
        let third = Frame.ethernet(dst: .broadcast, src: c)
        lab.send(third, on: 1)
        XCTAssertEqual(lab.outAll(), [[], [], []], "the third MAC's frame is dropped")
        assertDrops(lab, [.macLimit: 1])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: c), -1, "and not learned")
        XCTAssertEqual(lab.engine.fdb.learnedCount(port: 1), 2)
        // The two learned ones still send and are reached.
        let fromA = Frame.ethernet(dst: peer, src: a)
        lab.send(fromA, on: 1)
        let toB = Frame.ethernet(dst: b, src: peer)
        lab.send(toB, on: 2)
        XCTAssertEqual(lab.out(1), [toB])
        // A MAC learned elsewhere that moves onto the full port counts as new there.
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(0x40)), on: 0)
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(0x40)), on: 1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: Frame.host(0x40)), 0, "the move was refused")
        assertDrops(lab, [.macLimit: 2])
        // Other ports have no limit.
        lab.send((0..<10).map { Frame.ethernet(dst: .broadcast, src: Frame.host(0x50 + $0)) }, on: 2)
        XCTAssertEqual(lab.engine.fdb.learnedCount(port: 2), 11)
        // 0 lifts the limit.
        lab.engine.setMACLimit(1, 0)
        lab.send(third, on: 1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: c), 1)
        assertDrops(lab, [.macLimit: 2])
    }

    func testTheLimitLeavesWithThePortAndStaticEntriesDoNotCount() throws {
        let lab = try Lab(accessPorts: 2)
        lab.engine.setMACLimit(1, 1)
        XCTAssertTrue(lab.engine.fdb.addStatic(vlan: 1, mac: Frame.host(0x60), port: 1))
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(0x61)), on: 1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: Frame.host(0x61)), 1, "a static entry is not a learned one")
        try lab.engine.removePort(1)
        let again = try lab.engine.addPort(name: "p", mode: .defaultAccess, device: MemoryPort(bufferSize: 2048))
        XCTAssertEqual(lab.engine.macLimit(again), 0, "a new port starts without a limit")
    }
}

final class StormControlTests: XCTestCase {
    /// A port limited to 100 broadcasts/s floods at most a tenth of a second's worth (10) at
    /// once and 100 a second after; multicast and unknown unicast have their own buckets, known
    /// unicast and other ports are never limited, and 0 turns it off.
    func testEachKindIsLimitedOnItsOwnBucketAndKnownUnicastNever() throws {
        let lab = try Lab(accessPorts: 3)
        lab.engine.setStormLimits(1, broadcast: 100, multicast: 50, unknown: 20)
        XCTAssertTrue(lab.engine.stormLimits(1) == (100, 50, 20))
        let src = Frame.host(0x71)
        let bcast = (0..<50).map { _ in Frame.ethernet(dst: .broadcast, src: src) }
        lab.send(bcast, on: 1, now: 10_000)
        XCTAssertEqual(lab.out(0).count, 10, "a tenth of a second's worth at once")
        _ = lab.outAll()
        assertDrops(lab, [.stormBroadcast: 40])
        let mcast = (0..<50).map { _ in Frame.ethernet(dst: Frame.mac("01:00:5e:00:00:07"), src: src) }
        lab.send(mcast, on: 1, now: 10_000)
        XCTAssertEqual(lab.out(0).count, 5)
        let unknown = (0..<50).map { _ in Frame.ethernet(dst: Frame.host(0x99), src: src) }
        lab.send(unknown, on: 1, now: 10_000)
        XCTAssertEqual(lab.out(0).count, 2)
        _ = lab.outAll()
        assertDrops(lab, [.stormBroadcast: 40, .stormMulticast: 45, .stormUnknown: 48])
        // Known unicast is not flooding: never limited.
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(0x72)), on: 2, now: 10_000)
        _ = lab.outAll()
        lab.send((0..<50).map { _ in Frame.ethernet(dst: Frame.host(0x72), src: src) }, on: 1, now: 10_000)
        XCTAssertEqual(lab.out(2).count, 50)
        // Another port floods freely.
        lab.send(bcast.map { _ in Frame.ethernet(dst: .broadcast, src: Frame.host(0x73)) }, on: 0, now: 10_000)
        XCTAssertEqual(lab.out(1).count, 50)
        // A second later the bucket is full again (10), not 100 at once.
        lab.send(bcast, on: 1, now: 11_000)
        XCTAssertEqual(lab.out(0).count, 10)
        // Steady: 100 a second, at 10 every 100 ms.
        var passed = 0
        for step in 1...10 {
            lab.send((0..<20).map { _ in Frame.ethernet(dst: .broadcast, src: src) }, on: 1, now: 11_000 + UInt32(step) * 100)
            passed += lab.out(0).count
        }
        XCTAssertEqual(passed, 100)
        _ = lab.outAll()
        // 0 turns it off.
        lab.engine.setStormLimits(1, broadcast: 0, multicast: 0, unknown: 0)
        lab.send(bcast, on: 1, now: 20_000)
        XCTAssertEqual(lab.out(0).count, 50)
    }
}
