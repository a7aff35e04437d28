// SwitchCore micro-benchmarks: what the dataplane does for every frame, measured alone.
//
// - MACTable (the FDB) at 1k, 64k and 1M entries: lookup of present addresses in random order
//   (the bar: at most 25 ns at 1M entries, where the table no longer fits any cache), one at a time
//   and in batches of 32 as the forward stage does (`lookup(keys:count:ports:)`, which prefetches
//   the batch's home slots before probing), and learning of new addresses into an emptied table
//   (the bar: at least 5M new entries per second).
// - Frame classification: a batch of tagged frames arriving on an access port goes through the
//   engine and every frame stops in the classify stage (tagged-on-access-port), so the figure is
//   the classify loop plus the engine's fixed cost per batch.
// - VLAN push and pop: FrameRewrite.copy, the one copy each egress makes, with the tag pushed,
//   kept or popped on the way.
// - The pipeline: a batch of 32 frames through BridgeEngine<MemoryPort> (classify, learn, forward,
//   transmit into the egress port's buffer), steady state (MemoryPort.replay).
//
// Allocation: every buffer and table is built before `startMeasurement`, so mallocs inside the
// measured loop are the per-frame path's own. The forwarding benchmarks carry a static threshold
// of 0 mallocs (Thresholds/, checked by `swift package benchmark thresholds check`): steady-state
// forwarding allocates nothing (docs/architecture.md, "The dataplane").

import Benchmark
import SwitchCore
import SwitchTesting
import SwitchRouting

/// A 64-byte frame (the minimum Ethernet frame without FCS) with an 802.1Q tag for VLAN 10.
private func makeTaggedFrame(into p: UnsafeMutableRawPointer) {
    MACAddress(0x02, 0, 0, 0, 0, 0x02).store(to: p)
    MACAddress(0x02, 0, 0, 0, 0, 0x01).store(to: p + 6)
    p.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
    p.storeBytes(of: UInt16(10).bigEndian, toByteOffset: 14, as: UInt16.self)
    p.storeBytes(of: UInt16(0x88b5).bigEndian, toByteOffset: 16, as: UInt16.self)
    for i in 18..<64 { p.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: i, as: UInt8.self) }
}

/// A 60-byte untagged frame from `source` to `destination` (the minimum frame, 64 with FCS).
private func frameBytes(to destination: MACAddress, from source: MACAddress, tag: UInt16? = nil) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 60)
    bytes.withUnsafeMutableBytes { b in
        let p = b.baseAddress!
        destination.store(to: p)
        source.store(to: p + 6)
        var offset = 12
        if let tag {
            p.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
            p.storeBytes(of: tag.bigEndian, toByteOffset: 14, as: UInt16.self)
            offset = 16
        }
        p.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: offset, as: UInt16.self)
    }
    return bytes
}

/// Distinct unicast MACs (locally administered), spread over all six bytes by a multiplicative hash
/// so that they do not arrive in an order that flatters the table.
private func addresses(_ n: Int, seed: UInt64 = 1) -> UnsafeMutablePointer<MACAddress> {
    let p = UnsafeMutablePointer<MACAddress>.allocate(capacity: n)
    for i in 0..<n {
        let x = (UInt64(i) &+ seed &* 0x1_0000_0000) &* 0x9E37_79B9_7F4A_7C15
        let b = withUnsafeBytes(of: x) { Array($0) }
        (p + i).initialize(to: MACAddress(0x02, b[1], b[2], b[3], b[4] ^ UInt8(truncatingIfNeeded: i >> 16),
                                          UInt8(truncatingIfNeeded: i)))
    }
    return p
}

/// Indices 0..<n in a random order (fixed seed): the lookup order.
private func shuffledIndices(_ n: Int, count: Int) -> UnsafeMutablePointer<Int32> {
    let p = UnsafeMutablePointer<Int32>.allocate(capacity: count)
    var state: UInt64 = 0x1234_5678_9ABC_DEF1
    for i in 0..<count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        p[i] = Int32(truncatingIfNeeded: Int(state % UInt64(n)))
        _ = i
    }
    return p
}

/// The sizes the issue asks for, with the names used in the benchmark titles.
/// An FDB of `size` learned entries and the same addresses in a random lookup order.
private final class FilledTable: @unchecked Sendable {
    let table: MACTable
    let probes: UnsafeMutablePointer<MACAddress>
    /// The same addresses as FDB keys (VLAN 1), for the batched lookup.
    let probeKeys: UnsafeMutablePointer<UInt64>
    /// The batched lookup's answers.
    let ports: UnsafeMutablePointer<Int32>
    let probeCount = 1 << 20
    var cursor = 0

