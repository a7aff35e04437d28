// Forwarding through BridgeEngine with MemoryPorts: frame views, known/unknown unicast, flooding,
// same-segment and link-local drops, learn-before-forward within a batch, counters that account
// for every frame, port down/up.

import SwitchCore
import SwitchTesting
import XCTest

final class ForwardingTests: XCTestCase {
    let (h1, h2, h3, h4, h5) = (Frame.host(1), Frame.host(2), Frame.host(3), Frame.host(4), Frame.host(5))

    // MARK: frame views

    func testEthernetIIAnd8023LengthFramesAreBothForwarded() throws {
        let lab = try Lab(accessPorts: 3)
        let e2 = Frame.ethernet(dst: .broadcast, src: h1, type: 0x0806)
        lab.send(e2, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [e2], [e2]])

        let llc = Frame.ieee8023(dst: h9, src: h2)
        XCTAssertEqual(Array(llc[12..<14]), [0x00, 46], "a length field, not an ethertype")
        lab.send(llc, on: 1)
        XCTAssertEqual(lab.outAll(), [[llc], [], [llc]], "unknown unicast 802.3 frame flooded")

        let back = Frame.ieee8023(dst: h2, src: h1, data: Frame.payload(0x44, length: 43))
        lab.send(back, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [back], []], "802.3 frame to a learned address: one port")
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h2), 1, "802.3 sources are learned")
        assertDrops(lab, [:])
    }
    let h9 = Frame.host(9)

    func testRuntsAreDroppedAndCounted() throws {
        let lab = try Lab(accessPorts: 2)
        let full = Frame.ethernet(dst: .broadcast, src: h1)
        let headerOnly = Array(full[0..<14])
        let taggedFull = Frame.tagged(dst: .broadcast, src: h1, vid: 0)
        let runts: [[UInt8]] = [[0x01], Array(full[0..<6]), Array(full[0..<13]),
                                Array(taggedFull[0..<14]), Array(taggedFull[0..<16]), Array(taggedFull[0..<17])]
        lab.send(runts + [headerOnly, Array(taggedFull[0..<18])], on: 0)
        // A 14-byte header-only frame and an 18-byte tagged header are valid views.
        XCTAssertEqual(lab.out(1), [headerOnly, Array(full[0..<14])])
        assertDrops(lab, [.runt: 6])
        let c = lab.counters(0)
        XCTAssertEqual(c.rxFrames, 8, "runts are received, then dropped")
        XCTAssertEqual(c.rxBytes, 99, "1 + 6 + 13 + 14 + 16 + 17 + 14 + 18")
        XCTAssertEqual(lab.engine.fdb.count, 1)
    }

    func testInvalidSourceMACsAreNeverLearnedAndDropped() throws {
        let lab = try Lab(accessPorts: 2)
        let bad = [MACAddress.zero, .broadcast, Frame.mac("01:00:5e:00:00:01"), Frame.mac("33:33:00:00:00:01"),
                   Frame.mac("03:00:00:00:00:01")]
        lab.send(bad.map { Frame.ethernet(dst: h2, src: $0) } + bad.map { Frame.ethernet(dst: .broadcast, src: $0) }, on: 0)
        XCTAssertEqual(lab.outAll(), [[], []])
        assertDrops(lab, [.invalidSourceMAC: 10])
        XCTAssertEqual(lab.engine.fdb.count, 0)
        XCTAssertEqual(lab.counters(0).rxFrames, 10)
    }

    // MARK: unicast and flooding

    func testKnownUnicastGoesToItsOnePortOnly() throws {
        let lab = try Lab(accessPorts: 4)
        lab.send(Frame.ethernet(dst: .broadcast, src: h3), on: 2)
        _ = lab.outAll()
        let f = Frame.ethernet(dst: h3, src: h1)
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], [f], []])
        assertDrops(lab, [:])
    }

    func testUnknownUnicastBroadcastAndMulticastAreFloodedButNeverBackOutTheIngressPort() throws {
        let lab = try Lab(accessPorts: 4)
        let frames = [Frame.ethernet(dst: h9, src: h1),
                      Frame.ethernet(dst: .broadcast, src: h1),
                      Frame.ethernet(dst: Frame.mac("01:00:5e:00:00:fb"), src: h1),
                      Frame.ethernet(dst: Frame.mac("33:33:00:00:00:01"), src: h1, type: 0x86DD)]
        lab.send(frames, on: 1)
        XCTAssertEqual(lab.outAll(), [frames, [], frames, frames])
        for p in [0, 2, 3] { XCTAssertEqual(lab.counters(p).txFrames, 4) }
        XCTAssertEqual(lab.counters(1).txFrames, 0)
        assertDrops(lab, [:])
    }

    func testFloodWithNoOtherPortInTheVLANIsCountedNoEgressPort() throws {
        let lab = try Lab([.access(10), .access(20)])
        lab.send([Frame.ethernet(dst: .broadcast, src: h1), Frame.ethernet(dst: h9, src: h1)], on: 0)
        XCTAssertEqual(lab.outAll(), [[], []])
        assertDrops(lab, [.noEgressPort: 2])
    }

    func testDestinationLearnedOnTheIngressPortIsDroppedSameSegment() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 0)
        _ = lab.outAll()
        lab.send(Frame.ethernet(dst: h2, src: h1), on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], []])
        assertDrops(lab, [.sameSegment: 1])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h1), 0, "the source is still learned")
    }

    func testLinkLocalGroupAddressesAreNeverForwarded() throws {
        let lab = try Lab(accessPorts: 3)
        let reserved = (0x00...0x0F).map { Frame.ethernet(dst: MACAddress(0x01, 0x80, 0xC2, 0, 0, UInt8($0)), src: h1, type: 0x88CC) }
        let pause = Frame.ethernet(dst: Frame.mac("01:80:c2:00:00:01"), src: h1, type: 0x8808)
        let stp = Frame.ieee8023(dst: Frame.mac("01:80:c2:00:00:00"), src: h1, dsap: 0x42, ssap: 0x42)
        lab.send(reserved + [pause, stp], on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], []])
        assertDrops(lab, [.linkLocalDestination: 18])

        let above = Frame.ethernet(dst: Frame.mac("01:80:c2:00:00:10"), src: h1)
        let other = Frame.ethernet(dst: Frame.mac("01:80:c2:00:00:21"), src: h1) // GVRP-style, not 802.1D link-local
        lab.send([above, other], on: 0)
        XCTAssertEqual(lab.outAll(), [[], [above, other], [above, other]])
        assertDrops(lab, [.linkLocalDestination: 18])
    }

    /// All learning of a batch happens before any forwarding: in one batch from port 0, h1 -> h2 and
    /// then h2 -> h1 (both hosts behind port 0). h2 is learned on port 0 before the first frame is
    /// forwarded, so that frame is a same-segment drop, not a flood.
    func testLearnBeforeForwardWithinOneBatch() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send([Frame.ethernet(dst: h2, src: h1), Frame.ethernet(dst: h1, src: h2)], on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], []])
        assertDrops(lab, [.sameSegment: 2])
        XCTAssertEqual(lab.ports[0].flushes + lab.ports[1].flushes + lab.ports[2].flushes, 0)
    }

    /// The same across ports: an ARP request is flooded, its reply goes back on one port, and the
    /// conversation then stays unicast.
    func testARPRequestReplyThenUnicast() throws {
        let lab = try Lab(accessPorts: 3)
        let req = Frame.arp(request: true, senderMAC: h1, senderIP: [10, 0, 0, 1], targetMAC: .zero, targetIP: [10, 0, 0, 2])
        lab.send(req, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [req], [req]])
        let reply = Frame.arp(request: false, senderMAC: h2, senderIP: [10, 0, 0, 2], targetMAC: h1, targetIP: [10, 0, 0, 1])
        lab.send(reply, on: 1)
        XCTAssertEqual(lab.outAll(), [[reply], [], []])
        let ping = Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(0x77, length: 84))
        lab.send(ping, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [ping], []])
        assertDrops(lab, [:])
    }

    func testMACMoveRedirectsTraffic() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 1)
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 2) // h2 moved to port 2
        _ = lab.outAll()
        XCTAssertEqual(lab.engine.fdb.moves, 1)
        let f = Frame.ethernet(dst: h2, src: h1)
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], [f]])
    }

    func testStaticEntryIsNotMovedByTraffic() throws {
        let lab = try Lab(accessPorts: 3)
        XCTAssertTrue(lab.engine.fdb.addStatic(vlan: 1, mac: h2, port: 1))
        let spoof = Frame.ethernet(dst: .broadcast, src: h2)
        lab.send(spoof, on: 2)
        XCTAssertEqual(lab.outAll(), [[spoof], [spoof], []], "the frame itself is still forwarded")
        let f = Frame.ethernet(dst: h2, src: h1)
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [f], []])
        XCTAssertEqual(lab.engine.fdb.moves, 0)
    }

    // MARK: counters

    func testPortCountersCountFramesAndBytesAsOnTheWire() throws {
        let lab = try Lab([.access(10), .trunk(allowed: [10], native: nil), .access(10)])
        let a = Frame.ethernet(dst: .broadcast, src: h1, payload: Frame.payload(1, length: 100)) // 114 bytes
        lab.send(a, on: 0)
        // Out of port 1 tagged (118 bytes), out of port 2 untagged (114).
        XCTAssertEqual(lab.counters(0), counters(rx: 1, 114, tx: 0, 0))
        XCTAssertEqual(lab.counters(1), counters(rx: 0, 0, tx: 1, 118))
        XCTAssertEqual(lab.counters(2), counters(rx: 0, 0, tx: 1, 114))
        let b = Frame.tagged(dst: h1, src: h2, vid: 10, payload: Frame.payload(2, length: 200)) // 218 bytes
        lab.send(b, on: 1)
        XCTAssertEqual(lab.counters(1), counters(rx: 1, 218, tx: 1, 118))
        XCTAssertEqual(lab.counters(0), counters(rx: 1, 114, tx: 1, 214))
        XCTAssertEqual(lab.counters(2), counters(rx: 0, 0, tx: 1, 114))
        XCTAssertEqual(lab.outAll().map(\.count), [1, 1, 1])
    }

    func counters(rx: UInt64, _ rxBytes: UInt64, tx: UInt64, _ txBytes: UInt64) -> PortCounters {
        var c = PortCounters()
        c.rxFrames = rx; c.rxBytes = rxBytes; c.txFrames = tx; c.txBytes = txBytes
        return c
    }

    /// rx frames == delivered unicast + dropped + flooded originals, for one batch mixing every case.
    func testEveryFrameOfAMixedBatchIsAccountedFor() throws {
        // p0, p1: access 10; p2: access 20; p3: trunk 10,20 without native.
        let lab = try Lab([.access(10), .access(10), .access(20), .trunk(allowed: [10, 20], native: nil)])
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 1)
        lab.send(Frame.ethernet(dst: .broadcast, src: h3), on: 2)
        lab.send(Frame.tagged(dst: .broadcast, src: h4, vid: 10), on: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: h5), on: 0)
        _ = lab.outAll()
        XCTAssertEqual(lab.drops.total, 0)
        let before = (0..<4).map { lab.counters($0) }
        let flushesBefore = lab.ports.map(\.flushes)

        var batch: [[UInt8]] = []
        batch += (0..<3).map { Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(UInt8($0))) } // unicast -> p1
        batch.append(Frame.ethernet(dst: h4, src: h1))                                               // unicast -> p3 (tagged)
        batch += [Frame.ethernet(dst: .broadcast, src: h1), Frame.ethernet(dst: .broadcast, src: h1)] // flood
        batch.append(Frame.ethernet(dst: h9, src: h1))                                               // unknown: flood
        batch.append(Frame.ethernet(dst: Frame.mac("01:00:5e:01:02:03"), src: h1))                  // multicast: flood
        batch.append(Frame.ethernet(dst: h3, src: h1)) // h3 is known in VLAN 20 only: unknown in 10, flood
        batch.append([0x02, 0x00])                                                                   // runt
        batch.append(Frame.ethernet(dst: h2, src: Frame.mac("01:00:00:00:00:01")))                   // invalid source
        batch.append(Frame.ethernet(dst: Frame.mac("01:80:c2:00:00:02"), src: h1))                  // LACP: link-local
        batch.append(Frame.tagged(dst: h2, src: h1, vid: 10))                                        // tagged on access
        batch.append(Frame.ethernet(dst: h5, src: h1))                                               // same segment
        XCTAssertEqual(batch.count, 14)
        lab.send(batch, on: 0)

        let (delivered, flooded, dropped) = (4, 5, 5)
        let rx = lab.counters(0).rxFrames - before[0].rxFrames
        XCTAssertEqual(rx, 14)
        XCTAssertEqual(lab.drops.total, UInt64(dropped))
        XCTAssertEqual(Int(rx), delivered + dropped + flooded)
        assertDrops(lab, [.runt: 1, .invalidSourceMAC: 1, .linkLocalDestination: 1, .taggedOnAccessPort: 1, .sameSegment: 1])
        let tx = (0..<4).map { Int(lab.counters($0).txFrames - before[$0].txFrames) }
        XCTAssertEqual(tx, [0, 3 + 5, 0, 1 + 5], "each flood reaches p1 and p3, the other VLAN-10 members")
        XCTAssertEqual(tx.reduce(0, +), delivered + 2 * flooded)
        let out = lab.outAll()
        XCTAssertEqual(out.map(\.count), tx)
        XCTAssertEqual(out[1], [batch[0], batch[1], batch[2], batch[4], batch[5], batch[6], batch[7], batch[8]])
        XCTAssertEqual(out[3], [3, 4, 5, 6, 7, 8].map { Frame.pushTag(batch[$0], tci: Frame.tci(vid: 10)) })
        XCTAssertEqual(lab.ports.map(\.flushes), zip(flushesBefore, [0, 1, 0, 1]).map(+), "one kick per egress port per batch")
    }

    func testFullTransmitQueueIsCountedPerFrame() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 1)
        _ = lab.outAll()
        lab.ports[1].txSpace = 1
        lab.send((0..<3).map { Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(UInt8($0))) }, on: 0)
        XCTAssertEqual(lab.out(1).count, 1)
        assertDrops(lab, [.txQueueFull: 2])
        XCTAssertEqual(lab.counters(1).txFrames, 1, "only what was queued is counted as sent")
        XCTAssertEqual(lab.counters(0).rxFrames, 3)
    }

    /// An entry the egress port cannot take because it is too long is counted as `tx-oversize`,
    /// not as a full queue, and the frames after it in the same batch still go out with their
    /// bytes counted (the port reports per entry; it does not stop at the first refusal).
    func testOversizeFrameIsCountedAsOversizeAndTheRestStillGoOut() throws {
        let engine = BridgeEngine<MemoryPort>(settings: BridgeSettings(), maxPorts: 4)
        let a = MemoryPort(), b = MemoryPort(bufferSize: 128)
        _ = try engine.addPort(name: "a", mode: .defaultAccess, device: a)
        _ = try engine.addPort(name: "b", mode: .defaultAccess, device: b)
        b.inject(Frame.ethernet(dst: .broadcast, src: h2))
        engine.poll(port: 1, now: 0)
        _ = a.drain()
        let frames = [Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(1, length: 46)),   // 60 bytes
                      Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(2, length: 286)),  // 300: too long for b
                      Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(3, length: 66))]   // 80 bytes
        for f in frames { a.inject(f) }
        engine.poll(port: 0, now: 0)
        XCTAssertEqual(b.drain(), [frames[0], frames[2]], "the frame after the oversize one is sent")
        let c = engine.portCounters(1)
        XCTAssertEqual(c.txFrames, 2)
        XCTAssertEqual(c.txBytes, 140, "bytes of the two frames sent, not of the first two entries")
        XCTAssertEqual(c.txOversize, 1)
        XCTAssertEqual(c.txQueueFull, 0)
        XCTAssertEqual(engine.dropCounters[.txOversize], 1)
        XCTAssertEqual(engine.dropCounters[.txQueueFull], 0)
    }

    /// A backend's own events stay on the port when the backend leaves it (interface gone), add up
    /// with its successor's, and stay in the bridge's drop totals after the port is removed.
    func testBackendEventsSurviveReattachAndRemoval() throws {
        let engine = BridgeEngine<MemoryPort>(settings: BridgeSettings(), maxPorts: 4)
        let first = MemoryPort()
        first.events.rxTruncated = 3
        first.events.rxRingFull = 5
        first.events.txSendErrors = 1
        let i = try engine.addPort(name: "a", mode: .defaultAccess, device: first)
        XCTAssertEqual(engine.portEvents(i).rxTruncated, 3)
        engine.setDevice(i, nil)
        XCTAssertEqual(engine.portEvents(i), first.events, "kept while the port is down")
        let second = MemoryPort()
        second.events.rxTruncated = 2
        second.events.rxRunts = 4
        engine.setDevice(i, second)
        let e = engine.portEvents(i)
        XCTAssertEqual(e.rxTruncated, 5)
        XCTAssertEqual(e.rxRingFull, 5)
        XCTAssertEqual(e.rxRunts, 4)
        XCTAssertEqual(e.txSendErrors, 1)
        XCTAssertEqual(engine.dropCounters[.truncated], 5)
        XCTAssertEqual(engine.dropCounters[.rxRingFull], 5)
        XCTAssertEqual(engine.dropCounters[.runt], 4)
        try engine.removePort(i)
        XCTAssertEqual(engine.dropCounters[.truncated], 5, "a removed port's drops stay in the bridge's totals")
        XCTAssertEqual(engine.dropCounters[.runt], 4)
    }

    /// Classification records each frame's payload ethertype and network-layer offset once, for
    /// every later stage (`FrameInfo`, 8 bytes).
    func testClassifyRecordsEtherTypeAndNetworkOffset() throws {
        XCTAssertEqual(MemoryLayout<FrameInfo>.size, 8)
        XCTAssertEqual(MemoryLayout<FrameInfo>.stride, 8)
        let lab = try Lab([.trunk(allowed: [10], native: 1), .access(1), .access(10)])
        let untagged = Frame.ethernet(dst: .broadcast, src: h1, type: 0x0806)
        let tagged = Frame.tagged(dst: .broadcast, src: h2, vid: 10, pcp: 5, type: 0x86DD)
        lab.ports[0].inject(untagged)
        lab.ports[0].inject(tagged)
        lab.engine.poll(port: 0, now: 0)
        let info = lab.engine.batch.info.base
        XCTAssertEqual(info[0], FrameInfo(vlan: 1, etherType: 0x0806, pcp: 0, tagLength: 0, l3Offset: 14))
        XCTAssertEqual(info[1], FrameInfo(vlan: 10, etherType: 0x86DD, pcp: 5, tagLength: 4, l3Offset: 18))
        XCTAssertEqual(info[1].outerEtherType, 0x8100)
        tagged.withUnsafeBytes {
            XCTAssertEqual(FrameInfo(parsing: $0.baseAddress!, length: tagged.count),
                           FrameInfo(vlan: 10, etherType: 0x86DD, pcp: 5, tagLength: 4, l3Offset: 18))
        }
    }

    func testLargeBacklogIsProcessedInBatches() throws {
        let lab = try Lab(accessPorts: 2, settings: BridgeSettings(batchSize: 32))
        let frames = (0..<200).map { Frame.ethernet(dst: h2, src: h1, payload: Frame.payload(UInt8($0))) }
        lab.send(frames, on: 0)
        XCTAssertEqual(lab.out(1), frames, "order kept across batches")
        XCTAssertEqual(lab.ports[1].flushes, 7, "ceil(200 / 32) batches, one kick each")
    }

    // MARK: port down and up

    func testPortDownFlushesItsEntriesAndCountsEgressToIt() throws {
        let lab = try Lab(accessPorts: 3)
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 1)
        lab.send(Frame.ethernet(dst: .broadcast, src: h3), on: 2)
        XCTAssertTrue(lab.engine.fdb.addStatic(vlan: 1, mac: h5, port: 1))
        _ = lab.outAll()

        let old = lab.engine.setDevice(1, nil)
        XCTAssertTrue(old === lab.ports[1])
        XCTAssertFalse(lab.engine.isUp(1))
        XCTAssertEqual(lab.counters(1).downEvents, 1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h2), -1, "learned entries flushed")
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h5), 1, "static entries stay")
        lab.engine.setDevice(1, nil)
        XCTAssertEqual(lab.counters(1).downEvents, 1, "counted once per transition")

        // To the static entry on the down port: egress-port-down. Flooding skips the down port.
        lab.send([Frame.ethernet(dst: h5, src: h1), Frame.ethernet(dst: h2, src: h1), Frame.ethernet(dst: h3, src: h1)], on: 0)
        XCTAssertEqual(lab.outAll().map(\.count), [0, 0, 2])
        assertDrops(lab, [.egressPortDown: 1])
        XCTAssertEqual(lab.engine.poll(port: 1, now: 0), 0, "a down port is not polled")

        // Back up: traffic flows again, with a fresh port backend.
        let fresh = MemoryPort()
        XCTAssertNil(lab.engine.setDevice(1, fresh))
        lab.ports[1] = fresh
        XCTAssertTrue(lab.engine.isUp(1))
        lab.send([Frame.ethernet(dst: h5, src: h1), Frame.ethernet(dst: h2, src: h1)], on: 0)
        XCTAssertEqual(lab.outAll().map(\.count), [0, 2, 1])
        lab.send(Frame.ethernet(dst: h1, src: h2), on: 1)
        XCTAssertEqual(lab.outAll().map(\.count), [1, 0, 0])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h2), 1)
        assertDrops(lab, [.egressPortDown: 1])
    }

    func testPortAddedWithoutDeviceIsDownUntilAttached() throws {
        let lab = try Lab(accessPorts: 2)
        let i = try lab.engine.addPort(name: "vif9.0", mode: .defaultAccess, device: nil)
        XCTAssertEqual(i, 2)
        XCTAssertFalse(lab.engine.isUp(i))
        XCTAssertEqual(lab.engine.portIndex(named: "vif9.0"), i)
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)
        XCTAssertEqual(lab.outAll().map(\.count), [0, 1])
        XCTAssertEqual(lab.counters(i).downEvents, 0, "never up, so never went down")
        let p = MemoryPort()
        lab.engine.setDevice(i, p)
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)
        XCTAssertEqual(p.drain().count, 1)
    }

    func testTooManyPorts() throws {
        let engine = BridgeEngine<MemoryPort>(maxPorts: 2)
        XCTAssertEqual(try engine.addPort(name: "a", mode: .defaultAccess, device: nil), 0)
        XCTAssertEqual(try engine.addPort(name: "b", mode: .defaultAccess, device: nil), 1)
        XCTAssertThrowsError(try engine.addPort(name: "c", mode: .defaultAccess, device: nil)) {
            XCTAssertEqual($0 as? BridgeError, .tooManyPorts(2))
        }
    }
}
