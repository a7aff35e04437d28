// MemoryPort: an in-memory port, the switch's embedded test and benchmark backend.
//
// Frames are injected as bytes and collected as bytes, so unit tests wire a tiny network of
// MemoryPorts to a BridgeEngine and count what comes out (frames in, frames out, counters).
// Buffers are allocated once; receive and transmit copy into them without allocating, so the
// benchmarks can run the whole pipeline through MemoryPorts and count mallocs. With `replay` set,
// received frames are not consumed (the same frames are received again on every call) and
// transmitted frames are discarded after the copy: a steady-state load with no test harness cost.

public final class MemoryPort: FramePort {
    public let bufferSize: Int
    public let rxSlots: Int
    public let txSlots: Int
    /// Receive the same injected frames forever and discard transmissions (benchmarks).
    public var replay = false
    /// Transmit slots this port pretends to have free; lower it to simulate a full ring.
    public var txSpace: Int

    let rxPool: UnsafeMutableRawPointer
    let rxLen: UnsafeMutablePointer<Int>
    let rxVnet: UnsafeMutablePointer<VirtioNetHeader>
    var rxHead = 0
    var rxCount = 0
    var lastReceived = 0

    let txPool: UnsafeMutableRawPointer
    let txLen: UnsafeMutablePointer<Int>
    let txVnet: UnsafeMutablePointer<VirtioNetHeader>
    var txCount = 0
    public private(set) var flushes = 0
    public private(set) var transmittedTotal = 0

    public init(bufferSize: Int = 2048, rxSlots: Int = 256, txSlots: Int = 256) {
        self.bufferSize = bufferSize
        self.rxSlots = rxSlots
        self.txSlots = txSlots
        txSpace = txSlots
        rxPool = .allocate(byteCount: bufferSize * rxSlots, alignment: 64)
        rxLen = .allocate(capacity: rxSlots); rxLen.initialize(repeating: 0, count: rxSlots)
        rxVnet = .allocate(capacity: rxSlots); rxVnet.initialize(repeating: .none, count: rxSlots)
        txPool = .allocate(byteCount: bufferSize * txSlots, alignment: 64)
        txLen = .allocate(capacity: txSlots); txLen.initialize(repeating: 0, count: txSlots)
        txVnet = .allocate(capacity: txSlots); txVnet.initialize(repeating: .none, count: txSlots)
    }

    deinit {
        rxPool.deallocate(); rxLen.deallocate(); rxVnet.deallocate()
        txPool.deallocate(); txLen.deallocate(); txVnet.deallocate()
    }

    /// Queues a frame to be received; false when the receive queue is full or it is too big.
    @discardableResult
    public func inject(_ bytes: [UInt8], vnet: VirtioNetHeader = .none) -> Bool {
        guard rxCount < rxSlots, bytes.count <= bufferSize else { return false }
        let slot = (rxHead + rxCount) % rxSlots
        bytes.withUnsafeBytes { (rxPool + slot * bufferSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
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
            batch.frames[k] = rxPool + slot * bufferSize
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

    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int) -> Int {
        var sent = 0
        for k in 0..<count {
            if replay {
                let e = entries[k]
                let f = Int(e.frame)
                _ = FrameRewrite.copy(from: batch.frames[f], length: Int(batch.lengths[f]),
                                      tagLength: Int(batch.tagLength[f]), tci: e.tci,
                                      into: txPool, capacity: bufferSize)
                sent += 1
                continue
            }
            if txCount >= min(txSpace, txSlots) { break }
            let e = entries[k]
            let f = Int(e.frame)
            let tag = Int(batch.tagLength[f])
            let n = FrameRewrite.copy(from: batch.frames[f], length: Int(batch.lengths[f]), tagLength: tag,
                                      tci: e.tci, into: txPool + txCount * bufferSize, capacity: bufferSize)
            if n < 0 { break }
            txLen[txCount] = n
            txVnet[txCount] = batch.vnet[f].shifted(by: n - Int(batch.lengths[f]))
            txCount += 1
            sent += 1
        }
        transmittedTotal += sent
        return sent
    }

    public func flush() { flushes += 1 }

    /// Takes every frame transmitted so far (test helper; allocates).
    public func drain() -> [[UInt8]] { drainWithHeaders().map(\.bytes) }

    public func drainWithHeaders() -> [(bytes: [UInt8], vnet: VirtioNetHeader)] {
        var out: [(bytes: [UInt8], vnet: VirtioNetHeader)] = []
        for k in 0..<txCount {
            let p = UnsafeRawBufferPointer(start: txPool + k * bufferSize, count: txLen[k])
            out.append((Array(p), txVnet[k]))
        }
        txCount = 0
        return out
    }
}