    init(size: Int) {
        table = MACTable(capacity: size)
        let macs = addresses(size)
        for i in 0..<size { table.learn(vlan: 1, mac: macs[i], port: UInt16(i & 63), now: 0) }
        let order = shuffledIndices(size, count: probeCount)
        probes = .allocate(capacity: probeCount)
        for i in 0..<probeCount { (probes + i).initialize(to: macs[Int(order[i])]) }
        probeKeys = .allocate(capacity: probeCount)
        for i in 0..<probeCount { (probeKeys + i).initialize(to: FDBKey(vlan: 1, mac: probes[i]).rawValue) }
        ports = .allocate(capacity: lookupBatch)
        ports.initialize(repeating: 0, count: lookupBatch)
        macs.deallocate()
        order.deallocate()
    }
}

private let tableSizes: [(String, Int)] = [("1k", 1 << 10), ("64k", 1 << 16), ("1M", 1 << 20)]

/// Lookups per call of the batched lookup: a typical receive batch (the pipeline benchmarks' too).
private let lookupBatch = 32

/// A bridge whose FDB is full (1M entries): ports 0 (ingress) and 1 (egress) on VLAN 1, every
/// address but the ingress host's a static entry on port 1, and those addresses in a random order
/// to send frames to. Built once, outside the measured closure.
private final class BigFDBPipeline: @unchecked Sendable {
    let engine: BridgeEngine<MemoryPort>
    let ingress: MemoryPort, egress: MemoryPort
    let destinations: UnsafeMutablePointer<MACAddress>
    let destinationCount = 1 << 20
    var cursor = 0

    init() {
        let size = 1 << 20
        engine = BridgeEngine<MemoryPort>(settings: BridgeSettings(fdbCapacity: size, batchSize: 32), maxPorts: 8)
        ingress = MemoryPort(rxSlots: 32, txSlots: 64)
        egress = MemoryPort(rxSlots: 32, txSlots: 64)
        ingress.replay = true
        egress.replay = true
        _ = try! engine.addPort(name: "a", mode: .defaultAccess, device: ingress)
        _ = try! engine.addPort(name: "b", mode: .defaultAccess, device: egress)
        let macs = addresses(size - 1)
        for i in 0..<size - 1 { precondition(engine.fdb.addStatic(vlan: 1, mac: macs[i], port: 1)) }
        let order = shuffledIndices(size - 1, count: destinationCount)
        destinations = .allocate(capacity: destinationCount)
        for i in 0..<destinationCount { (destinations + i).initialize(to: macs[Int(order[i])]) }
        macs.deallocate()
        order.deallocate()
        let source = MACAddress(0x02, 0, 0, 0, 0, 0x0a)
        for i in 0..<32 { ingress.inject(frameBytes(to: destinations[i], from: source)) }
        _ = engine.poll(port: 0, now: 1)  // learn the source: the FDB is now full, steady state
        precondition(engine.fdb.count == size && egress.transmittedTotal == 32)
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )
    let zeroMallocs: [BenchmarkMetric: BenchmarkThresholds] = [.mallocCountTotal: .init(absolute: [.p90: 0])]

    // MARK: FDB

    for (label, size) in tableSizes {
        // Built once per size, outside the measured closure (which runs once per sample).
        let filled = FilledTable(size: size)
        // One iteration = 1000 lookups of present addresses in random order (scalingFactor .kilo:
        // the figures are per lookup). The addresses to look up are read sequentially from an
        // array already in lookup order, so the misses measured are the table's own.
        Benchmark("MACTable lookup, \(label) entries",
                  configuration: .init(scalingFactor: .kilo, thresholds: zeroMallocs)) { benchmark in
            let table = filled.table, probes = filled.probes, mask = filled.probeCount - 1
            // The cursor carries over from sample to sample: every sample looks up fresh addresses.
            var k = filled.cursor
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(table.lookup(vlan: 1, mac: probes[k]))
                k = (k + 1) & mask
            }
            benchmark.stopMeasurement()
            filled.cursor = k
        }

