// MACTable (the FDB): key layout, learning per VLAN, ageing, static entries, MAC moves, capacity
// with fair eviction, flushes, and the hash index's backward-shift deletion checked against a
// Dictionary model under seeded random operation sequences; the batched lookup checked against
// single lookups.

// @testable for `home(_:)`, so that the colliding keys of the batched-lookup tests really collide.
@testable import SwitchCore
import SwitchTesting
import XCTest

final class MACTableTests: XCTestCase {
    // MARK: key layout

    func testFDBKeyIsOneMachineWordVLANAbove48BitMAC() {
        XCTAssertEqual(MemoryLayout<FDBKey>.size, 8)
        XCTAssertEqual(MemoryLayout<FDBKey>.stride, 8)
        let mac = Frame.mac("00:16:3e:0a:b1:ff")
        let k = FDBKey(vlan: 102, mac: mac)
        XCTAssertEqual(k.rawValue, UInt64(102) << 48 | 0x0016_3E0A_B1FF)
        XCTAssertEqual(k.vlan, 102)
        XCTAssertEqual(k.mac, mac)
        // The VLAN is 12 bits: nothing may spill into the top nibble or into the MAC.
        let top = FDBKey(vlan: 4095, mac: .broadcast)
        XCTAssertEqual(top.rawValue, 0x0FFF_FFFF_FFFF_FFFF)
        XCTAssertEqual(FDBKey(vlan: 0xF00A, mac: .zero).vlan, 0x00A)
        XCTAssertEqual(FDBKey(rawValue: k.rawValue), k)
        XCTAssertNotEqual(FDBKey(vlan: 1, mac: mac), FDBKey(vlan: 2, mac: mac))
    }

    // MARK: learning and lookup

