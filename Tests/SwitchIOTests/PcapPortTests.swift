// PcapPort, PcapFile and BPFFilter: capture replay in, egress VLAN rewrite out, byte for byte.
// No root needed: everything goes through temporary files.

import XCTest
import Foundation
@testable import SwitchIO
import SwitchTesting
import SwitchCore

final class PcapPortTests: XCTestCase {
    private var directory: String = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "pcapport-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // Frames under test: untagged IPv4, tagged (VLAN 10) ARP, untagged with a payload marker.
    static let macA: [UInt8] = [0x02, 0, 0, 0, 0, 0x0a]
    static let macB: [UInt8] = [0x02, 0, 0, 0, 0, 0x0b]
    static func frame(dst: [UInt8], src: [UInt8], tag: UInt16? = nil, type: UInt16, payload: [UInt8]) -> [UInt8] {
        var f = dst + src
        if let tag { f += [0x81, 0x00, UInt8(tag >> 8), UInt8(tag & 0xff)] }
        f += [UInt8(type >> 8), UInt8(type & 0xff)]
        return f + payload
    }
    static let untagged = frame(dst: macB, src: macA, type: 0x0800, payload: Array(0..<46))
    static let tagged = frame(dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: macA, tag: 10, type: 0x0806,
                              payload: Array(repeating: 0x5a, count: 28) + Array(repeating: 0, count: 18))
    static let marker = frame(dst: macA, src: macB, type: 0x88b5, payload: Array("marker".utf8) + Array(repeating: 0, count: 40))

    private func path(_ name: String) -> String { directory + "/" + name }

    func testPcapFileRoundTrip() throws {
        let frames = [Self.untagged, Self.tagged, Self.marker]
        try PcapFile.write(frames: frames, to: path("a.pcap"))
        XCTAssertEqual(try PcapFile.read(path("a.pcap")), frames)
        try PcapFile.write(frames: [], to: path("empty.pcap"))
        XCTAssertEqual(try PcapFile.read(path("empty.pcap")), [])
    }

    func testReceiveReplaysCaptureBatchByBatchUntilEnd() throws {
        let frames = [Self.untagged, Self.tagged, Self.marker]
        try PcapFile.write(frames: frames, to: path("in.pcap"))
        let port = try PcapPort(input: path("in.pcap"))
        let batch = PacketBatch(capacity: 2)
        var seen: [[UInt8]] = []
        var sizes: [Int] = []
        while true {
            let n = port.receive(into: batch)
            sizes.append(n)
            XCTAssertEqual(batch.count, n)
            if n == 0 { break }
            for i in 0..<n {
                seen.append(Array(UnsafeRawBufferPointer(start: batch.frames[i], count: Int(batch.lengths[i]))))
                XCTAssertEqual(batch.vnet[i], .none)
            }
            port.releaseReceived()
        }
        XCTAssertEqual(sizes, [2, 1, 0])
        XCTAssertEqual(seen, frames)
        XCTAssertTrue(port.atEndOfInput)
        XCTAssertNil(port.inputError)
        XCTAssertEqual(sizes.reduce(0, +), 3)
        XCTAssertEqual(seen.reduce(0) { $0 + $1.count }, frames.reduce(0) { $0 + $1.count })
        XCTAssertEqual(port.receive(into: batch), 0, "stays at end")
    }

