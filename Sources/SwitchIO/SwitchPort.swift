// SwitchPort: the port backends the daemon runs, as one enum so that the forwarding engine is
// specialised over a concrete type: one switch per batch, no existential, no per-frame dispatch.

import SwitchCore

public enum SwitchPort: FramePort {
    /// An existing interface read and written through AF_PACKET rings.
    case packet(PacketSocketPort)
    /// A TAP device the switch created.
    case tap(TapPort)

    @inline(__always)
    public func receive(into batch: PacketBatch) -> Int {
        switch self {
        case .packet(let p): return p.receive(into: batch)
        case .tap(let t): return t.receive(into: batch)
        }
    }

    @inline(__always)
    public func releaseReceived() {
        switch self {
        case .packet(let p): p.releaseReceived()
        case .tap(let t): t.releaseReceived()
        }
    }

    @inline(__always)
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int) -> Int {
        switch self {
        case .packet(let p): return p.transmit(batch, entries: entries, count: count)
        case .tap(let t): return t.transmit(batch, entries: entries, count: count)
        }
    }

    @inline(__always)
    public func flush() {
        switch self {
        case .packet(let p): p.flush()
        case .tap(let t): t.flush()
        }
    }

    /// The descriptor to wait on for received frames.
    public var pollDescriptor: Int32 {
        switch self {
        case .packet(let p): return p.fileDescriptor
        case .tap(let t): return t.fileDescriptor
        }
    }

    /// A second descriptor to wait on (the bulk RX ring of an AF_PACKET port), or -1.
    public var secondPollDescriptor: Int32 {
        switch self {
        case .packet(let p): return p.bulkDescriptor
        case .tap: return -1
        }
    }

    /// True once the kernel interface under the port is gone.
    public var isDead: Bool {
        switch self {
        case .packet(let p): return p.isDead
        case .tap: return false
        }
    }

    /// Reads and clears the socket's pending error (an interface that went down or away);
    /// afterwards `isDead` tells whether the interface is gone for good.
    public func takeError() -> SystemError? {
        switch self {
        case .packet(let p): return p.checkError()
        case .tap: return nil
        }
    }

    /// The kernel's index of the interface the port is bound to.
    public var ifIndex: Int32 {
        switch self {
        case .packet(let p): return p.ifIndex
        case .tap(let t): return t.ifIndex
        }
    }

    /// Frames the backend could not deliver because its ring slot was too small.
    public var truncatedFrames: UInt64 {
        switch self {
        case .packet(let p): return p.counters.truncated
        case .tap: return 0
        }
    }

    /// Frames the kernel dropped because the receive ring was full, as of the last
    /// `readKernelStatistics()`.
    public var ringFullDrops: UInt64 {
        switch self {
        case .packet(let p): return p.counters.kernelDrops
        case .tap: return 0
        }
    }

    /// Collects the kernel's drop count for the port (one getsockopt; call about once a second).
    public func readKernelStatistics() {
        if case .packet(let p) = self { p.readKernelStatistics() }
    }

    /// Handles errors of the bridge's kick thread on this port; true when a kick is due now.
    public func collectKickErrors() -> Bool {
        if case .packet(let p) = self { return p.collectKickErrors() }
        return false
    }

    /// Releases the backend: rings unmapped, sockets closed, TAP devices removed.
    public func close() {
        switch self {
        case .packet(let p): p.close()
        case .tap(let t): t.close()
        }
    }
}
