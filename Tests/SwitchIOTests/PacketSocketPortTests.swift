// Tests of the AF_PACKET port on real veth pairs (root only; skipped otherwise).
// Every test creates its own veth pair named after the process id and deletes it in tearDown.
// Crafted frames carry source MAC 02:55:53:57:00:01 so that stray kernel frames are ignored.

import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchIO
import SwitchCore

private let testSource: [UInt8] = [0x02, 0x55, 0x53, 0x57, 0x00, 0x01]
private let testDestination: [UInt8] = [0x02, 0x55, 0x53, 0x57, 0x00, 0x02]

/// Runs a command; returns its exit status and combined output.
@discardableResult
private func runCommand(_ arguments: [String]) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: arguments[0])
    p.arguments = Array(arguments.dropFirst())
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    do { try p.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

private func writeSysctl(_ path: String, _ value: String) {
    try? value.write(toFile: path, atomically: false, encoding: .utf8)
}

/// An Ethernet frame from the test source: dst, src, [tag bytes], ethertype, payload.
private func craftFrame(tag: [UInt8] = [], etherType: UInt16 = 0x88B5, sequence: UInt8, payloadLength: Int = 60) -> [UInt8] {
    var f = testDestination + testSource + tag
    f += [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
    for i in 0..<payloadLength { f.append(i == 0 ? sequence : UInt8(truncatingIfNeeded: i &* 7)) }
    return f
}

/// Frames to send, kept in memory owned by the test for the life of the batch.
private final class OutgoingFrames {
    let batch: PacketBatch
    private var buffers: [UnsafeMutableRawPointer] = []
    var entries: [EgressEntry] = []

    init(capacity: Int = 16) { batch = PacketBatch(capacity: capacity) }
    deinit { for b in buffers { b.deallocate() } }

    /// Adds `bytes` (with `tagLength` bytes of 802.1Q tag at offset 12 to be dropped on egress),
    /// to be sent with `tci` (0 = untagged).
    func add(_ bytes: [UInt8], tagLength: Int = 0, tci: UInt16 = 0, vnet: VirtioNetHeader = .none) {
        let b = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        b.copyMemory(from: bytes, byteCount: bytes.count)
        buffers.append(b)
        let i = batch.count
        batch.append(b, length: bytes.count, vnet: vnet)
        batch.info[i].tagLength = UInt8(tagLength)
        entries.append(EgressEntry(frame: UInt16(i), tci: tci))
    }

    /// What the port made of each entry at the last `send`.
    private(set) var statuses: [TransmitStatus] = []

    func send(on port: PacketSocketPort) -> Int {
        statuses = Array(repeating: .error, count: entries.count)
        let n = entries.withUnsafeBufferPointer { e in
            statuses.withUnsafeMutableBufferPointer { port.transmit(batch, entries: e.baseAddress!, count: e.count, status: $0.baseAddress!) }
        }
        port.flush()
        return n
    }

    func count(_ status: TransmitStatus) -> Int { statuses.filter { $0 == status }.count }
}

private struct ReceivedFrame {
    var bytes: [UInt8]
    var vnet: VirtioNetHeader
}

/// Frames each port handed out through `receiveTestFrames` (the tests run one at a time).
nonisolated(unsafe) private var framesHandedOut: [ObjectIdentifier: Int] = [:]

/// Waits up to `timeout` seconds for `count` test frames on `port`; returns what arrived.
private func receiveTestFrames(on port: PacketSocketPort, count: Int, timeout: Double = 2.0) -> [ReceivedFrame] {
    let batch = PacketBatch(capacity: 32)
    var result: [ReceivedFrame] = []
    let deadline = Date().addingTimeInterval(timeout)
    while result.count < count && Date() < deadline {
        var p = pollfd(fd: port.fileDescriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, 50)
        let n = port.receive(into: batch)
        framesHandedOut[ObjectIdentifier(port), default: 0] += n
        // Long frames may be pending (direct receive): their bodies are read here.
        if n > 0 { port.materialize(batch, through: n - 1) }
        for i in 0..<n {
            let bytes = Array(UnsafeRawBufferPointer(start: batch.frames[i], count: Int(batch.lengths[i])))
            if bytes.count >= 12 && Array(bytes[6..<12]) == testSource {
                result.append(ReceivedFrame(bytes: bytes, vnet: batch.vnet[i]))
            }
        }
        port.releaseReceived()
    }
    return result
}

final class PacketSocketPortTests: XCTestCase {
    nonisolated(unsafe) private static var serial = 0
    private var nameA = ""
    private var nameB = ""
    private var namespaces: [String] = []
    private var extraLinks: [String] = []
    private var processes: [Process] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        try XCTSkipUnless(geteuid() == 0, "AF_PACKET port tests need root")
        Self.serial += 1
        let base = "uswt\(getpid() % 1_000_000)\(Self.serial)"
        nameA = base + "a"
        nameB = base + "b"
        runCommand(["/usr/sbin/ip", "link", "del", nameA])
        let r = runCommand(["/usr/sbin/ip", "link", "add", nameA, "type", "veth", "peer", "name", nameB])
        XCTAssertEqual(r.status, 0, r.output)
        for n in [nameA, nameB] {
            writeSysctl("/proc/sys/net/ipv6/conf/\(n)/disable_ipv6", "1")
            runCommand(["/usr/sbin/ip", "link", "set", n, "up"])
        }
    }

    override func tearDown() {
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        processes = []
        if !nameA.isEmpty { runCommand(["/usr/sbin/ip", "link", "del", nameA]) }
        for l in extraLinks { runCommand(["/usr/sbin/ip", "link", "del", l]) }
        for ns in namespaces { runCommand(["/usr/sbin/ip", "netns", "del", ns]) }
        extraLinks = []
        namespaces = []
        super.tearDown()
    }

    private func openPorts() throws -> (PacketSocketPort, PacketSocketPort) {
        let options = PacketSocketPort.Options(rxFrames: 32, bulkFrames: 8, txFrames: 32)
        framesHandedOut = [:]
        return (try PacketSocketPort(interface: nameA, options: options),
                try PacketSocketPort(interface: nameB, options: options))
    }

    func testOpensOnInterfaceWithExpectedGeometry() throws {
        let (a, _) = try openPorts()
        XCTAssertEqual(a.interfaceName, nameA)
        XCTAssertEqual(a.ifIndex, Int32(bitPattern: if_nametoindex(nameA)))
        XCTAssertGreaterThanOrEqual(a.fileDescriptor, 0)
        XCTAssertFalse(a.isDead)
        // Small slots of 2 KiB, two to a page; bulk and TX slots of 68 KiB, 15 to a 1 MiB block.
        XCTAssertEqual(a.rxLayout.blockSize, 4096)
        XCTAssertEqual(a.rxLayout.frameCount, 32)
        XCTAssertEqual(a.bulkLayout.blockSize, 1 << 20)
        XCTAssertEqual(a.bulkLayout.frameCount, 15)
        XCTAssertEqual(a.txLayout.frameCount, 45)
        // An MTU-sized frame with two tags fits a small slot behind the headers.
        XCTAssertEqual(a.smallFrameLimit, 2048 - 96)
        XCTAssertGreaterThanOrEqual(a.smallFrameLimit, 1522)
        XCTAssertNil(a.checkError())
    }

    func testDefaultOptionsHoldManySmallFramesAndSomeSuperFrames() throws {
        let a = try PacketSocketPort(interface: nameA)
        XCTAssertEqual(a.rxLayout.frameCount, 4096)
        XCTAssertEqual(a.rxLayout.frameSize, 2048)
        XCTAssertEqual(a.bulkLayout.frameCount, 75)
        XCTAssertGreaterThanOrEqual(a.bulkLayout.frameSize, 80 + 14 + 65535)
        XCTAssertEqual(a.txLayout.frameCount, 135)
        let mebibytes = Double(a.rxLayout.byteCount + a.bulkLayout.byteCount + a.txLayout.byteCount) / 1048576
        XCTAssertEqual(mebibytes, 22.0, accuracy: 0.5)
    }

    func testFramesOfBothSizesStillSplitAfterTheLinkWentDownAndUp() throws {
        // A link that goes down and up unhooks the socket and hooks it back (net/packet/af_packet.c,
        // packet_notifier); the socket must still hand over its queued long frames, none cut.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let (a, b) = try openPorts()
        for _ in 0..<2 {
            runCommand(["/usr/sbin/ip", "link", "set", nameB, "down"])
            runCommand(["/usr/sbin/ip", "link", "set", nameB, "up"])
            usleep(200_000)
            _ = b.checkError()
            XCTAssertFalse(b.isDead)
            let limit = b.smallFrameLimit
            let lengths = [60, 4000, limit - 14, limit - 13, 1500, 8000]
            let frames = lengths.enumerated().map { craftFrame(sequence: UInt8($0.offset), payloadLength: $0.element) }
            let out = OutgoingFrames()
            for f in frames { out.add(f) }
            XCTAssertEqual(out.send(on: a), frames.count)
            let received = receiveTestFrames(on: b, count: frames.count)
            XCTAssertEqual(received.map(\.bytes.count), frames.map(\.count))
            XCTAssertEqual(b.events.rxTruncated, 0)
        }
    }

    func testMoreLongFramesThanBulkSlotsWaitForTheNextBatch() throws {
        // One socket reads each long frame into a bulk slot; a batch with more long frames than
        // bulk slots (15 here) stops at the slot that has none and goes on at the next receive.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let (a, b) = try openPorts()
        let frames = (0..<24).map { craftFrame(sequence: UInt8($0), payloadLength: $0 % 3 == 2 ? 100 : 4000) }
        assertCrossWholeAndInOrder(frames, from: a, to: b)
        XCTAssertEqual(framesHandedOut[ObjectIdentifier(b)], frames.count)
    }

    func testLongFramesArriveWholeWhileASocketErrorIsPending() throws {
        // A link that went down leaves ENETDOWN pending on the socket until someone reads it, and
        // recv reports a pending error before the queue (so does the daemon's poll, but the bridge
        // thread may receive first). The long frames queued behind their ring slots must still
        // come out whole and in order, none read into the wrong slot.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let (a, b) = try openPorts()
        runCommand(["/usr/sbin/ip", "link", "set", nameB, "down"])
        runCommand(["/usr/sbin/ip", "link", "set", nameB, "up"])
        usleep(200_000)
        let frames = (0..<8).map { craftFrame(sequence: UInt8($0), payloadLength: $0 % 2 == 0 ? 4000 : 100) }
        assertCrossWholeAndInOrder(frames, from: a, to: b)
    }

    /// Sends `frames` from `a` in one batch and checks that `b` receives each once, whole and in
    /// order, with nothing counted as truncated.
    private func assertCrossWholeAndInOrder(_ frames: [[UInt8]], from a: PacketSocketPort, to b: PacketSocketPort,
                                            file: StaticString = #filePath, line: UInt = #line) {
        let out = OutgoingFrames(capacity: max(16, frames.count))
        for f in frames { out.add(f) }
        XCTAssertEqual(out.send(on: a), frames.count, file: file, line: line)
        usleep(100_000)
        let received = receiveTestFrames(on: b, count: frames.count)
        XCTAssertTrue(received.map(\.bytes) == frames,
                      "frames lost, cut or reordered: got lengths \(received.map(\.bytes.count))", file: file, line: line)
        XCTAssertEqual(b.events.rxTruncated, 0, file: file, line: line)
    }

    func testDirectReceiveReadsLongFramesStraightIntoTheEgressTXSlotWithRewrittenHeaders() throws {
        // A -> B, then B's batch out of C (source B) -> D, as an engine forwards: long untagged
        // frames are pending on B (truncated copy in the ring, body in the queue), C reads their
        // bodies straight into its TX slots, and the header bytes the "engine" rewrote in the
        // truncated copy (here the destination MAC) are what leaves. A long frame that goes
        // nowhere is discarded at release, and the next batch comes out whole and in order.
        let c = nameA + "c", d = nameA + "d"
        runCommand(["/usr/sbin/ip", "link", "del", c])
        XCTAssertEqual(runCommand(["/usr/sbin/ip", "link", "add", c, "type", "veth", "peer", "name", d]).status, 0)
        extraLinks.append(c)
        for n in [nameA, nameB, c, d] {
            writeSysctl("/proc/sys/net/ipv6/conf/\(n)/disable_ipv6", "1")
            runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"])
            runCommand(["/usr/sbin/ip", "link", "set", n, "up"])
        }
        let options = PacketSocketPort.Options(rxFrames: 32, bulkFrames: 8, txFrames: 32, directReceive: true)
        framesHandedOut = [:]
        let a = try PacketSocketPort(interface: nameA, options: options), b = try PacketSocketPort(interface: nameB, options: options)
        let portC = try PacketSocketPort(interface: c, options: options)
        let portD = try PacketSocketPort(interface: d, options: options)
        let lengths = [4000, 100, 8000, 3000, 60, 6000]
        let frames = lengths.enumerated().map { craftFrame(sequence: UInt8($0.offset), payloadLength: $0.element) }
        let out = OutgoingFrames()
        for f in frames { out.add(f) }
        XCTAssertEqual(out.send(on: a), frames.count)
        usleep(100_000)
        let batch = PacketBatch(capacity: 32)
        let n = b.receive(into: batch)
        XCTAssertEqual(n, frames.count)
        let pending = (0..<n).filter { batch.deferred[$0] == PacketBatch.pending }
        XCTAssertEqual(pending, [0, 2, 3, 5], "the long frames wait in the queue")
        for i in 0..<n { XCTAssertEqual(Int(batch.lengths[i]), frames[i].count, "a pending frame has its whole length") }
        // The "engine": every frame's destination MAC rewritten; frame 5, the last, dropped (a
        // dropped pending frame in front of one that goes out is read into B's memory first,
        // the queue being in order).
        let newDestination: [UInt8] = [0x02, 0xDD, 0, 0, 0, 0x09]
        for i in 0..<n { batch.frames[i].copyMemory(from: newDestination, byteCount: 6) }
        var entries = (0..<n).filter { $0 != 5 }.map { EgressEntry(frame: UInt16($0), tci: 0) }
        var status = [TransmitStatus](repeating: .error, count: entries.count)
        let sent = entries.withUnsafeMutableBufferPointer { e in
            status.withUnsafeMutableBufferPointer { portC.transmit(batch, entries: e.baseAddress!, count: e.count, status: $0.baseAddress!, source: b) }
        }
        XCTAssertEqual(sent, entries.count, "\(status)")
        XCTAssertEqual((0..<n).filter { batch.deferred[$0] != 0 }, [5], "read straight into C's slots, all but the dropped one")
        portC.flush()
        b.releaseReceived()
        XCTAssertEqual((0..<n).filter { batch.deferred[$0] != 0 }, [], "release discards and forgets the rest")
        var expected = frames.enumerated().filter { $0.offset != 5 }.map { newDestination + Array($0.element[6...]) }
        let received = receiveTestFrames(on: portD, count: expected.count).map(\.bytes)
        XCTAssertTrue(received == expected, "got lengths \(received.map(\.count))")
        // The dropped frame's body left B's queue: the next frames come out whole, in order.
        let next = [craftFrame(sequence: 40, payloadLength: 5000), craftFrame(sequence: 41, payloadLength: 80)]
        let again = OutgoingFrames()
        for f in next { again.add(f) }
        XCTAssertEqual(again.send(on: a), 2)
        usleep(100_000)
        expected = next
        XCTAssertTrue(receiveTestFrames(on: b, count: 2).map(\.bytes) == expected)
        XCTAssertEqual(b.events.rxTruncated, 0)
        XCTAssertEqual(portD.events.rxTruncated, 0)
        portC.close(); portD.close()
    }

    func testWithoutDirectReceiveLongFramesAreReadAtReceive() throws {
        // The default: nothing is pending, every long frame is whole at receive.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let options = PacketSocketPort.Options(rxFrames: 32, bulkFrames: 8, txFrames: 32)
        let a = try PacketSocketPort(interface: nameA, options: options)
        let b = try PacketSocketPort(interface: nameB, options: options)
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 1, payloadLength: 4000))
        XCTAssertEqual(out.send(on: a), 1)
        usleep(100_000)
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(b.receive(into: batch), 1)
        XCTAssertEqual(batch.deferred[0], 0)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.frames[0], count: Int(batch.lengths[0]))),
                       craftFrame(sequence: 1, payloadLength: 4000))
        b.releaseReceived()
    }

    func testLongFramesThroughTheRingWhenSendmsgIsOff() throws {
        // sendLongFrames false: every frame, long ones too, goes through the TX ring, in order.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let options = PacketSocketPort.Options(rxFrames: 32, bulkFrames: 8, txFrames: 32, sendLongFrames: false)
        framesHandedOut = [:]
        let a = try PacketSocketPort(interface: nameA, options: options)
        let b = try PacketSocketPort(interface: nameB, options: options)
        XCTAssertEqual(a.longFrameSocket, -1)
        let frames = [60, 4000, 100, 8000, 3000].enumerated().map { craftFrame(sequence: UInt8($0.offset), payloadLength: $0.element) }
        assertCrossWholeAndInOrder(frames, from: a, to: b)
    }

    func testLongFramesBySendmsgKeepTheirPlaceBehindRingFrames() throws {
        // The default: long frames leave by sendmsg on the port's second socket, after the ring
        // frames queued before them, so a mixed batch arrives in the order sent, twice over.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let options = PacketSocketPort.Options(rxFrames: 32, bulkFrames: 8, txFrames: 32, sendLongFrames: true)
        framesHandedOut = [:]
        let a = try PacketSocketPort(interface: nameA, options: options)
        let b = try PacketSocketPort(interface: nameB, options: options)
        XCTAssertGreaterThanOrEqual(a.longFrameSocket, 0)
        for round in 0..<2 {
            let lengths = [60, 100, 4000, 64, 8000, 8000, 90, 2100, 70]
            let frames = lengths.enumerated().map { craftFrame(sequence: UInt8(round * 16 + $0.offset), payloadLength: $0.element) }
            assertCrossWholeAndInOrder(frames, from: a, to: b)
        }
    }

    func testFramesOfBothSizesArriveOnceEachInTheOrderSent() throws {
        // Jumbo MTU, so that frames longer than a small slot cross the veth without GSO.
        for n in [nameA, nameB] { runCommand(["/usr/sbin/ip", "link", "set", n, "mtu", "9000"]) }
        let (a, b) = try openPorts()
        let limit = b.smallFrameLimit
        // Sizes on both sides of the split, interleaved: short, long, long, short...
        let lengths = [60, limit - 14, limit - 13, 4000, 8000, 100, 1500, limit + 200, 64, 8900]
        let frames = lengths.enumerated().map { craftFrame(sequence: UInt8($0.offset), payloadLength: $0.element) }
        let out = OutgoingFrames()
        for f in frames { out.add(f) }
        XCTAssertEqual(out.send(on: a), frames.count)
        usleep(100_000)
        let received = receiveTestFrames(on: b, count: frames.count)
        XCTAssertEqual(received.map(\.bytes.count), frames.map(\.count))
        XCTAssertTrue(received.map(\.bytes) == frames, "frame contents differ")
        // Nothing more: each frame arrived once (a long frame's truncated copy in its ring slot
        // is not delivered beside the whole frame read from the queue).
        XCTAssertEqual(receiveTestFrames(on: b, count: 1, timeout: 0.3).count, 0)
        XCTAssertEqual(b.events.rxTruncated, 0)
    }

    func testNonEthernetInterfaceIsRefusedWithoutLeaks() throws {
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        let before = openDescriptors()
        XCTAssertThrowsError(try PacketSocketPort(interface: "lo")) { error in
            XCTAssertTrue("\(error)".contains("not Ethernet"), "\(error)")
        }
        XCTAssertEqual(openDescriptors(), before, "a failed init leaked its socket")
    }

    func testPlainFramesCrossAndOwnTransmissionsAreNotSeen() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        let frames = (0..<3).map { craftFrame(sequence: UInt8($0), payloadLength: 60 + $0 * 500) }
        for f in frames { out.add(f) }
        XCTAssertEqual(out.send(on: a), 3)
        let got = receiveTestFrames(on: b, count: 3)
        XCTAssertEqual(got.map(\.bytes), frames)
        XCTAssertEqual(receiveTestFrames(on: a, count: 1, timeout: 0.3).count, 0, "port saw its own transmissions")
        XCTAssertEqual(out.count(.queued), 3)
        XCTAssertEqual(b.events.rxTruncated, 0)
    }

    func testPushedTagArrivesInline() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        let plain = craftFrame(sequence: 1)
        out.add(plain, tci: 0x2064)  // PCP 1, VID 100
        XCTAssertEqual(out.send(on: a), 1)
        let got = receiveTestFrames(on: b, count: 1)
        XCTAssertEqual(got.count, 1)
        let expected = Array(plain[0..<12]) + [0x81, 0x00, 0x20, 0x64] + Array(plain[12...])
        XCTAssertEqual(got.first?.bytes, expected)
    }

    func testPoppedTagLeavesUntagged() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        let tagged = craftFrame(tag: [0x81, 0x00, 0x00, 0x64], sequence: 2)
        out.add(tagged, tagLength: 4, tci: 0)
        XCTAssertEqual(out.send(on: a), 1)
        let got = receiveTestFrames(on: b, count: 1)
        XCTAssertEqual(got.first?.bytes, Array(tagged[0..<12]) + Array(tagged[16...]))
    }

    func testPriorityTagsAndZeroTCIAreRestored() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        // Pushed priority tag: PCP 3, VID 0.
        let plain = craftFrame(sequence: 3)
        out.add(plain, tci: 0x6000)
        // A tag with TCI 0 carried as it is: the kernel strips it like any tag, with
        // TP_STATUS_VLAN_VALID and tp_vlan_tci == 0.
        let zeroTagged = craftFrame(tag: [0x81, 0x00, 0x00, 0x00], sequence: 4)
        out.add(zeroTagged, tagLength: 0, tci: 0)
        XCTAssertEqual(out.send(on: a), 2)
        let got = receiveTestFrames(on: b, count: 2)
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(got.first?.bytes, Array(plain[0..<12]) + [0x81, 0x00, 0x60, 0x00] + Array(plain[12...]))
        XCTAssertEqual(got.last?.bytes, zeroTagged)
    }

    func testServiceTagKeepsItsTPID() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        // 802.1ad S-tag VID 100 around an 802.1Q C-tag VID 200: the kernel strips the outer one.
        let qinq = craftFrame(tag: [0x88, 0xA8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xC8], sequence: 5)
        out.add(qinq)
        XCTAssertEqual(out.send(on: a), 1)
        XCTAssertEqual(receiveTestFrames(on: b, count: 1).first?.bytes, qinq)
    }

    func testChecksumOffloadHeaderFollowsTheTag() throws {
        let (a, b) = try openPorts()
        // IPv4/UDP frame, UDP checksum left to the kernel (CHECKSUM_PARTIAL).
        var f = testDestination + testSource + [0x08, 0x00]
        let payload = 40
        let ipLength = 20 + 8 + payload
        var ip: [UInt8] = [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xFF), 0, 1, 0x40, 0, 64, 17, 0, 0,
                           198, 51, 100, 1, 198, 51, 100, 2]
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let csum = ~UInt16(sum)
        ip[10] = UInt8(csum >> 8)
        ip[11] = UInt8(csum & 0xFF)
        f += ip
        f += [0x30, 0x39, 0x30, 0x3A, 0, UInt8(8 + payload), 0, 0]
        f += [UInt8](repeating: 0xAB, count: payload)
        let vnet = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, csumStart: 34, csumOffset: 6)
        let out = OutgoingFrames()
        out.add(f, tci: 0x0064, vnet: vnet)
        XCTAssertEqual(out.send(on: a), 1)
        let got = receiveTestFrames(on: b, count: 1)
        XCTAssertEqual(got.count, 1)
        guard let r = got.first else { return }
        XCTAssertEqual(Array(r.bytes[12..<16]), [0x81, 0x00, 0x00, 0x64])
        // The checksum starts 4 bytes later in the tagged frame, as the receiver sees it.
        XCTAssertEqual(r.vnet.flags & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum)
        XCTAssertEqual(r.vnet.csumStart, 38)
        XCTAssertEqual(r.vnet.csumOffset, 6)
    }

    /// `rounds` of 12 frames from `a` arrive at `b` in order (the 32-slot TX ring wraps).
    private func assertRingKeepsWorking(from a: PacketSocketPort, to b: PacketSocketPort, rounds: Int,
                                        file: StaticString = #filePath, line: UInt = #line) {
        for round in 0..<rounds {
            let more = OutgoingFrames()
            let frames = (0..<12).map { craftFrame(sequence: UInt8(20 + round * 12 + $0)) }
            for f in frames { more.add(f) }
            XCTAssertEqual(more.send(on: a), 12, file: file, line: line)
            XCTAssertEqual(receiveTestFrames(on: b, count: 12).map(\.bytes), frames, file: file, line: line)
        }
    }

    func testRefusedFrameIsReclaimedAndLaterFramesStillGo() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        // hdr_len beyond the frame: the kernel marks the slot TP_STATUS_WRONG_FORMAT.
        out.add(craftFrame(sequence: 10), vnet: VirtioNetHeader(hdrLen: 2000))
        let good = [craftFrame(sequence: 11), craftFrame(sequence: 12)]
        for g in good { out.add(g) }
        XCTAssertEqual(out.send(on: a), 3)
        XCTAssertEqual(receiveTestFrames(on: b, count: 2).map(\.bytes), good)
        XCTAssertEqual(a.events.txWrongFormat, 1)
        // The ring keeps working, also across its end.
        assertRingKeepsWorking(from: a, to: b, rounds: 5)
        XCTAssertEqual(a.events.txWrongFormat, 1)
        XCTAssertEqual(a.events.txSendErrors, 0)
    }

    // MARK: kicks handed to the kick thread (TransmitKicker)

    /// A kick thread that takes every kick (wakes at the first frame) and is stopped at the end.
    private func startKicker() -> TransmitKicker {
        let kicker = TransmitKicker(wakeAfterFrames: 1)
        kicker.start()
        addTeardownBlock { kicker.stop() }
        return kicker
    }

    func testFramesKickedByTheKickThreadArriveOnceEachInOrder() throws {
        let (a, b) = try openPorts()
        let kicker = startKicker()
        a.useKicker(kicker)
        // 10 rounds of 12 frames in a 32-slot ring: it wraps several times.
        var ringFull = 0
        for round in 0..<10 {
            let out = OutgoingFrames()
            let frames = (0..<12).map { craftFrame(sequence: UInt8(round * 12 + $0)) }
            for f in frames { out.add(f) }
            XCTAssertEqual(out.send(on: a), 12)
            ringFull += out.count(.ringFull)
            XCTAssertEqual(receiveTestFrames(on: b, count: 13, timeout: 0.3).map(\.bytes), frames)
        }
        XCTAssertGreaterThanOrEqual(kicker.kicks, 10, "the kicks were made inline, not by the kick thread")
        XCTAssertEqual(ringFull, 0)
        XCTAssertEqual(a.events.txSendErrors, 0)
        // Detached, the port kicks inline again and the kick thread makes no more sends for it.
        a.useKicker(nil)
        let before = kicker.kicks
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 200))
        XCTAssertEqual(out.send(on: a), 1)
        XCTAssertEqual(receiveTestFrames(on: b, count: 1).count, 1)
        XCTAssertEqual(kicker.kicks, before)
    }

    func testSparseFramesAreKickedInlineUntilTrafficIsDense() throws {
        let (a, b) = try openPorts()
        let kicker = TransmitKicker(wakeAfterFrames: 8)
        kicker.start()
        addTeardownBlock { kicker.stop() }
        a.useKicker(kicker)
        // Wait until the kick thread sleeps (it spins 20 µs after starting).
        usleep(20_000)
        for i in 0..<3 {
            kicker.noteIdle()  // what the bridge thread does between sparse frames
            let out = OutgoingFrames()
            out.add(craftFrame(sequence: UInt8(i)))
            XCTAssertEqual(out.send(on: a), 1)
            XCTAssertEqual(receiveTestFrames(on: b, count: 1).count, 1)
        }
        XCTAssertEqual(kicker.kicks, 0, "a sparse frame waited for the kick thread")
        // 8 frames without an idle pass: the kick is handed over.
        let out = OutgoingFrames()
        let frames = (0..<8).map { craftFrame(sequence: UInt8(10 + $0)) }
        for f in frames { out.add(f) }
        XCTAssertEqual(out.send(on: a), 8)
        XCTAssertEqual(receiveTestFrames(on: b, count: 8).map(\.bytes), frames)
        XCTAssertEqual(kicker.kicks, 1)
    }

    func testRefusedFrameKickedByTheKickThreadIsReclaimed() throws {
        let (a, b) = try openPorts()
        let kicker = startKicker()
        a.useKicker(kicker)
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 10), vnet: VirtioNetHeader(hdrLen: 2000))
        let good = [craftFrame(sequence: 11), craftFrame(sequence: 12)]
        for g in good { out.add(g) }
        XCTAssertEqual(out.send(on: a), 3)
        // The kick thread's send fails on the refused slot: it raises the error, and the owner
        // (the bridge thread in the daemon) reclaims the slot and kicks the rest.
        let deadline = Date().addingTimeInterval(2)
        while !kicker.takeErrorsRaised() && Date() < deadline { usleep(1000) }
        XCTAssertTrue(a.collectKickErrors(), "no kick due after the refused slot was reclaimed")
        a.flush()
        XCTAssertEqual(receiveTestFrames(on: b, count: 2).map(\.bytes), good)
        XCTAssertEqual(a.events.txWrongFormat, 1)
        assertRingKeepsWorking(from: a, to: b, rounds: 4)
        XCTAssertEqual(a.events.txWrongFormat, 1)
        XCTAssertEqual(a.events.txSendErrors, 0)
    }

    func testKickThreadReportsAVanishedInterface() throws {
        let (a, _) = try openPorts()
        let kicker = startKicker()
        a.useKicker(kicker)
        runCommand(["/usr/sbin/ip", "link", "del", nameA])
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 1))
        _ = out.send(on: a)
        let deadline = Date().addingTimeInterval(2)
        while !kicker.takeErrorsRaised() && Date() < deadline { usleep(1000) }
        XCTAssertFalse(a.collectKickErrors())
        XCTAssertTrue(a.isDead)
        a.close()  // detaches from the kick thread before the descriptor is closed
        XCTAssertEqual(a.fileDescriptor, -1)
    }

    func testFullTransmitRingStopsAndCounts() throws {
        let (a, _) = try openPorts()
        runCommand(["/usr/sbin/ip", "link", "set", nameA, "down"])
        let capacity = a.txLayout.frameCount
        let out = OutgoingFrames(capacity: capacity + 5)
        for i in 0..<(capacity + 5) { out.add(craftFrame(sequence: UInt8(truncatingIfNeeded: i))) }
        // Interface down: the kick fails with ENETDOWN and every frame stays in the ring.
        XCTAssertEqual(out.send(on: a), capacity)
        XCTAssertEqual(out.count(.ringFull), 5)
        XCTAssertFalse(a.isDead)
    }

    func testReceiveRingHoldsUntilReleased() throws {
        let (a, b) = try openPorts()
        let out = OutgoingFrames()
        for i in 0..<4 { out.add(craftFrame(sequence: UInt8(i))) }
        XCTAssertEqual(out.send(on: a), 4)
        usleep(100_000)
        let small = PacketBatch(capacity: 2)
        var seen = 0
        var n = b.receive(into: small)
        while n > 0 {
            seen += n
            b.releaseReceived()
            n = b.receive(into: small)
        }
        XCTAssertGreaterThanOrEqual(seen, 4)
        XCTAssertEqual(b.receive(into: small), 0)
    }

    func testFramesDroppedAtAFullReceiveRingAreCounted() throws {
        let (a, b) = try openPorts()
        // b never reads: once its receive ring is full, the kernel drops the rest and says so in
        // PACKET_STATISTICS, which the port adds up (the daemon shows it as rx-ring-full).
        let slots = b.rxLayout.frameCount
        let total = slots + 40
        var sent = 0
        while sent < total {
            let out = OutgoingFrames(capacity: 16)
            for i in 0..<min(16, total - sent) { out.add(craftFrame(sequence: UInt8(truncatingIfNeeded: sent + i))) }
            let n = out.send(on: a)
            XCTAssertGreaterThan(n, 0)
            sent += n
            usleep(2_000)
        }
        usleep(200_000)
        b.updateEvents()
        XCTAssertGreaterThanOrEqual(b.events.rxRingFull, UInt64(total - slots))
        let port = SwitchPort.packet(b)
        XCTAssertEqual(port.events.rxRingFull, b.events.rxRingFull)
        // The kernel's counter is reset by each read; the port keeps the sum.
        let before = b.events.rxRingFull
        b.updateEvents()
        XCTAssertEqual(b.events.rxRingFull, before)
    }

    func testDeletedInterfaceMakesThePortDead() throws {
        let (a, _) = try openPorts()
        XCTAssertEqual(runCommand(["/usr/sbin/ip", "link", "del", nameA]).status, 0)
        var p = pollfd(fd: a.fileDescriptor, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&p, 1, 2000), 1)
        XCTAssertNotEqual(Int32(p.revents) & Int32(POLLERR), 0)
        XCTAssertNotNil(a.checkError())
        XCTAssertTrue(a.isDead)
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(a.receive(into: batch), 0)
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 1))
        XCTAssertEqual(out.send(on: a), 0)
        a.close()
        a.close()
        XCTAssertEqual(a.fileDescriptor, -1)
    }

    func testSendFailsOnVanishedInterfaceWithoutPoll() throws {
        let (a, _) = try openPorts()
        let out = OutgoingFrames()
        out.add(craftFrame(sequence: 1))
        XCTAssertEqual(runCommand(["/usr/sbin/ip", "link", "del", nameA]).status, 0)
        _ = out.send(on: a)  // ENXIO from the kick
        XCTAssertTrue(a.isDead)
    }

    /// Two namespaces, each wired by a veth pair to the root namespace, where ports forward
    /// everything between the root ends. A TCP transfer with offloads on (GSO super-frames,
    /// CHECKSUM_PARTIAL) must complete: it only does if the vnet header crosses intact.
    func testTCPTransferThroughForwarderWithOffloads() throws {
        try runForwardedTCPTransfer(trunkVLAN: nil)
    }

    /// The same through a "trunk": a third veth pair in the root namespace between two more
    /// ports. Frames enter the trunk with VLAN 100 pushed and leave it with the tag popped, so
    /// every super-frame has its tag stripped by the kernel, restored inline by the port, and its
    /// offload header shifted by +4 and -4 on the way.
    func testTCPTransferThroughTaggedTrunk() throws {
        try runForwardedTCPTransfer(trunkVLAN: 100)
    }

    private func runForwardedTCPTransfer(trunkVLAN vlan: UInt16?) throws {
        let tag = "uswt\(getpid() % 1_000_000)\(Self.serial)"
        let ns = [tag + "n1", tag + "n2"]
        let root = [tag + "r1", tag + "r2"]
        let inner = [tag + "i1", tag + "i2"]
        let trunk = [tag + "t1", tag + "t2"]
        namespaces = ns
        extraLinks = root + (vlan == nil ? [] : [trunk[0]])
        for k in 0..<2 {
            XCTAssertEqual(runCommand(["/usr/sbin/ip", "netns", "add", ns[k]]).status, 0)
            XCTAssertEqual(runCommand(["/usr/sbin/ip", "link", "add", root[k], "type", "veth", "peer", "name", inner[k],
                                       "netns", ns[k]]).status, 0)
            let exec = ["/usr/sbin/ip", "netns", "exec", ns[k]]
            runCommand(exec + ["/usr/sbin/sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            runCommand(exec + ["/usr/sbin/sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            runCommand(exec + ["/usr/sbin/ip", "addr", "add", "198.51.100.\(k + 1)/24", "dev", inner[k]])
            runCommand(exec + ["/usr/sbin/ip", "link", "set", inner[k], "up"])
            runCommand(exec + ["/usr/sbin/ip", "link", "set", "lo", "up"])
        }
        var portNames = [root[0], root[1]]
        // Routes: (from port, to port, TCI to give on the way out).
        var routes: [(Int, Int, UInt16)] = [(0, 1, 0), (1, 0, 0)]
        if let vlan {
            XCTAssertEqual(runCommand(["/usr/sbin/ip", "link", "add", trunk[0], "type", "veth", "peer", "name", trunk[1]]).status, 0)
            portNames = [root[0], trunk[0], trunk[1], root[1]]
            routes = [(0, 1, vlan), (1, 0, 0), (2, 3, 0), (3, 2, vlan)]
        }
        for name in portNames {
            writeSysctl("/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", "1")
            // The root namespace must not answer ARP on these links (it may own addresses of
            // any subnet, e.g. its uplink); only the forwarder connects the two namespaces.
            writeSysctl("/proc/sys/net/ipv4/conf/\(name)/arp_ignore", "8")
            runCommand(["/usr/sbin/ip", "link", "set", name, "up"])
        }
        let options = PacketSocketPort.Options(rxFrames: 256, bulkFrames: 64, txFrames: 64)
        let ports = try portNames.map { name throws(SystemError) in try PacketSocketPort(interface: name, options: options) }

        let logPath = NSTemporaryDirectory() + "\(tag)-iperf.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close(); try? FileManager.default.removeItem(atPath: logPath) }
        func start(_ arguments: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: arguments[0])
            p.arguments = Array(arguments.dropFirst())
            p.standardOutput = log
            p.standardError = log
            try p.run()
            processes.append(p)
            return p
        }
        _ = try start(["/usr/sbin/ip", "netns", "exec", ns[1], "/usr/bin/iperf3", "-s", "-1", "-B", "198.51.100.2"])
        usleep(500_000)
        let client = try start(["/usr/sbin/ip", "netns", "exec", ns[0], "/usr/bin/iperf3", "-c", "198.51.100.2",
                                "-n", "20M", "--connect-timeout", "3000"])

        let batch = PacketBatch(capacity: 64)
        let entries = FixedArray(repeating: EgressEntry(frame: 0, tci: 0), count: 64)
        let statuses = FixedArray(repeating: TransmitStatus.queued, count: 64)
        var superFrames = 0
        var partialChecksums = 0
        var taggedSuperFrames = 0
        var forwarded = 0
        let deadline = Date().addingTimeInterval(60)
        var fds = ports.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }
        while client.isRunning && Date() < deadline {
            _ = poll(&fds, nfds_t(fds.count), 10)
            for (from, to, tci) in routes {
                let n = ports[from].receive(into: batch)
                for i in 0..<n {
                    let f = batch.frames[i]
                    let type = UInt16(f.load(fromByteOffset: 12, as: UInt8.self)) << 8 | UInt16(f.load(fromByteOffset: 13, as: UInt8.self))
                    batch.info[i].tagLength = (type == 0x8100 || type == 0x88A8) ? 4 : 0
                    entries[i] = EgressEntry(frame: UInt16(i), tci: tci)
                    if batch.vnet[i].gsoType != VirtioNetHeader.gsoNone {
                        superFrames += 1
                        if batch.info[i].tagLength != 0 { taggedSuperFrames += 1 }
                    }
                    if batch.vnet[i].flags & VirtioNetHeader.needsChecksum != 0 { partialChecksums += 1 }
                }
                forwarded += ports[to].transmit(batch, entries: entries.base, count: n, status: statuses.base)
                ports[to].flush()
                ports[from].releaseReceived()
            }
        }
        if client.isRunning { kill(client.processIdentifier, SIGKILL) }
        client.waitUntilExit()
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        XCTAssertEqual(client.terminationStatus, 0, "TCP transfer through the forwarder failed: \(output)")
        XCTAssertGreaterThan(superFrames, 0, "no GSO super-frames crossed: offload path not exercised")
        XCTAssertGreaterThan(partialChecksums, 0)
        XCTAssertGreaterThan(forwarded, 0)
        if vlan != nil { XCTAssertGreaterThan(taggedSuperFrames, 0, "no tagged super-frame crossed the trunk") }
        for p in ports {
            XCTAssertEqual(p.events.rxTruncated, 0)
            XCTAssertEqual(p.events.txWrongFormat, 0)
            XCTAssertEqual(p.events.txSendErrors, 0)
        }
    }
}