        // The batched lookup the forward stage uses: one call looks up 32 present addresses (random
        // order, read sequentially from an array of keys already in lookup order), prefetching
        // their home slots before probing. One sample = 1,000,000 lookups = 31,250 calls of 32, and
        // the scaling factor is .mega, so the figures are per LOOKUP (not per batch), comparable
        // with the single-lookup benchmark above. The answers are checked outside the measurement.
        Benchmark("MACTable batched lookup (32 per call), \(label) entries",
                  configuration: .init(scalingFactor: .mega, thresholds: zeroMallocs)) { benchmark in
            let table = filled.table, keys = filled.probeKeys, ports = filled.ports
            let mask = filled.probeCount - 1
            precondition(benchmark.scaledIterations.count % lookupBatch == 0)
            var k = filled.cursor & ~(lookupBatch - 1)
            benchmark.startMeasurement()
            for _ in 0..<benchmark.scaledIterations.count / lookupBatch {
                table.lookup(keys: keys + k, count: lookupBatch, ports: ports)
                blackHole(ports[lookupBatch - 1])
                k = (k + lookupBatch) & mask
            }
            benchmark.stopMeasurement()
            filled.cursor = k
            for i in 0..<lookupBatch { precondition(ports[i] >= 0) }
        }

        // One iteration = learning every one of `size` new addresses into an emptied table (the
        // flush is outside the measurement): entries per second = size / wall clock.
        Benchmark("MACTable learn \(label) new entries (one iteration = \(size) entries)",
                  configuration: .init(maxDuration: .seconds(3), maxIterations: 10_000, thresholds: zeroMallocs)) { benchmark in
            let table = MACTable(capacity: size)
            let macs = addresses(size, seed: 7)
            defer { macs.deallocate() }
            for _ in benchmark.scaledIterations {
                table.flushLearned()
                benchmark.startMeasurement()
                for i in 0..<size { blackHole(table.learn(vlan: 1, mac: macs[i], port: UInt16(i & 63), now: 1)) }
                benchmark.stopMeasurement()
            }
            precondition(table.count == size)
        }
    }

    // MARK: frame classification and the pipeline

    /// An engine with ports 0 (ingress) and 1 (egress) on VLAN 1, MemoryPorts in replay mode, the
    /// ingress port holding 32 copies of `frame`.
    func engine(frame: [UInt8], ingressMode: VLANMode = .defaultAccess, egressMode: VLANMode = .defaultAccess)
        -> (BridgeEngine<MemoryPort>, MemoryPort, MemoryPort)
    {
        let e = BridgeEngine<MemoryPort>(settings: BridgeSettings(batchSize: 32), maxPorts: 8)
        let a = MemoryPort(rxSlots: 32, txSlots: 64)
        let b = MemoryPort(rxSlots: 32, txSlots: 64)
        a.replay = true
        b.replay = true
        _ = try! e.addPort(name: "a", mode: ingressMode, device: a)
        _ = try! e.addPort(name: "b", mode: egressMode, device: b)
        for _ in 0..<32 { a.inject(frame) }
        return (e, a, b)
    }

    let hostA = MACAddress(0x02, 0, 0, 0, 0, 0x0a)
    let hostB = MACAddress(0x02, 0, 0, 0, 0, 0x0b)

    Benchmark("classify: batch of 32 frames, all stopped in classify (tagged on access port)",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let (e, _, _) = engine(frame: frameBytes(to: hostB, from: hostA, tag: 10))
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(e.poll(port: 0, now: 1)) }
        benchmark.stopMeasurement()
        precondition(e.dropCounters[.taggedOnAccessPort] > 0)
    }

    // The router's forwarding path: 32 UDP packets from a guest port to a LAN host on the uplink
    // (anti-spoofing on, next hop a reachable neighbour), TTL and checksum rewritten in place.
    // The ingress port gives the frames back as injected on every receive (one 60-byte copy per
    // frame, counted in the figure), since the router decrements their TTL in place.
    Benchmark("router: batch of 32 64-byte UDP packets routed guest to uplink",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let r = RouterEngine<MemoryPort>(mac: MACAddress(0x02, 0, 0, 0, 1, 1), settings: {
            var s = RouterSettings(); s.batchSize = 32; return s
        }(), maxPorts: 8)
        let uplink = MemoryPort(rxSlots: 32, txSlots: 64), guest = MemoryPort(rxSlots: 32, txSlots: 64)
        uplink.replay = true
        guest.replay = true
        guest.replayRestoresFrames = true
        _ = try! r.addPort(name: "uplink", device: uplink)
        r.setAddress(0xC000_0201, mask: 0xFFFF_FF00, gateway: nil)
        _ = try! r.addPort(name: "vif1.0", configuration: RouterPortConfiguration(
            addresses: [IPv4Prefix(address: 0xC000_020A)], guestMAC: hostA), device: guest)
        r.addNeighbour(0xC000_0207, mac: hostB, port: 0)
        var ip: [UInt8] = [0x45, 0, 0, 46, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 7]
        let sum = ip.withUnsafeBytes { Checksum.of($0.baseAddress!, count: 20) }
        ip[10] = UInt8(sum >> 8); ip[11] = UInt8(sum & 0xFF)
        let frame = MACAddress(0x02, 0, 0, 0, 1, 1).bytes + hostA.bytes + [0x08, 0x00] + ip
            + [0x0f, 0xa0, 0x13, 0x88, 0, 26, 0, 0] + [UInt8](repeating: 0xab, count: 18)
        for _ in 0..<32 { guest.inject(frame) }
        _ = r.poll(port: 1, now: 1)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(r.poll(port: 1, now: 1)) }
        benchmark.stopMeasurement()
        precondition(uplink.transmittedTotal > 0 && r.portCounters(0).txFrames > 32, "nothing was routed")
    }

    Benchmark("pipeline: batch of 32 64-byte frames, known unicast, access to access",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let (e, _, b) = engine(frame: frameBytes(to: hostB, from: hostA))
        _ = e.fdb.addStatic(vlan: 1, mac: hostB, port: 1)
        _ = e.poll(port: 0, now: 1)  // learn hostA once: steady state from here on
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(e.poll(port: 0, now: 1)) }
        benchmark.stopMeasurement()
        precondition(b.transmittedTotal > 0)
    }

    Benchmark("pipeline: batch of 32 64-byte frames, access to trunk (tag pushed)",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let (e, _, b) = engine(frame: frameBytes(to: hostB, from: hostA), ingressMode: .access(10),
                               egressMode: .trunk(allowed: [10, 20], native: nil))
        _ = e.fdb.addStatic(vlan: 10, mac: hostB, port: 1)
        _ = e.poll(port: 0, now: 1)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(e.poll(port: 0, now: 1)) }
        benchmark.stopMeasurement()
        precondition(b.transmittedTotal > 0)
    }

    Benchmark("pipeline: batch of 32 64-byte frames, flooded (unknown unicast) to 1 port",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let (e, _, b) = engine(frame: frameBytes(to: MACAddress(0x02, 0, 0, 0, 0, 0x77), from: hostA))
        _ = e.poll(port: 0, now: 1)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(e.poll(port: 0, now: 1)) }
        benchmark.stopMeasurement()
        precondition(b.transmittedTotal > 0)
    }

    // The forward stage against a large FDB: 1M entries (every one but the learned source a
    // static address on the egress port), each batch's 32 frames sent to 32 random known
    // destinations, so the FDB lookups miss the caches as they would on a big layer-2 segment.
    // One iteration = one batch of 32 through the whole pipeline, including the 32 6-byte stores
    // that write the next destinations into the ingress frames before each poll.
    let bigFDB = BigFDBPipeline()
    Benchmark("pipeline: batch of 32 64-byte frames, known unicast to random destinations in a 1M-entry FDB",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let e = bigFDB.engine, frames = e.batch.frames.base, destinations = bigFDB.destinations
        let mask = bigFDB.destinationCount - 1
        var k = bigFDB.cursor
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for i in 0..<32 { destinations[(k + i) & mask].store(to: frames[i]) }
            k = (k + 32) & mask
            blackHole(e.poll(port: 0, now: 1))
        }
        benchmark.stopMeasurement()
        bigFDB.cursor = k
        precondition(e.dropCounters.total == 0 && bigFDB.egress.transmittedTotal > 0)
    }

    // MARK: VLAN push and pop (the egress copy)

    Benchmark("FrameRewrite.copy 64-byte frame, tag kept", configuration: .init(thresholds: zeroMallocs)) { benchmark in
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

    Benchmark("FrameRewrite.copy 64-byte frame, tag popped (trunk to access)",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
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

    Benchmark("FrameRewrite.copy 64-byte frame, tag pushed (access to trunk)",
              configuration: .init(thresholds: zeroMallocs)) { benchmark in
        let source = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        defer { source.deallocate(); destination.deallocate() }
        frameBytes(to: hostB, from: hostA).withUnsafeBytes { source.copyMemory(from: $0.baseAddress!, byteCount: 60) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(FrameRewrite.copy(from: source, length: 60, tagLength: 0, tci: 10,
                                        into: destination, capacity: 2048))
        }
        benchmark.stopMeasurement()
        precondition(destination.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x8100).bigEndian)
    }

    Benchmark("MACAddress parse aa:bb:cc:dd:ee:ff (control path)") { benchmark in
        let texts = ["02:00:00:00:00:01", "fe:ff:ff:ff:ff:ff", "00-16-3e-12-34-56", "ff:ff:ff:ff:ff:ff"]
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            blackHole(MACAddress(texts[i & 3]))
        }
    }
}