    func testLearnLookupRefreshAndMove() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let a = Frame.host(1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), -1)
        XCTAssertEqual(t.learn(vlan: 1, mac: a, port: 2, now: 0), .learned)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 2)
        XCTAssertEqual(t.learn(vlan: 1, mac: a, port: 2, now: 10), .refreshed)
        XCTAssertEqual(t.learn(vlan: 1, mac: a, port: 3, now: 20), .moved(from: 2))
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 3)
        XCTAssertEqual(t.moves, 1)
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(t.learnedCount, 1)
        XCTAssertEqual(t.learnedCount(port: 2), 0)
        XCTAssertEqual(t.learnedCount(port: 3), 1)
        assertEntries(t.entries(now: 50), [(1, a, 3, false, 30)])
    }

    func testSameMACInTwoVLANsOnDifferentPorts() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let a = Frame.host(7)
        XCTAssertEqual(t.learn(vlan: 10, mac: a, port: 0, now: 0), .learned)
        XCTAssertEqual(t.learn(vlan: 20, mac: a, port: 1, now: 0), .learned)
        XCTAssertEqual(t.lookup(vlan: 10, mac: a), 0)
        XCTAssertEqual(t.lookup(vlan: 20, mac: a), 1)
        XCTAssertEqual(t.lookup(vlan: 30, mac: a), -1)
        XCTAssertEqual(t.moves, 0)
        XCTAssertEqual(t.count, 2)
        XCTAssertTrue(t.remove(vlan: 10, mac: a))
        XCTAssertEqual(t.lookup(vlan: 10, mac: a), -1)
        XCTAssertEqual(t.lookup(vlan: 20, mac: a), 1)
        XCTAssertFalse(t.remove(vlan: 10, mac: a))
    }

    func assertEntries(_ got: [FDBEntry], _ expected: [(UInt16, MACAddress, UInt16, Bool, UInt32)],
                       line: UInt = #line) {
        XCTAssertEqual(got.count, expected.count, line: line)
        for (g, e) in zip(got, expected) {
            XCTAssertEqual(g.vlan, e.0, line: line)
            XCTAssertEqual(g.mac, e.1, line: line)
            XCTAssertEqual(g.port, e.2, line: line)
            XCTAssertEqual(g.isStatic, e.3, line: line)
            XCTAssertEqual(g.ageMilliseconds, e.4, line: line)
        }
    }

    // MARK: static entries

    func testStaticEntriesNeverAgeNorMove() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let a = Frame.host(1)
        XCTAssertTrue(t.addStatic(vlan: 1, mac: a, port: 1))
        XCTAssertEqual(t.learn(vlan: 1, mac: a, port: 2, now: 0), .staticConflict)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 1)
        XCTAssertEqual(t.learn(vlan: 1, mac: a, port: 1, now: 0), .refreshed)
        XCTAssertEqual(t.moves, 0)
        XCTAssertEqual(t.age(now: 4_000_000_000, ageing: 1000), 0)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 1)
        XCTAssertEqual(t.learnedCount, 0)
        assertEntries(t.entries(now: 123), [(1, a, 1, true, 0)])
        // flushLearned and a learned-only flush leave static entries alone.
        t.flushLearned()
        t.flush(port: 1, includingStatic: false)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 1)
        t.flush(port: 1, includingStatic: true)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), -1)
        XCTAssertEqual(t.count, 0)
    }

    func testStaticReplacesALearnedEntry() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let a = Frame.host(1)
        t.learn(vlan: 5, mac: a, port: 0, now: 0)
        XCTAssertTrue(t.addStatic(vlan: 5, mac: a, port: 3))
        XCTAssertEqual(t.lookup(vlan: 5, mac: a), 3)
        XCTAssertEqual(t.learnedCount, 0)
        XCTAssertEqual(t.learnedCount(port: 0), 0)
        XCTAssertEqual(t.count, 1)
        XCTAssertEqual(t.age(now: 1_000_000, ageing: 1000), 0)
        XCTAssertEqual(t.lookup(vlan: 5, mac: a), 3)
    }

    // MARK: ageing

    func testAgeingRemovesOnlyEntriesOlderThanTheAgeingTime() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let (a, b) = (Frame.host(1), Frame.host(2))
        t.learn(vlan: 1, mac: a, port: 0, now: 0)
        t.learn(vlan: 1, mac: b, port: 0, now: 0)
        t.learn(vlan: 1, mac: b, port: 0, now: 200_000) // b refreshed
        XCTAssertEqual(t.age(now: 300_000, ageing: 300_000), 0) // exactly the ageing time: kept
        XCTAssertEqual(t.age(now: 300_001, ageing: 300_000), 1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), -1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: b), 0)
        XCTAssertEqual(t.age(now: 500_001, ageing: 300_000), 1)
        XCTAssertEqual(t.count, 0)
        XCTAssertEqual(t.learnedCount(port: 0), 0)
    }

    func testAgeingSurvivesClockWrap() {
        let t = MACTable(capacity: 16, maxPorts: 2)
        let a = Frame.host(1)
        t.learn(vlan: 1, mac: a, port: 0, now: UInt32.max - 1000)
        XCTAssertEqual(t.age(now: 5000, ageing: 300_000), 0) // 6001 ms old across the wrap
        XCTAssertEqual(t.age(now: 298_999, ageing: 300_000), 0) // exactly 300_000 ms old
        XCTAssertEqual(t.age(now: 299_000, ageing: 300_000), 1)
    }

    func testHugeAgeingTimeDoesNotOverflow() {
        let t = MACTable(capacity: 16, maxPorts: 2)
        t.learn(vlan: 1, mac: Frame.host(1), port: 0, now: 0)
        XCTAssertEqual(t.age(now: UInt32.max - 500, ageing: UInt32.max), 0)
        XCTAssertEqual(t.lookup(vlan: 1, mac: Frame.host(1)), 0)
    }

    /// Entries move to their port's LRU tail at most once a second; ageing walks from the head and
    /// stops early. Whatever the order of learns, refreshes and moves, the entries it removes must
    /// be exactly those not seen for longer than the ageing time.
    func testAgeingMatchesAModelUnderRandomTraffic() {
        // (hosts, max clock step in ms, steps between age() calls, ageing ms): sparse and dense traffic.
        let shapes: [(Int, UInt32, Int, UInt32)] = [(200, 300, 97, 5000), (12, 60, 5, 2000), (40, 150, 3, 1500)]
        for (shape, seed) in [(0, 1), (0, 42), (1, 2), (1, 3), (2, 4), (2, 5)] as [(Int, UInt64)] {
            let (hosts, maxStep, every, ageing) = shapes[shape]
            var rng = SeededRandom(seed: seed)
            let t = MACTable(capacity: 256, maxPorts: 4)
            let universe = (0..<hosts).map { Frame.host($0 + 1) }
            var lastSeen: [MACAddress: UInt32] = [:]
            var now: UInt32 = 1_000
            for step in 0..<5_000 {
                now &+= UInt32.random(in: 0...maxStep, using: &rng)
                let m = universe[Int.random(in: 0..<universe.count, using: &rng)]
                t.learn(vlan: 1, mac: m, port: UInt16.random(in: 0..<4, using: &rng), now: now)
                lastSeen[m] = now
                if step % every == 0 {
                    let expired = lastSeen.filter { now &- $0.value > ageing }.map(\.key)
                    XCTAssertEqual(t.age(now: now, ageing: ageing), expired.count, "seed \(seed) step \(step)")
                    for m in expired { lastSeen[m] = nil }
                    XCTAssertEqual(t.count, lastSeen.count)
                    for m in universe {
                        XCTAssertEqual(t.lookup(vlan: 1, mac: m) >= 0, lastSeen[m] != nil, "seed \(seed) step \(step) \(m)")
                    }
                }
            }
        }
    }

    /// The LRU list moves an entry at most once a second, so a refresh within the same second
    /// leaves it ahead of younger-stamped entries: ageing must look past it.
    func testAgeingLooksPastAnEntryRefreshedWithinTheSameSecond() {
        let t = MACTable(capacity: 16, maxPorts: 2)
        let (a, b) = (Frame.host(1), Frame.host(2))
        t.learn(vlan: 1, mac: a, port: 0, now: 5000)
        t.learn(vlan: 1, mac: b, port: 0, now: 5100)
        t.learn(vlan: 1, mac: a, port: 0, now: 5900) // same second: a stays at the head of the list
        XCTAssertEqual(t.age(now: 15_500, ageing: 10_000), 1) // b is 10_400 ms old, a 9_600
        XCTAssertEqual(t.lookup(vlan: 1, mac: b), -1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: a), 0)
    }

    func testBridgeAgeingDefaultsTo300SecondsAndIsSetPerBridge() throws {
        XCTAssertEqual(BridgeSettings().ageingMilliseconds, 300_000)
        XCTAssertEqual(BridgeSettings.defaultAgeingSeconds, 300)

        let lab = try Lab(accessPorts: 3)
        let (a, b) = (Frame.host(1), Frame.host(2))
        lab.send(Frame.ethernet(dst: b, src: a), on: 0, now: 0)
        _ = lab.outAll()
        XCTAssertEqual(lab.engine.age(now: 300_000), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: a), 0)
        // Still known: b -> a goes to port 0 only.
        lab.send(Frame.ethernet(dst: a, src: b), on: 1, now: 300_000)
        XCTAssertEqual(lab.outAll().map(\.count), [1, 0, 0])
        XCTAssertEqual(lab.engine.age(now: 300_001), 1) // a aged out, b (seen at 300_000) stays
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: a), -1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: b), 1)
        // Unknown again: flooded.
        lab.send(Frame.ethernet(dst: a, src: b), on: 1, now: 300_001)
        XCTAssertEqual(lab.outAll().map(\.count), [1, 0, 1])

        lab.engine.setAgeing(milliseconds: 10_000)
        XCTAssertEqual(lab.engine.settings.ageingMilliseconds, 10_000)
        XCTAssertEqual(lab.engine.age(now: 310_001), 0)
        XCTAssertEqual(lab.engine.age(now: 310_002), 1)
        XCTAssertEqual(lab.engine.fdb.count, 0)

        let short = try Lab(accessPorts: 2, settings: BridgeSettings(ageingMilliseconds: 2000))
        XCTAssertEqual(short.engine.settings.ageingMilliseconds, 2000)
        short.send(Frame.ethernet(dst: b, src: a), on: 0, now: 1000)
        XCTAssertEqual(short.engine.age(now: 3000), 0)
        XCTAssertEqual(short.engine.age(now: 3001), 1)
    }

    // MARK: capacity and fair eviction

    func testFairEvictionTakesTheLRUEntryOfTheBiggestPort() {
        let t = MACTable(capacity: 4, maxPorts: 4)
        let (a, b, c, d, e) = (Frame.host(1), Frame.host(2), Frame.host(3), Frame.host(4), Frame.host(5))
        t.learn(vlan: 1, mac: a, port: 0, now: 0)
        t.learn(vlan: 1, mac: b, port: 0, now: 1000)
        t.learn(vlan: 1, mac: c, port: 0, now: 2000)
        t.learn(vlan: 1, mac: a, port: 0, now: 3000) // a is now the most recently used of port 0
        t.learn(vlan: 1, mac: d, port: 1, now: 4000)
        XCTAssertEqual(t.count, 4)
        XCTAssertEqual(t.learn(vlan: 1, mac: e, port: 1, now: 5000), .learned)
        XCTAssertEqual(t.count, 4)
        XCTAssertEqual(t.evictions, 1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: b), -1, "port 0 holds the most entries: its LRU one (b) goes")
        for m in [a, c] { XCTAssertEqual(t.lookup(vlan: 1, mac: m), 0) }
        for m in [d, e] { XCTAssertEqual(t.lookup(vlan: 1, mac: m), 1) }
        XCTAssertEqual(t.learnedCount(port: 0), 2)
        XCTAssertEqual(t.learnedCount(port: 1), 2)
    }

    func testRandomSourceFloodFromOnePortEvictsOnlyItsOwnEntries() {
        let t = MACTable(capacity: 64, maxPorts: 4)
        let neighbours = (1...10).map { Frame.host($0) }
        for m in neighbours { t.learn(vlan: 1, mac: m, port: 0, now: 0) }
        t.addStatic(vlan: 1, mac: Frame.host(99), port: 2)
        var rng = SeededRandom(seed: 7)
        var flood: [MACAddress] = []
        for i in 0..<1000 {
            // Random unicast sources (group bit cleared), as a MAC-flooding guest sends.
            let m = MACAddress(rawValue: rng.next() & 0xFEFF_FFFF_FFFF)
            flood.append(m)
            t.learn(vlan: 1, mac: m, port: 1, now: UInt32(i))
        }
        XCTAssertEqual(t.count, 64)
        XCTAssertEqual(t.learnedCount(port: 0), 10)
        XCTAssertEqual(t.learnedCount(port: 1), 53)
        XCTAssertEqual(t.evictions, 1000 - 53)
        for m in neighbours { XCTAssertEqual(t.lookup(vlan: 1, mac: m), 0, "\(m) survived") }
        XCTAssertEqual(t.lookup(vlan: 1, mac: Frame.host(99)), 2)
        // The flooder keeps its 53 most recent addresses.
        for m in flood.suffix(53) { XCTAssertEqual(t.lookup(vlan: 1, mac: m), 1) }
        for m in flood.prefix(1000 - 53) { XCTAssertEqual(t.lookup(vlan: 1, mac: m), -1) }
    }

    func testMillionEntryTableHoldsAMillionAddressesAt61BytesEach() {
        // The capacity bar: 1M learned addresses, all kept and all found, and the memory per entry
        // that docs/performance.md reports (27-byte slab entry + two 16-byte index slots).
        let n = 1 << 20
        let t = MACTable(capacity: n, maxPorts: 64)
        var learned = 0
        for i in 0..<n where t.learn(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(i)),
                                     port: UInt16(i & 63), now: 0) == .learned {
            learned += 1
        }
        XCTAssertEqual(learned, n)
        XCTAssertEqual(t.count, n)
        var found = 0
        for i in 0..<n where t.lookup(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(i))) == i & 63 {
            found += 1
        }
        XCTAssertEqual(found, n)
        XCTAssertEqual(t.bytesPerEntry, 61, accuracy: 0.01, "59 bytes of slab and index, 2 of the ports-by-count buckets")
    }

    func testTableFullOfStaticEntriesRefusesMore() {
        let t = MACTable(capacity: 2, maxPorts: 2)
        XCTAssertTrue(t.addStatic(vlan: 1, mac: Frame.host(1), port: 0))
        XCTAssertTrue(t.addStatic(vlan: 1, mac: Frame.host(2), port: 0))
        XCTAssertFalse(t.addStatic(vlan: 1, mac: Frame.host(3), port: 0))
        XCTAssertNotEqual(t.learn(vlan: 1, mac: Frame.host(4), port: 1, now: 0), .learned)
        XCTAssertEqual(t.lookup(vlan: 1, mac: Frame.host(4)), -1)
        XCTAssertEqual(t.count, 2)
    }

    func testEngineMACFloodDoesNotEvictOtherPortsHosts() throws {
        let lab = try Lab(accessPorts: 3, settings: BridgeSettings(fdbCapacity: 64))
        let (a, c) = (Frame.host(1), Frame.host(3))
        lab.send(Frame.ethernet(dst: c, src: a), on: 0, now: 0)
        lab.send(Frame.ethernet(dst: a, src: c), on: 2, now: 0)
        _ = lab.outAll()
        var rng = SeededRandom(seed: 99)
        for chunk in 0..<5 {
            let frames = (0..<100).map { _ in
                Frame.ethernet(dst: c, src: MACAddress(rawValue: rng.next() & 0xFEFF_FFFF_FFFF))
            }
            lab.send(frames, on: 1, now: UInt32(chunk))
            XCTAssertEqual(lab.out(2).count, 100, "known unicast to c, never flooded")
            XCTAssertEqual(lab.out(0).count, 0)
        }
        XCTAssertEqual(lab.engine.fdb.count, 64)
        XCTAssertEqual(lab.engine.fdb.learnedCount(port: 1), 62)
        // a and c are still known: their frames go to one port only.
        lab.send(Frame.ethernet(dst: c, src: a), on: 0, now: 10)
        lab.send(Frame.ethernet(dst: a, src: c), on: 2, now: 10)
        XCTAssertEqual(lab.outAll().map(\.count), [1, 0, 1])
    }

    // MARK: flushes

    func testRemovingAPortFlushesItsEntriesStaticOnesToo() throws {
        let lab = try Lab(accessPorts: 3)
        let (a, b, c) = (Frame.host(1), Frame.host(2), Frame.host(3))
        lab.send([Frame.ethernet(dst: .broadcast, src: a), Frame.ethernet(dst: .broadcast, src: b)], on: 1)
        lab.send(Frame.ethernet(dst: .broadcast, src: c), on: 2)
        XCTAssertTrue(lab.engine.fdb.addStatic(vlan: 1, mac: Frame.host(50), port: 1))
        XCTAssertEqual(lab.engine.fdb.count, 4)
        let removed = try lab.engine.removePort(1)
        XCTAssertTrue(removed === lab.ports[1])
        for m in [a, b, Frame.host(50)] { XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: m), -1) }
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: c), 2)
        XCTAssertEqual(lab.engine.fdb.count, 1)
        XCTAssertEqual(lab.engine.fdb.learnedCount(port: 1), 0)
        XCTAssertEqual(lab.engine.portIndices, [0, 2])
        XCTAssertThrowsError(try lab.engine.removePort(1)) { XCTAssertEqual($0 as? BridgeError, .noSuchPort(1)) }
        // The freed index is reused with fresh counters.
        let p = MemoryPort()
        XCTAssertEqual(try lab.engine.addPort(name: "new", mode: .defaultAccess, device: p), 1)
        XCTAssertEqual(lab.engine.portCounters(1), PortCounters())
    }

    // MARK: hash index integrity

    /// Random learns, static adds, removes and flushes, checked after every step against a
    /// Dictionary: this exercises backward-shift deletion in crowded probe chains (wrapping
    /// around the end of the index too) and the free list of the entry slab.
    func testIndexMatchesDictionaryModelUnderRandomInsertsAndDeletes() {
        for (capacity, steps, seeds) in [(16, 20_000, [1, 2, 3] as [UInt64]), (300, 20_000, [11, 12]), (4096, 30_000, [5])] {
            for seed in seeds {
                checkAgainstModel(capacity: capacity, steps: steps, seed: seed)
            }
        }
    }

    func checkAgainstModel(capacity: Int, steps: Int, seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let t = MACTable(capacity: capacity, maxPorts: 8)
        // As many keys as the capacity, so the table never has to evict; VLANs and MACs overlap
        // so that the same MAC appears in several VLANs.
        var universe: [FDBKey] = []
        var seen = Set<FDBKey>()
        while universe.count < capacity {
            let k = FDBKey(vlan: UInt16.random(in: 1...4, using: &rng),
                           mac: MACAddress(rawValue: UInt64.random(in: 1...UInt64(capacity * 2), using: &rng) << 8))
            if seen.insert(k).inserted { universe.append(k) }
        }
        var model: [FDBKey: (port: UInt16, isStatic: Bool)] = [:]
        for step in 0..<steps {
            let k = universe[Int.random(in: 0..<universe.count, using: &rng)]
            let port = UInt16.random(in: 0..<8, using: &rng)
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<45:
                let r = t.learn(vlan: k.vlan, mac: k.mac, port: port, now: UInt32(step))
                if let m = model[k] {
                    if m.isStatic {
                        XCTAssertEqual(r, m.port == port ? .refreshed : .staticConflict)
                    } else {
                        XCTAssertEqual(r, m.port == port ? .refreshed : .moved(from: m.port))
                        model[k] = (port, false)
                    }
                } else {
                    XCTAssertEqual(r, .learned)
                    model[k] = (port, false)
                }
            case 45..<55:
                XCTAssertTrue(t.addStatic(vlan: k.vlan, mac: k.mac, port: port))
                model[k] = (port, true)
            case 55..<98:
                XCTAssertEqual(t.remove(vlan: k.vlan, mac: k.mac), model.removeValue(forKey: k) != nil)
            default:
                let all = Bool.random(using: &rng)
                t.flush(port: port, includingStatic: all)
                model = model.filter { $0.value.port != port || (!all && $0.value.isStatic) }
            }
            if t.count != model.count {
                XCTFail("capacity \(capacity) seed \(seed) step \(step): count \(t.count), model \(model.count)")
                return
            }
            if step % 50 == 0 || capacity <= 16 {
                XCTAssertEqual(t.learnedCount, model.values.filter { !$0.isStatic }.count)
                for u in universe {
                    let expect = model[u].map { Int($0.port) } ?? -1
                    if t.lookup(vlan: u.vlan, mac: u.mac) != expect {
                        XCTFail("capacity \(capacity) seed \(seed) step \(step): key \(u) expected \(expect)")
                        return
                    }
                }
                for p in 0..<8 {
                    XCTAssertEqual(t.learnedCount(port: UInt16(p)),
                                   model.values.filter { !$0.isStatic && $0.port == p }.count)
                }
            }
        }
        let listed = t.entries(now: UInt32(steps))
        XCTAssertEqual(listed.count, model.count)
        for e in listed {
            let m = model[FDBKey(vlan: e.vlan, mac: e.mac)]
            XCTAssertEqual(m?.port, e.port)
            XCTAssertEqual(m?.isStatic, e.isStatic)
        }
    }

    // MARK: batched lookup

    /// The batched lookup of `keys` against a single lookup of each (and -1 for key 0).
    func assertBatchMatchesSingle(_ t: MACTable, _ keys: [UInt64], file: StaticString = #filePath, line: UInt = #line) {
        var ports = [Int32](repeating: 99, count: keys.count)
        keys.withUnsafeBufferPointer { k in
            ports.withUnsafeMutableBufferPointer { p in
                t.lookup(keys: k.baseAddress!, count: keys.count, ports: p.baseAddress!)
            }
        }
        for (i, k) in keys.enumerated() {
            let expect = k == 0 ? -1 : t.lookup(vlan: FDBKey(rawValue: k).vlan, mac: FDBKey(rawValue: k).mac)
            XCTAssertEqual(Int(ports[i]), expect, "key \(String(k, radix: 16)) at \(i)", file: file, line: line)
        }
    }

    /// `count` distinct keys in VLAN 1 whose home slot in `t`'s index is `slot`.
    func keys(homedAt slot: Int, in t: MACTable, count: Int) -> [UInt64] {
        var out: [UInt64] = []
        var n: UInt64 = 1
        while out.count < count {
            let k = FDBKey(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_0000 | n)).rawValue
            if t.home(k) == slot { out.append(k) }
            n += 1
        }
        return out
    }

    func testBatchedLookupOnAnEmptyTableFindsNothing() {
        let t = MACTable(capacity: 16, maxPorts: 4)
        let keys = (1...40).map { FDBKey(vlan: UInt16($0 % 3 + 1), mac: Frame.host($0)).rawValue } + [0]
        var ports = [Int32](repeating: 7, count: keys.count)
        t.lookup(keys: keys, count: keys.count, ports: &ports)
        XCTAssertEqual(ports, [Int32](repeating: -1, count: keys.count))
        // A batch of none touches nothing.
        var untouched: Int32 = 5
        t.lookup(keys: keys, count: 0, ports: &untouched)
        XCTAssertEqual(untouched, 5)
    }

    func testBatchedLookupOfPresentAbsentAndVLANDistinctKeys() {
        let t = MACTable(capacity: 64, maxPorts: 8)
        for n in 0..<20 { t.learn(vlan: 10, mac: Frame.host(n), port: UInt16(n % 8), now: 0) }
        // The same MACs in VLAN 20 on other ports, and a static entry.
        for n in 0..<10 { t.learn(vlan: 20, mac: Frame.host(n), port: UInt16((n + 3) % 8), now: 0) }
        XCTAssertTrue(t.addStatic(vlan: 30, mac: Frame.host(100), port: 6))
        var keys: [UInt64] = []
        for n in 0..<25 {
            for v: UInt16 in [10, 20, 30, 40] { keys.append(FDBKey(vlan: v, mac: Frame.host(n)).rawValue) }
        }
        keys.append(FDBKey(vlan: 30, mac: Frame.host(100)).rawValue)
        keys.append(0)  // no lookup wanted: -1, wherever it sits in the batch
        keys.insert(0, at: 7)
        keys.shuffle(using: &rng)
        assertBatchMatchesSingle(t, keys)
        // Spot checks that do not rely on the single lookup.
        var ports = [Int32](repeating: 0, count: 4)
        let probe = [FDBKey(vlan: 10, mac: Frame.host(3)), FDBKey(vlan: 20, mac: Frame.host(3)),
                     FDBKey(vlan: 40, mac: Frame.host(3)), FDBKey(vlan: 30, mac: Frame.host(100))].map(\.rawValue)
        t.lookup(keys: probe, count: 4, ports: &ports)
        XCTAssertEqual(ports, [3, 6, -1, 6])
    }

    var rng = SeededRandom(seed: 42)

    func testBatchedLookupFollowsCollidingProbeChains() {
        let t = MACTable(capacity: 16, maxPorts: 8)
        // Six keys homed at slot 5 and four homed at the last slot (their chain wraps to slot 0).
        let chain = keys(homedAt: 5, in: t, count: 6)
        let wrapping = keys(homedAt: t.slotMask, in: t, count: 4)
        for (i, k) in (chain + wrapping).enumerated() {
            let key = FDBKey(rawValue: k)
            XCTAssertEqual(t.learn(vlan: key.vlan, mac: key.mac, port: UInt16(i % 8), now: 0), .learned)
        }
        // Absent keys homed in the middle of those chains must probe to their end and miss.
        let absent = Array(keys(homedAt: 5, in: t, count: 8).suffix(2) + keys(homedAt: t.slotMask, in: t, count: 6).suffix(2)
                           + keys(homedAt: 0, in: t, count: 1))
        var batch = chain + wrapping + absent
        batch.shuffle(using: &rng)
        assertBatchMatchesSingle(t, batch)
        var ports = [Int32](repeating: 0, count: chain.count + wrapping.count)
        t.lookup(keys: chain + wrapping, count: ports.count, ports: &ports)
        XCTAssertEqual(ports, (0..<10).map { Int32($0 % 8) })
        // Deleting from the middle of the chains shifts the rest back: the batch still agrees.
        for k in [chain[1], chain[4], wrapping[0], wrapping[2]] {
            XCTAssertTrue(t.remove(vlan: FDBKey(rawValue: k).vlan, mac: FDBKey(rawValue: k).mac))
        }
        assertBatchMatchesSingle(t, batch)
        t.lookup(keys: [chain[1], chain[2], wrapping[1], wrapping[3]], count: 4, ports: &ports)
        XCTAssertEqual(Array(ports.prefix(4)), [-1, 2, 7, 1])
    }

    func testBatchedLookupAgreesWithSingleLookupsAfterDeletionsAndFlushes() {
        let t = MACTable(capacity: 512, maxPorts: 8)
        var all: [UInt64] = []
        for n in 0..<500 {
            let k = FDBKey(vlan: UInt16(n % 4 + 1), mac: Frame.host(n * 7))
            all.append(k.rawValue)
            t.learn(vlan: k.vlan, mac: k.mac, port: UInt16(n % 8), now: 0)
        }
        assertBatchMatchesSingle(t, all)
        for n in stride(from: 0, to: 500, by: 3) {
            XCTAssertTrue(t.remove(vlan: FDBKey(rawValue: all[n]).vlan, mac: FDBKey(rawValue: all[n]).mac))
        }
        t.flush(port: 5)
        var shuffled = all
        shuffled.shuffle(using: &rng)
        // Batches of the sizes the engine uses, and odd ones.
        var i = 0
        for size in [1, 32, 7, 128, 31, 33, 500] {
            let end = min(i + size, shuffled.count)
            if i < end { assertBatchMatchesSingle(t, Array(shuffled[i..<end])) }
            i = end == shuffled.count ? 0 : end
        }
        let gone = stride(from: 0, to: 500, by: 3).map { all[$0] } + (0..<500).filter { $0 % 8 == 5 }.map { all[$0] }
        var ports = [Int32](repeating: 0, count: gone.count)
        t.lookup(keys: gone, count: gone.count, ports: &ports)
        XCTAssertEqual(ports, [Int32](repeating: -1, count: gone.count))
    }

    /// The forward stage looks the whole batch up at once (keys written by classify): one batch
    /// mixing known, unknown, broadcast, dropped and same-segment frames, and a destination
    /// learned earlier in the same batch, goes exactly where a lookup per frame sends it.
    func testEngineBatchedLookupSendsEachFrameWhereAPerFrameLookupWould() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(1)), on: 1, now: 0)
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(2)), on: 2, now: 0)
        _ = lab.outAll()
        let f = [
            Frame.ethernet(dst: Frame.host(1), src: Frame.host(10), payload: Frame.payload(0)),   // to 1
            Frame.ethernet(dst: .broadcast, src: Frame.host(10), payload: Frame.payload(1)),       // flood
            Frame.ethernet(dst: Frame.host(2), src: Frame.host(10), payload: Frame.payload(2)),   // to 2
            Frame.ethernet(dst: Frame.host(99), src: Frame.host(10), payload: Frame.payload(3)),  // unknown: flood
            Array(Frame.ethernet(dst: Frame.host(1), src: Frame.host(10)).prefix(10)),             // runt
            Frame.ethernet(dst: Frame.host(10), src: Frame.host(11), payload: Frame.payload(5)),  // same segment
            Frame.tagged(dst: Frame.host(1), src: Frame.host(10), vid: 5, payload: Frame.payload(6)), // tagged on access
            Frame.ethernet(dst: Frame.host(1), src: Frame.host(12), payload: Frame.payload(7)),   // to 1
        ]
        lab.send(f, on: 0, now: 1)
        let out = lab.outAll()
        XCTAssertEqual(out[0], [])
        XCTAssertEqual(out[1], [f[0], f[1], f[3], f[7]])
        XCTAssertEqual(out[2], [f[1], f[2], f[3]])
        let drops = lab.engine.dropCounters
        XCTAssertEqual(drops[.runt], 1)
        XCTAssertEqual(drops[.sameSegment], 1)
        XCTAssertEqual(drops[.taggedOnAccessPort], 1)
        XCTAssertEqual(drops.total, 3)
    }
}

