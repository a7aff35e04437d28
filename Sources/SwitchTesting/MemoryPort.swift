// SwitchTesting: test support for the switch's engines, kept out of the dataplane modules (as
// swift-nio keeps NIOEmbedded apart). Tests and Benchmarks depend on it; the daemon does not.
//
// MemoryPort: an in-memory port, the embedded test and benchmark backend.
//
// Frames are injected as bytes and collected as bytes, so unit tests wire a tiny network of
// MemoryPorts to an engine and count what comes out (frames in, frames out, counters).
// Buffers are allocated once; receive and transmit copy into them without allocating, so the
// benchmarks can run the whole pipeline through MemoryPorts and count mallocs. With `replay` set,
// received frames are not consumed (the same frames are received again on every call) and
// transmitted frames are discarded after the copy: a steady-state load with no test harness cost.
// It keeps the transmit contract of a real port: an entry that does not fit a buffer is refused
// as `.oversize` and the entries after it are still queued; beyond `txSpace` they are `.ringFull`.

import SwitchCore

public final class MemoryPort: FramePort {
    public let bufferSize: Int
    public let rxSlots: Int
    public let txSlots: Int
    /// Receive the same injected frames forever and discard transmissions (benchmarks).
    public var replay = false
    /// With `replay`, give the frames back as they were injected on every receive: an engine that
    /// rewrites frames in place (the router's TTL) sees the same input every time. Costs one copy
    /// of the frames per receive (part of a benchmark's figure: say so where it is used).
    public var replayRestoresFrames = false
    /// Transmit slots this port pretends to have free; lower it to simulate a full ring.
    public var txSpace: Int
    /// Events to report, as a backend would count them (tests set them).
    public var events = PortEvents()

    let rxPool: FixedBytes
    /// The frames as injected (for `replayRestoresFrames`).
    let rxPristine: FixedBytes
    let rxLen: FixedArray<Int>
    let rxVnet: FixedArray<VirtioNetHeader>
    var rxHead = 0
    var rxCount = 0
    var lastReceived = 0

    let txPool: FixedBytes
    let txLen: FixedArray<Int>
    let txVnet: FixedArray<VirtioNetHeader>
    var txCount = 0
    public private(set) var flushes = 0
    public private(set) var transmittedTotal = 0

    public init(bufferSize: Int = 2048, rxSlots: Int = 256, txSlots: Int = 256) {
        self.bufferSize = bufferSize
        self.rxSlots = rxSlots
        self.txSlots = txSlots
        txSpace = txSlots
        rxPool = FixedBytes(byteCount: bufferSize * rxSlots)
        rxPristine = FixedBytes(byteCount: bufferSize * rxSlots, zeroed: false)
        rxLen = FixedArray(repeating: 0, count: rxSlots)
        rxVnet = FixedArray(repeating: .none, count: rxSlots)
        txPool = FixedBytes(byteCount: bufferSize * txSlots)
        txLen = FixedArray(repeating: 0, count: txSlots)
        txVnet = FixedArray(repeating: .none, count: txSlots)
    }

    /// Queues a frame to be received; false when the receive queue is full or it is too big.
    @discardableResult
    public func inject(_ bytes: [UInt8], vnet: VirtioNetHeader = .none) -> Bool {
        guard rxCount < rxSlots, bytes.count <= bufferSize else { return false }
        let slot = (rxHead + rxCount) % rxSlots
        bytes.withUnsafeBytes {
            (rxPool.base + slot * bufferSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
            (rxPristine.base + slot * bufferSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
        rxLen[slot] = bytes.count
        rxVnet[slot] = vnet
        rxCount += 1
        return true
    }

    public var pendingReceive: Int { rxCount }

    public func receive(into batch: PacketBatch) -> Int {
        let n = min(rxCount, batch.capacity)
        for k in 0..<n {
            let slot = (rxHead + k) % rxSlots
            if replayRestoresFrames {
                (rxPool.base + slot * bufferSize).copyMemory(from: rxPristine.base + slot * bufferSize, byteCount: rxLen[slot])
            }
            batch.frames[k] = rxPool.base + slot * bufferSize
            batch.lengths[k] = UInt32(rxLen[slot])
            batch.vnet[k] = rxVnet[slot]
        }
        lastReceived = n
        return n
    }

    public func releaseReceived() {
        if replay { return }
        rxHead = (rxHead + lastReceived) % rxSlots
        rxCount -= lastReceived
        lastReceived = 0
    }

    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>) -> Int {
        var sent = 0
        for k in 0..<count {
            let e = entries[k]
            let f = Int(e.frame)
            let tag = Int(batch.info[f].tagLength)
            if replay {
                let n = FrameRewrite.copy(from: batch.frames[f], length: Int(batch.lengths[f]), tagLength: tag,
                                          tci: e.tci, into: txPool.base, capacity: bufferSize)
                status[k] = n < 0 ? .oversize : .queued
                if n >= 0 { sent += 1 }
                continue
            }
            if txCount >= min(txSpace, txSlots) { status[k] = .ringFull; continue }
            let n = FrameRewrite.copy(from: batch.frames[f], length: Int(batch.lengths[f]), tagLength: tag,
                                      tci: e.tci, into: txPool.base + txCount * bufferSize, capacity: bufferSize)
            if n < 0 { status[k] = .oversize; continue }
            txLen[txCount] = n
            txVnet[txCount] = batch.vnet[f].shifted(by: n - Int(batch.lengths[f]))
            txCount += 1
            status[k] = .queued
            sent += 1
        }
        transmittedTotal += sent
        return sent
    }

    public func flush() { flushes += 1 }

    public func updateEvents() {}

    /// Takes every frame transmitted so far (test helper; allocates).
    public func drain() -> [[UInt8]] { drainWithHeaders().map(\.bytes) }

    public func drainWithHeaders() -> [(bytes: [UInt8], vnet: VirtioNetHeader)] {
        var out: [(bytes: [UInt8], vnet: VirtioNetHeader)] = []
        for k in 0..<txCount {
            let p = UnsafeRawBufferPointer(start: txPool.base + k * bufferSize, count: txLen[k])
            out.append((Array(p), txVnet[k]))
        }
        txCount = 0
        return out
    }
}
