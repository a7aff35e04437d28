// SwitchCore micro-benchmarks: the per-frame helpers the dataplane runs for every frame.
//
// `FrameRewrite.copy` is the one copy each egress makes (with the VLAN tag pushed or popped on
// the way), so its cost bounds the switch's frame rate; MAC parsing is on the control path only
// but is measured to keep it honest. Buffers are allocated once, outside the measured loop, so the
// malloc counters of the copy benchmarks must read 0: the same rule as the dataplane.

import Benchmark
import SwitchCore

/// A 64-byte frame (the minimum Ethernet frame without FCS) with an 802.1Q tag for VLAN 10.
private func makeTaggedFrame(into p: UnsafeMutableRawPointer) {
    MACAddress(0x02, 0, 0, 0, 0, 0x02).store(to: p)
    MACAddress(0x02, 0, 0, 0, 0, 0x01).store(to: p + 6)
    p.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
    p.storeBytes(of: UInt16(10).bigEndian, toByteOffset: 14, as: UInt16.self)
    p.storeBytes(of: UInt16(0x88b5).bigEndian, toByteOffset: 16, as: UInt16.self)
    for i in 18..<64 { p.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: i, as: UInt8.self) }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )

    Benchmark("FrameRewrite.copy 64-byte frame, tag kept") { benchmark in
        let source = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        defer { source.deallocate(); destination.deallocate() }
        makeTaggedFrame(into: source)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(FrameRewrite.copy(from: source, length: 64, tagLength: 4, tci: 10,
                                        into: destination, capacity: 2048))
        }
        benchmark.stopMeasurement()
        precondition(destination.load(fromByteOffset: 14, as: UInt16.self) == UInt16(10).bigEndian)
    }

    Benchmark("FrameRewrite.copy 64-byte frame, tag popped (trunk to access)") { benchmark in
        let source = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        defer { source.deallocate(); destination.deallocate() }
        makeTaggedFrame(into: source)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(FrameRewrite.copy(from: source, length: 64, tagLength: 4, tci: 0,
                                        into: destination, capacity: 2048))
        }
        benchmark.stopMeasurement()
        precondition(destination.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x88b5).bigEndian)
    }

    Benchmark("MACAddress parse aa:bb:cc:dd:ee:ff") { benchmark in
        let texts = ["02:00:00:00:00:01", "fe:ff:ff:ff:ff:ff", "00-16-3e-12-34-56", "ff:ff:ff:ff:ff:ff"]
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            blackHole(MACAddress(texts[i & 3]))
        }
    }
}