final class MACTableEvictionTests: XCTestCase {
    /// The tournament tree's victim is always a port holding the most learned entries, through a
    /// random mix of learns, moves, removals, ageing, static entries and flushes, as a scan of
    /// every port would find it.
    func testTheEvictionVictimIsAlwaysAPortWithTheMostLearnedEntries() {
        var rng = SystemRandomNumberGenerator()
        let ports = 37
        let t = MACTable(capacity: 4096, maxPorts: ports)
        var now: UInt32 = 1
        for step in 0..<5_000 {
            let mac = MACAddress(rawValue: 0x0200_0000_0000 | UInt64.random(in: 1...3000, using: &rng))
            let port = UInt16.random(in: 0..<UInt16(ports), using: &rng)
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<70: t.learn(vlan: 1, mac: mac, port: port, now: now)
            case 70..<85: t.remove(vlan: 1, mac: mac)
            case 85..<92: t.addStatic(vlan: 1, mac: mac, port: port)
            case 92..<94: t.flush(port: port, includingStatic: Bool.random(using: &rng))
            default: now &+= 500; t.age(now: now, ageing: 60_000)
            }
            let most = (0..<ports).map { t.learnedCount(port: UInt16($0)) }.max() ?? 0
            if most == 0 {
                XCTAssertNil(t.evictionVictim, "step \(step)")
            } else {
                XCTAssertEqual(t.evictionVictim.map { t.learnedCount(port: UInt16($0)) }, most, "step \(step)")
            }
        }
    }

    /// Removing a port's entries (static ones too) leaves every other port's entries, and finds
    /// the port's static entries through its own list.
    func testFlushingAPortRemovesItsStaticAndLearnedEntriesOnly() {
        let t = MACTable(capacity: 1024, maxPorts: 4)
        for k in 0..<100 {
            let mac = MACAddress(rawValue: 0x0200_0000_1000 | UInt64(k))
            if k % 2 == 0 { t.addStatic(vlan: 1, mac: mac, port: UInt16(k % 4)) } else { t.learn(vlan: 1, mac: mac, port: UInt16(k % 4), now: 1) }
        }
        // A static entry that changes port moves between the ports' lists.
        XCTAssertTrue(t.addStatic(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_1000), port: 1))
        t.flush(port: 2, includingStatic: true)
        XCTAssertEqual(t.entries(now: 1).filter { $0.port == 2 }.count, 0)
        XCTAssertEqual(t.entries(now: 1).filter { $0.port == 1 }.count, 26, "port 1's 25 learned ones and the static one that moved there")
        XCTAssertEqual(t.entries(now: 1).filter { $0.port == 0 }.count, 24, "port 0's statics, less the one that moved")
        XCTAssertEqual(t.lookup(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_1000)), 1)
        t.flush(port: 1, includingStatic: false)
        XCTAssertEqual(t.entries(now: 1).filter { $0.port == 1 }.map(\.isStatic), [true], "the static one that moved there stays")
        t.flush(port: 1, includingStatic: true)
        t.flush(port: 0, includingStatic: true)
        t.flush(port: 3, includingStatic: true)
        XCTAssertEqual(t.count, 0)
    }
}

