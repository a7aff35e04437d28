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
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>) -> Int {
        switch self {
        case .packet(let p): return p.transmit(batch, entries: entries, count: count, status: status)
        case .tap(let t): return t.transmit(batch, entries: entries, count: count, status: status)
        }
    }

    /// Frames received on a packet socket may be pending (PacketSocketPort, "Direct receive"): a
    /// packet-socket egress reads their bodies straight into its TX slots, a TAP egress has them
    /// read into the ingress port's memory first.
    @inline(__always)
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>, from ingress: SwitchPort?) -> Int {
        guard case .packet(let source)? = ingress else {
            return transmit(batch, entries: entries, count: count, status: status)
        }
        switch self {
        case .packet(let p): return p.transmit(batch, entries: entries, count: count, status: status, source: source)
        case .tap(let t):
            source.materialize(batch, entries: entries, count: count)
            return t.transmit(batch, entries: entries, count: count, status: status)
        }
    }

    @inline(__always)
    public func materialize(_ batch: PacketBatch, through index: Int) {
        if case .packet(let p) = self { p.materialize(batch, through: index) }
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

    public var events: PortEvents {
        switch self {
        case .packet(let p): return p.events
        case .tap(let t): return t.events
        }
    }

    public func updateEvents() {
        if case .packet(let p) = self { p.updateEvents() }
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
