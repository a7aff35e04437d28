// FrameRewrite (tag push/pop during the egress copy) and VirtioNetHeader.shifted (offload offsets
// that move with the tag), on their own and through a MemoryPort forward.

import SwitchCore
import SwitchTesting
import XCTest

final class FrameRewriteTests: XCTestCase {
    func rewrite(_ f: [UInt8], tagLength: Int, tci: UInt16, capacity: Int = 2048) -> [UInt8]? {
        var out = [UInt8](repeating: 0xEE, count: capacity)
        let n = f.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                FrameRewrite.copy(from: src.baseAddress!, length: f.count, tagLength: tagLength, tci: tci,
                                  into: dst.baseAddress!, capacity: capacity)
            }
        }
        if n < 0 { return nil }
        XCTAssertEqual(n, FrameRewrite.outputLength(length: f.count, tagLength: tagLength, tci: tci))
        return Array(out[0..<n])
    }

    let untagged = Frame.ethernet(dst: Frame.host(2), src: Frame.host(1), type: 0x0800)
    var tagged10: [UInt8] { Frame.tagged(dst: Frame.host(2), src: Frame.host(1), vid: 10, pcp: 3) }

    func testPushPopKeepAndRetag() {
        XCTAssertEqual(rewrite(untagged, tagLength: 0, tci: 0), untagged, "plain copy")
        XCTAssertEqual(rewrite(untagged, tagLength: 0, tci: Frame.tci(vid: 10, pcp: 3)), tagged10, "push")
        XCTAssertEqual(rewrite(tagged10, tagLength: 4, tci: 0), untagged, "pop")
        XCTAssertEqual(rewrite(tagged10, tagLength: 4, tci: Frame.tci(vid: 10, pcp: 3)), tagged10, "keep")
        XCTAssertEqual(rewrite(tagged10, tagLength: 4, tci: Frame.tci(vid: 20, pcp: 7)),
                       Frame.tagged(dst: Frame.host(2), src: Frame.host(1), vid: 20, pcp: 7), "retag")
    }

    func testOutputLength() {
        XCTAssertEqual(FrameRewrite.outputLength(length: 60, tagLength: 0, tci: 0), 60)
        XCTAssertEqual(FrameRewrite.outputLength(length: 60, tagLength: 0, tci: 10), 64)
        XCTAssertEqual(FrameRewrite.outputLength(length: 64, tagLength: 4, tci: 0), 60)
        XCTAssertEqual(FrameRewrite.outputLength(length: 64, tagLength: 4, tci: 10), 64)
    }

    func testCopyRefusesWhatDoesNotFit() {
        XCTAssertNil(rewrite(untagged, tagLength: 0, tci: 10, capacity: untagged.count + 3))
        XCTAssertEqual(rewrite(untagged, tagLength: 0, tci: 10, capacity: untagged.count + 4)?.count, untagged.count + 4)
        XCTAssertNil(rewrite(Array(untagged[0..<14]), tagLength: 4, tci: 0), "tag longer than the frame")
    }

    // MARK: VirtioNetHeader

    func testShiftedMovesOffsetsPastTheAddresses() {
        let h = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: 1, hdrLen: 54, gsoSize: 1448,
                                csumStart: 34, csumOffset: 16)
        let pushed = h.shifted(by: 4)
        XCTAssertEqual(pushed, VirtioNetHeader(flags: 1, gsoType: 1, hdrLen: 58, gsoSize: 1448, csumStart: 38, csumOffset: 16))
        XCTAssertEqual(pushed.shifted(by: -4), h)
        XCTAssertEqual(h.shifted(by: 0), h)
    }

    func testShiftedLeavesChecksumStartAloneWithoutNeedsChecksum() {
        let h = VirtioNetHeader(flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 6)
        XCTAssertEqual(h.shifted(by: 4), h)
        XCTAssertEqual(VirtioNetHeader.none.shifted(by: 4), .none)
        XCTAssertEqual(VirtioNetHeader.none.shifted(by: -4), .none)
    }

    func testLoadStoreRoundTrip() {
        let h = VirtioNetHeader(flags: 1, gsoType: 4, hdrLen: 0x1234, gsoSize: 0xABCD, csumStart: 0x0102, csumOffset: 0x0304)
        var raw = [UInt8](repeating: 0, count: 11)
        raw.withUnsafeMutableBytes { h.store(to: $0.baseAddress! + 1) }
        XCTAssertEqual(raw.withUnsafeBytes { VirtioNetHeader.load(from: $0.baseAddress! + 1) }, h)
        XCTAssertEqual(raw[0], 0)
        XCTAssertEqual(VirtioNetHeader.size, 10)
    }

    // MARK: through the pipeline

    /// A TCP GSO super-frame with a partial checksum, as a guest with default offloads sends it:
    /// its header must reach the egress port with csumStart and hdrLen moved by the tag.
    func testGSOMetadataCrossesAMemoryPortForward() throws {
        let lab = try Lab([.access(10), .trunk(allowed: [10], native: nil), .access(10)])
        let big = Frame.ethernet(dst: Frame.host(2), src: Frame.host(1), type: 0x0800,
                                 payload: Frame.payload(0x55, length: 1900))
        let gso = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: 1 /* TCPv4 */, hdrLen: 66,
                                  gsoSize: 1448, csumStart: 34, csumOffset: 16)
        // Teach the bridge where host 2 is (behind the trunk), then send the super-frame to it.
        lab.send(Frame.tagged(dst: .broadcast, src: Frame.host(2), vid: 10), on: 1)
        _ = lab.outAll()
        lab.send(big, on: 0, vnet: gso)
        let out = lab.ports[1].drainWithHeaders()
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out.first?.bytes, Frame.pushTag(big, tci: Frame.tci(vid: 10)))
        XCTAssertEqual(out.first?.vnet, VirtioNetHeader(flags: 1, gsoType: 1, hdrLen: 70, gsoSize: 1448,
                                                         csumStart: 38, csumOffset: 16))
        XCTAssertEqual(lab.out(2), [])

        // And back: trunk -> access pops the tag and moves the offsets back.
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(1)), on: 0)
        _ = lab.outAll()
        let fromTrunk = Frame.pushTag(Frame.ethernet(dst: Frame.host(1), src: Frame.host(2), payload: Frame.payload(0x66, length: 1900)),
                                      tci: Frame.tci(vid: 10))
        lab.send(fromTrunk, on: 1, vnet: gso.shifted(by: 4))
        let back = lab.ports[0].drainWithHeaders()
        XCTAssertEqual(back.map(\.bytes), [Frame.untag(fromTrunk)])
        XCTAssertEqual(back.first?.vnet, gso)
        assertDrops(lab, [:])
    }

    func testPlainFramesKeepAnEmptyHeader() throws {
        let lab = try Lab(accessPorts: 2)
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(1)), on: 0)
        XCTAssertEqual(lab.ports[1].drainWithHeaders().map(\.vnet), [.none])
    }
}