final class MACTableKeyedHashTests: XCTestCase {
    /// MACs a guest could aim at one home slot if it knew the secret (found by brute force under
    /// a fixed one): the table stores at most `maxProbe + 1` of them, refuses the rest as crowded,
    /// and every lookup, of those keys or any other, reads at most `maxProbe + 1` slots. Under
    /// another secret the same MACs spread out and all are learned.
    func testKeysAimedAtOneHomeSlotStayBounded() {
        let secret: UInt64 = 0x1234_5678_9ABC_DEF0
        let t = MACTable(capacity: 1024, maxPorts: 2, secret: secret)
        let target = t.homeSlot(vlan: 1, mac: MACAddress(rawValue: 0x0200_0000_0001))
        var aimed: [MACAddress] = []
        var candidate: UInt64 = 0x0200_0000_0000
        while aimed.count < 200 {
            candidate &+= 1
            let mac = MACAddress(rawValue: candidate)
            if t.homeSlot(vlan: 1, mac: mac) == target { aimed.append(mac) }
        }
        var learned = 0, crowded = 0
        for mac in aimed {
            switch t.learn(vlan: 1, mac: mac, port: 1, now: 1) {
            case .learned: learned += 1
            case .crowded: crowded += 1
            default: XCTFail("unexpected result")
            }
        }
        XCTAssertEqual(learned, MACTable.maxProbe + 1, "the home slot and the maxProbe after it")
        XCTAssertEqual(crowded, aimed.count - learned)
        XCTAssertEqual(t.crowdedRefusals, UInt64(crowded))
        let longest = aimed.map { t.probeLength(vlan: 1, mac: $0) }.max() ?? 0
        XCTAssertLessThanOrEqual(longest, MACTable.maxProbe + 1)
        // An unrelated key whose home lies inside the run is found, or refused, within the bound too.
        for k in 0..<2000 {
            let mac = MACAddress(rawValue: 0x0600_0000_0000 | UInt64(k))
            XCTAssertLessThanOrEqual(t.probeLength(vlan: 1, mac: mac), MACTable.maxProbe + 1)
        }
        // Learned ones keep working; a lookup of a refused one answers unknown, quickly.
        XCTAssertEqual(t.lookup(vlan: 1, mac: aimed[0]), 1)
        XCTAssertEqual(t.lookup(vlan: 1, mac: aimed[aimed.count - 1]), -1)
        // Another secret: the same MACs are ordinary keys.
        let other = MACTable(capacity: 1024, maxPorts: 2, secret: secret ^ 0xFFFF_0000_0000_0001)
        for mac in aimed { XCTAssertEqual(other.learn(vlan: 1, mac: mac, port: 1, now: 1), .learned) }
        XCTAssertLessThan(aimed.map { other.probeLength(vlan: 1, mac: $0) }.max() ?? 0, 16)
        XCTAssertEqual(other.crowdedRefusals, 0)
        // Two tables made without a secret get different ones.
        let a = MACTable(capacity: 1024, maxPorts: 2), b = MACTable(capacity: 1024, maxPorts: 2)
        let probes = (0..<64).map { MACAddress(rawValue: 0x0200_0000_9000 | UInt64($0)) }
        XCTAssertNotEqual(probes.map { a.homeSlot(vlan: 1, mac: $0) }, probes.map { b.homeSlot(vlan: 1, mac: $0) })
    }
}
