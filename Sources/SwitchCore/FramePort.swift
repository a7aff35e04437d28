// FramePort: the contract between a port backend and the forwarding engines.
//
// A backend (AF_PACKET rings, a TAP device, a capture file, an in-memory test port) hands the
// engine batches of received frames and queues the frames the engine gives it to send. Ports are
// concrete final classes; an engine is generic over one of them or over an enum of them (the
// daemon's `SwitchPort`), so there is no existential and no dynamic dispatch per frame.
//
// One counter path. The engine counts what it sees: frames and bytes received and sent per port,
// and every entry a port did not queue, by the reason the port gives for it (`TransmitStatus`).
// A backend counts only what the engine cannot see (`PortEvents`): frames it lost before the
// pipeline saw them (runts, truncated frames, a full receive ring) and failures after it queued a
// frame (a refused kick, a failed write). The engine keeps the events of backends that left a port,
// so a port's figures survive its interface going away and coming back; `stats` shows both per
// port. Nothing is counted in two places.

/// One frame to send on one port: which frame of the batch, and the 802.1Q tag to give it.
/// `tci == 0` means "send untagged" (pop any tag); otherwise the frame leaves tagged with this TCI
/// (PCP in the top 3 bits, VID never 0 when pushing).
public struct EgressEntry: Equatable, Sendable {
    public var frame: UInt16
    public var tci: UInt16
    @inlinable
    public init(frame: UInt16, tci: UInt16) {
        self.frame = frame
        self.tci = tci
    }
}

/// What became of one entry given to `FramePort.transmit`.
public enum TransmitStatus: UInt8, Sendable {
    /// In the port's transmit queue; it leaves at the next `flush()`.
    case queued = 0
    /// No free slot or buffer in the port's transmit queue.
    case ringFull
    /// Larger than the port's transmit slot or buffer (after a tag push).
    case oversize
    /// The port cannot send at all (its interface is gone, it was closed, a capture port has no
    /// output file).
    case error
}

/// Events a port backend counts itself. Plain counters, read between batches on the thread that
/// runs the port (`FramePort.updateEvents()` first brings in what the kernel counted).
public struct PortEvents: Equatable, Sendable {
    /// Frames shorter than an Ethernet header, not delivered.
    public var rxRunts: UInt64 = 0
    /// Frames larger than the port's receive slot or buffer, not delivered (a cut frame would be
    /// a corrupt one).
    public var rxTruncated: UInt64 = 0
    /// Frames the kernel dropped because the receive ring was full: the dataplane thread was
    /// behind or off the CPU (PACKET_STATISTICS).
    public var rxRingFull: UInt64 = 0
    /// Reads that failed (TAP).
    public var rxErrors: UInt64 = 0
    /// Sends that failed after frames were queued: a kick of the TX ring the kernel refused, a TAP
    /// write that failed.
    public var txSendErrors: UInt64 = 0
    /// Frames the kernel refused to send from the TX ring (TP_STATUS_WRONG_FORMAT), reclaimed.
    public var txWrongFormat: UInt64 = 0

    public init() {}

    @inlinable
    public static func + (a: PortEvents, b: PortEvents) -> PortEvents {
        var s = PortEvents()
        s.rxRunts = a.rxRunts &+ b.rxRunts
        s.rxTruncated = a.rxTruncated &+ b.rxTruncated
        s.rxRingFull = a.rxRingFull &+ b.rxRingFull
        s.rxErrors = a.rxErrors &+ b.rxErrors
        s.txSendErrors = a.txSendErrors &+ b.txSendErrors
        s.txWrongFormat = a.txWrongFormat &+ b.txWrongFormat
        return s
    }
}

/// What every port backend provides to the forwarding engines.
public protocol FramePort {
    /// Fills `batch` (from index 0) with up to `batch.capacity` received frames; returns how many.
    /// Frames stay valid until `releaseReceived()`.
    func receive(into batch: PacketBatch) -> Int
    /// Gives the frames of the last `receive` back to the port (ring slots to the kernel).
    func releaseReceived()
    /// Copies each listed frame of `batch` into the port's transmit queue, rewriting its VLAN tag as
    /// the entry says (`FrameRewrite`), and writes each entry's outcome into `status[0..<count]`.
    /// Returns how many were queued, in any positions: an entry that does not fit is skipped and
    /// the ones after it are still tried. Nothing is sent until `flush()`.
    func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                  status: UnsafeMutablePointer<TransmitStatus>) -> Int
    /// As `transmit(_:entries:count:status:)`, for frames received on `ingress` (the engine's
    /// ingress port, nil for frames the engine made): a port that can read a pending frame's body
    /// (PacketBatch.deferred) straight from `ingress` into its own transmit slot does so; the
    /// default has `ingress` read every pending frame among the entries into its memory first.
    func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                  status: UnsafeMutablePointer<TransmitStatus>, from ingress: Self?) -> Int
    /// Reads the bodies of this port's pending frames of `batch` (received by it), in the order
    /// they were received, up to and including frame `index`, into its own memory: afterwards those
    /// frames are whole (`deferred` 0) with their headers as the stages left them. For a stage that
    /// needs a pending frame's body (a flood, a fragment, a queued or echoed packet). Ports that
    /// never defer do nothing.
    func materialize(_ batch: PacketBatch, through index: Int)
    /// Sends everything queued since the last flush (one kick / one syscall for the lot).
    func flush()
    /// The events this backend counted since it was opened.
    var events: PortEvents { get }
    /// Brings `events` up to date with what the kernel counted for the port (one getsockopt for
    /// an AF_PACKET port, nothing for others). About once a second, never per batch.
    func updateEvents()
}

extension FramePort {
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>, from ingress: Self?) -> Int {
        if let ingress {
            var last = -1
            let deferred = batch.deferred.base
            for k in 0..<count where deferred[Int(entries[k].frame)] != 0 { last = max(last, Int(entries[k].frame)) }
            if last >= 0 { ingress.materialize(batch, through: last) }
        }
        return transmit(batch, entries: entries, count: count, status: status)
    }

    public func materialize(_ batch: PacketBatch, through index: Int) {}
}
