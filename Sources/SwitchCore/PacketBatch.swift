// PacketBatch: the unit of work of the dataplane.
//
// A port fills a batch with up to `capacity` frames at once; each pipeline stage then loops over
// the whole batch. Frames are views (pointer + length) into memory the port owns: its mmap'd
// ring slots or a preallocated buffer pool. They stay valid until the port's
// `releaseReceived()`, which the engine calls only after every egress port has copied them.
//
// Parse once. Classification works out each frame's VLAN, tag and network-layer offset and
// records them in `info` (one 8-byte `FrameInfo` per frame, eight to a cache line); every later
// stage (anti-spoofing, the filter program, the router's stages) reads them there instead of
// parsing the Ethernet header again, as Open vSwitch's dp_packet keeps its l3 offset.
//
// All storage is allocated once, when the batch is made; nothing in here allocates per frame.
// The batch is a final class so that a port and the pipeline share it by reference; the hot loops
// take the arrays' base pointers out once per batch and then touch only raw memory.

/// What classification found out about one frame. 8 bytes (a layout test holds it to that).
public struct FrameInfo: Equatable, Sendable {
    /// The VLAN the frame belongs to (1...4094), or 0 when a stage dropped it.
    public var vlan: UInt16
    /// The ethertype of the frame's payload, in host byte order: the one behind the 802.1Q tag
    /// when the frame carries one (`tagLength` 4), otherwise the one at offset 12.
    public var etherType: UInt16
    /// The priority code point the frame carries (0 when it arrived untagged).
    public var pcp: UInt8
    /// Bytes of 802.1Q tag at offset 12 of the frame as received: 0 or 4.
    public var tagLength: UInt8
    /// Offset of the network-layer header (ARP, IPv4, IPv6): 14, or 18 behind a tag.
    public var l3Offset: UInt8
    public var reserved: UInt8

    @inlinable
    public init(vlan: UInt16 = 0, etherType: UInt16 = 0, pcp: UInt8 = 0, tagLength: UInt8 = 0, l3Offset: UInt8 = 14) {
        self.vlan = vlan
        self.etherType = etherType
        self.pcp = pcp
        self.tagLength = tagLength
        self.l3Offset = l3Offset
        self.reserved = 0
    }

    /// The ethertype at offset 12 as the wire has it (0x8100 for a tagged frame), which
    /// ebtables' `-p` matches.
    @inlinable
    public var outerEtherType: UInt16 { tagLength == 0 ? etherType : 0x8100 }

    public static let dropped = FrameInfo()

    /// What classification would record from the frame's header alone (the VLAN is the tag's VID,
    /// 0 when untagged: that part needs the ingress port): for tests and tools that judge a frame
    /// outside the pipeline. `length` must be at least 14.
    public init(parsing frame: UnsafeRawPointer, length: Int) {
        self.init()
        etherType = HeaderBytes.be16(frame, 12)
        if etherType == 0x8100 && length >= 18 {
            let tci = HeaderBytes.be16(frame, 14)
            vlan = tci & 0xFFF
            pcp = UInt8(truncatingIfNeeded: tci >> 13)
            tagLength = 4
            l3Offset = 18
            etherType = HeaderBytes.be16(frame, 16)
        }
    }
}

/// A batch of received frames and the per-frame facts the pipeline derives from them.
public final class PacketBatch {
    public let capacity: Int
    /// Frames currently in the batch, at indices 0..<count.
    public var count: Int = 0

    /// Start of each frame's Ethernet header. 802.1Q tags are always inline: a port whose kernel
    /// interface strips tags into metadata puts them back before handing the frame over.
    public let frames: FixedArray<UnsafeMutableRawPointer>
    /// Length of each frame in bytes, from the destination MAC to the end (no FCS).
    public let lengths: FixedArray<UInt32>
    /// The offload header each frame arrived with (`.none` from ports without one).
    public let vnet: FixedArray<VirtioNetHeader>
    /// Written by classification, read by every later stage and by the ports' transmit.
    public let info: FixedArray<FrameInfo>
    /// Long frames whose body a port has not read yet (PacketSocketPort, "Direct receive"): 0 the
    /// frame is whole in memory; `pending`, only the first `snapshot` bytes are (a truncated copy
    /// that carries the headers, which stages read and rewrite as usual) and the rest waits in the
    /// ingress port's socket queue, to be read at transmit straight into the one egress port's TX
    /// slot; `pendingShared`, the same, but the frame goes to more than one port, so its body is
    /// read into the ingress port's own memory first (`FramePort.materialize`). Ports that never
    /// defer leave every frame at 0.
    public let deferred: FixedArray<UInt8>
    public static let pending: UInt8 = 1
    public static let pendingShared: UInt8 = 2
    /// Bytes of a pending frame that are in memory (its truncated copy), and any frame's length.
    /// Stages read and rewrite only headers, which the copy holds (at least `snapshotMinimum`
    /// bytes: an ICMPv6 error quotes up to 1232 bytes from offset 14).
    public static let snapshotMinimum = 1400

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Int(UInt16.max))
        self.capacity = capacity
        frames = FixedArray(repeating: UnsafeMutableRawPointer(bitPattern: 0x1)!, count: capacity)
        lengths = FixedArray(repeating: 0, count: capacity)
        vnet = FixedArray(repeating: .none, count: capacity)
        info = FixedArray(repeating: .dropped, count: capacity)
        deferred = FixedArray(repeating: 0, count: capacity)
    }

    /// Appends a frame view; returns false when the batch is full. For ports and tests.
    @inlinable
    @discardableResult
    public func append(_ frame: UnsafeMutableRawPointer, length: Int, vnet header: VirtioNetHeader = .none) -> Bool {
        guard count < capacity else { return false }
        frames[count] = frame
        lengths[count] = UInt32(truncatingIfNeeded: length)
        vnet[count] = header
        deferred[count] = 0
        count += 1
        return true
    }
}