    func testBufferCountLimitsBatchAndOversizedFramesAreSkipped() throws {
        let big = Self.frame(dst: Self.macB, src: Self.macA, type: 0x0800, payload: Array(repeating: 1, count: 200))
        try PcapFile.write(frames: [Self.untagged, big, Self.marker, Self.tagged], to: path("in.pcap"))
        let port = try PcapPort(input: path("in.pcap"), bufferCount: 2, bufferSize: 128)
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(port.receive(into: batch), 2)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.frames[0], count: Int(batch.lengths[0]))), Self.untagged)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.frames[1], count: Int(batch.lengths[1]))), Self.marker)
        XCTAssertEqual(port.receive(into: batch), 1)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.frames[0], count: Int(batch.lengths[0]))), Self.tagged)
        XCTAssertEqual(port.receive(into: batch), 0)
        XCTAssertEqual(port.events.rxTruncated, 1)
    }

    /// Replays a capture and sends every frame out of an output port with a tag push, a pop, a
    /// keep-untagged and a re-tag with priority; the output capture holds exactly the rewritten bytes.
    func testTransmitWritesRewrittenFramesToOutputCapture() throws {
        try PcapFile.write(frames: [Self.untagged, Self.tagged, Self.marker], to: path("in.pcap"))
        let input = try PcapPort(input: path("in.pcap"))
        let output = try PcapPort(output: path("out.pcap"))
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(input.receive(into: batch), 3)
        // What classification would have written: frame 1 carries a 4-byte tag.
        batch.info[0].tagLength = 0
        batch.info[1].tagLength = 4
        batch.info[2].tagLength = 0
        let entries = [
            EgressEntry(frame: 0, tci: 10),             // push VLAN 10
            EgressEntry(frame: 1, tci: 0),              // pop
            EgressEntry(frame: 2, tci: 0),              // stays untagged
            EgressEntry(frame: 1, tci: 5 << 13 | 20),   // re-tag: PCP 5, VLAN 20
        ]
        XCTAssertEqual(output.transmit(batch, entries), [.queued, .queued, .queued, .queued])
        XCTAssertEqual(try PcapFile.read(path("out.pcap")), [], "nothing is written before flush")
        output.flush()
        input.releaseReceived()

        let untaggedArp = Self.frame(dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: Self.macA, type: 0x0806,
                                     payload: Array(repeating: 0x5a, count: 28) + Array(repeating: 0, count: 18))
        let retagged = Self.frame(dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: Self.macA, tag: 0xa014, type: 0x0806,
                                  payload: Array(repeating: 0x5a, count: 28) + Array(repeating: 0, count: 18))
        let pushed = Self.frame(dst: Self.macB, src: Self.macA, tag: 10, type: 0x0800, payload: Array(0..<46))
        XCTAssertEqual(try PcapFile.read(path("out.pcap")), [pushed, untaggedArp, Self.marker, retagged])

        // A second batch appends to the same capture.
        XCTAssertEqual(output.transmit(batch, [EgressEntry(frame: 2, tci: 0)]), [.queued])
        output.close()
        output.close()  // idempotent
        XCTAssertEqual(try PcapFile.read(path("out.pcap")).count, 5, "close flushes what was queued")
    }

    func testTransmitBeyondBufferCountIsDropped() throws {
        try PcapFile.write(frames: [Self.marker], to: path("in.pcap"))
        let input = try PcapPort(input: path("in.pcap"))
        let output = try PcapPort(output: path("out.pcap"), bufferCount: 2)
        let batch = PacketBatch(capacity: 4)
        XCTAssertEqual(input.receive(into: batch), 1)
        let entries = [EgressEntry](repeating: EgressEntry(frame: 0, tci: 0), count: 3)
        XCTAssertEqual(output.transmit(batch, entries), [.queued, .queued, .ringFull])
        output.flush()
        XCTAssertEqual(output.transmit(batch, Array(entries.prefix(1))), [.queued], "flush frees the buffers")
        output.flush()
        XCTAssertEqual(try PcapFile.read(path("out.pcap")), [Self.marker, Self.marker, Self.marker])
    }

    func testOneSidedPorts() throws {
        try PcapFile.write(frames: [Self.marker], to: path("in.pcap"))
        let inputOnly = try PcapPort(input: path("in.pcap"))
        let outputOnly = try PcapPort(output: path("out.pcap"))
        let batch = PacketBatch(capacity: 4)
        XCTAssertTrue(outputOnly.atEndOfInput)
        XCTAssertEqual(outputOnly.receive(into: batch), 0)
        XCTAssertEqual(inputOnly.receive(into: batch), 1)
        let entry = [EgressEntry(frame: 0, tci: 0)]
        XCTAssertEqual(inputOnly.transmit(batch, entry), [.error], "no output file: nothing can be sent")
        inputOnly.flush()
    }

    func testOpenErrorsAreReported() throws {
        XCTAssertThrowsError(try PcapPort(input: path("missing.pcap"))) { error in
            let message = (error as? PcapError)?.message ?? ""
            XCTAssertTrue(message.contains("missing.pcap"), message)
        }
        FileManager.default.createFile(atPath: path("garbage.pcap"), contents: Data("not a capture".utf8))
        XCTAssertThrowsError(try PcapPort(input: path("garbage.pcap")))
        XCTAssertThrowsError(try PcapFile.read(path("garbage.pcap")))
        XCTAssertThrowsError(try PcapPort(output: path("no/such/dir/out.pcap"))) { error in
            XCTAssertTrue(String(describing: error).contains("no/such/dir/out.pcap"))
        }
    }

    func testBPFFilterCompilesAndMatches() throws {
        let arp = try BPFFilter.compile(expression: "arp")
        XCTAssertEqual(arp.expression, "arp")
        XCTAssertFalse(arp.instructions.isEmpty)
        let untaggedArp = Self.frame(dst: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], src: Self.macA, type: 0x0806,
                                     payload: Array(repeating: 0, count: 46))
        untaggedArp.withUnsafeBytes { XCTAssertTrue(arp.matches($0.baseAddress!, length: $0.count)) }
        Self.untagged.withUnsafeBytes { XCTAssertFalse(arp.matches($0.baseAddress!, length: $0.count)) }

        let vlan10 = try BPFFilter.compile(expression: "vlan 10 and arp")
        Self.tagged.withUnsafeBytes { XCTAssertTrue(vlan10.matches($0.baseAddress!, length: $0.count)) }
        Self.untagged.withUnsafeBytes { XCTAssertFalse(vlan10.matches($0.baseAddress!, length: $0.count)) }

        let mac = try BPFFilter.compile(expression: "ether src 02:00:00:00:00:0b")
        Self.marker.withUnsafeBytes { XCTAssertTrue(mac.matches($0.baseAddress!, length: $0.count)) }
        Self.untagged.withUnsafeBytes { XCTAssertFalse(mac.matches($0.baseAddress!, length: $0.count)) }

        XCTAssertThrowsError(try BPFFilter.compile(expression: "arp and and (")) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("arp and and ("), message)
            XCTAssertTrue(message.contains("syntax error"), message)
        }
    }
}
