// PacketBatch: the unit of work of the dataplane.
//
// A port fills a batch with up to `capacity` frames at once; each pipeline stage then loops over
// the whole batch. Frames are views (pointer + length) into memory the port owns: its mmap'd
// ring slots or a preallocated buffer pool. They stay valid until the port's
// `releaseReceived()`, which the engine calls only after every egress port has copied them.
//
// All storage is allocated once, when the batch is made; nothing in here allocates per frame.
// The batch is a final class so that a port and the pipeline share it by reference; the hot loops
// take its pointer fields out once per batch and then touch only raw memory.

/// The `virtio_net_hdr` that PACKET_VNET_HDR and IFF_VNET_HDR put in front of every frame.
/// It says whether the frame still needs its checksum filled in (CHECKSUM_PARTIAL) and whether it
/// is a GSO super-frame to be segmented later. The switch never segments or checksums: it carries
/// this header from the ingress port to every egress port, adjusting offsets when a VLAN tag is
/// pushed or popped, so that such frames cross the switch intact.
/// Fields are in host byte order, as the kernel uses them for AF_PACKET and legacy TAP.
public struct VirtioNetHeader: Equatable, Sendable {
    public var flags: UInt8
    public var gsoType: UInt8
    public var hdrLen: UInt16
    public var gsoSize: UInt16
    public var csumStart: UInt16
    public var csumOffset: UInt16

    public static let size = 10
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM
    public static let needsChecksum: UInt8 = 1
    /// VIRTIO_NET_HDR_GSO_NONE
    public static let gsoNone: UInt8 = 0

    @inlinable
    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, hdrLen: UInt16 = 0, gsoSize: UInt16 = 0,
                csumStart: UInt16 = 0, csumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.hdrLen = hdrLen
        self.gsoSize = gsoSize
        self.csumStart = csumStart
        self.csumOffset = csumOffset
    }

    public static let none = VirtioNetHeader()

    /// The header after `delta` bytes were inserted (positive) or removed (negative) at offset 12,
    /// i.e. a VLAN tag pushed or popped. Offsets that point past the Ethernet addresses move with it.
    @inlinable
    public func shifted(by delta: Int) -> VirtioNetHeader {
        if delta == 0 { return self }
        var h = self
        if flags & VirtioNetHeader.needsChecksum != 0 && csumStart >= 12 {
            h.csumStart = UInt16(truncatingIfNeeded: Int(csumStart) + delta)
        }
        if hdrLen >= 12 { h.hdrLen = UInt16(truncatingIfNeeded: Int(hdrLen) + delta) }
        return h
    }

    /// Reads the 10-byte header at `p` (host byte order).
    @inlinable
    public static func load(from p: UnsafeRawPointer) -> VirtioNetHeader {
        VirtioNetHeader(
            flags: p.load(as: UInt8.self),
            gsoType: p.load(fromByteOffset: 1, as: UInt8.self),
            hdrLen: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self),
            gsoSize: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self),
            csumStart: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self),
            csumOffset: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    /// Writes the 10-byte header at `p` (host byte order).
    @inlinable
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: flags, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: hdrLen, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: csumStart, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: csumOffset, toByteOffset: 8, as: UInt16.self)
    }
}

/// A batch of received frames and the per-frame facts the pipeline derives from them.
public final class PacketBatch {
    public let capacity: Int
    /// Frames currently in the batch, at indices 0..<count.
    public var count: Int = 0

    /// Start of each frame's Ethernet header. 802.1Q tags are always inline: a port whose kernel
    /// interface strips tags into metadata puts them back before handing the frame over.
    public let frames: UnsafeMutablePointer<UnsafeMutableRawPointer>
    /// Length of each frame in bytes, from the destination MAC to the end (no FCS).
    public let lengths: UnsafeMutablePointer<UInt32>
    /// The offload header each frame arrived with (`.none` from ports without one).
    public let vnet: UnsafeMutablePointer<VirtioNetHeader>

    // Written by classification, read by forwarding and by the ports' transmit.
    /// The VLAN the frame belongs to (1...4094), or 0 when ingress classification dropped it.
    public let vlan: UnsafeMutablePointer<UInt16>
    /// The priority code point the frame carries (0 when it arrived untagged).
    public let pcp: UnsafeMutablePointer<UInt8>
    /// Bytes of 802.1Q tag at offset 12 of the frame as received: 0 or 4.
    public let tagLength: UnsafeMutablePointer<UInt8>

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Int(UInt16.max))
        self.capacity = capacity
        let placeholder = UnsafeMutableRawPointer(bitPattern: 0x1)!
        frames = .allocate(capacity: capacity)
        frames.initialize(repeating: placeholder, count: capacity)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        vnet = .allocate(capacity: capacity)
        vnet.initialize(repeating: .none, count: capacity)
        vlan = .allocate(capacity: capacity)
        vlan.initialize(repeating: 0, count: capacity)
        pcp = .allocate(capacity: capacity)
        pcp.initialize(repeating: 0, count: capacity)
        tagLength = .allocate(capacity: capacity)
        tagLength.initialize(repeating: 0, count: capacity)
    }

    deinit {
        frames.deallocate()
        lengths.deallocate()
        vnet.deallocate()
        vlan.deallocate()
        pcp.deallocate()
        tagLength.deallocate()
    }

    /// Appends a frame view; returns false when the batch is full. For ports and tests.
    @inlinable
    @discardableResult
    public func append(_ frame: UnsafeMutableRawPointer, length: Int, vnet header: VirtioNetHeader = .none) -> Bool {
        guard count < capacity else { return false }
        frames[count] = frame
        lengths[count] = UInt32(truncatingIfNeeded: length)
        vnet[count] = header
        count += 1
        return true
    }
}

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

/// What every port backend provides to the forwarding engine. Ports are concrete final classes;
/// the engine is generic over one of them or over an enum of them (the daemon's `SwitchPort`), so
/// there is no existential and no dynamic dispatch per frame.
public protocol FramePort {
    /// Fills `batch` (from index 0) with up to `batch.capacity` received frames; returns how many.
    /// Frames stay valid until `releaseReceived()`.
    func receive(into batch: PacketBatch) -> Int
    /// Gives the frames of the last `receive` back to the port (ring slots to the kernel).
    func releaseReceived()
    /// Copies each listed frame of `batch` into the port's transmit queue, rewriting its VLAN tag as
    /// the entry says (`FrameRewrite`). Returns how many were queued; the rest did not fit and the
    /// engine counts them as dropped. Nothing is sent until `flush()`.
    func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int) -> Int
    /// Sends everything queued since the last flush (one kick / one syscall for the lot).
    func flush()
}