/// Parts that need neither root nor a network.
final class PacketSocketPortLayoutTests: XCTestCase {
    func testDefaultSlotsHoldSuperFramesInMegabyteBlocks() {
        let l = PacketSocketPort.ringLayout(frames: 256, frameSize: PacketSocketPort.Options.defaultFrameSize, pageSize: 4096)
        XCTAssertEqual(l.frameSize, 69632)
        XCTAssertEqual(l.blockSize, 1 << 20)
        XCTAssertEqual(l.framesPerBlock, 15)
        XCTAssertEqual(l.blockCount, 18)
        XCTAssertEqual(l.frameCount, 270)
        // Room for a 65535-byte IP packet behind the slot headers and the vnet header.
        XCTAssertGreaterThanOrEqual(l.frameSize, 80 + 14 + 65535)
    }

    func testSmallSlotsAndRounding() {
        let l = PacketSocketPort.ringLayout(frames: 3, frameSize: 2040, pageSize: 4096)
        XCTAssertEqual(l.frameSize, 2048)
        XCTAssertEqual(l.blockSize, 4096)
        XCTAssertEqual(l.framesPerBlock, 2)
        XCTAssertEqual(l.blockCount, 2)
        XCTAssertEqual(l.frameCount, 4)
    }

    func testUnknownInterfaceIsAPreciseError() {
        let name = "uswtnx\(getpid() % 100_000)"
        XCTAssertThrowsError(try PacketSocketPort(interface: name)) { error in
            guard let e = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.errno, ENODEV)
            XCTAssertTrue(e.description.contains(name), e.description)
        }
        XCTAssertThrowsError(try PacketSocketPort(interface: "a-name-far-too-long-for-linux")) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EINVAL)
        }
    }
}
