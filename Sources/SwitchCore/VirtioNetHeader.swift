// VirtioNetHeader: the offload header that travels with every frame.
//
// PACKET_VNET_HDR (AF_PACKET) and IFF_VNET_HDR (TAP) put a 10-byte virtio_net_hdr in front of
// every frame. It is how CHECKSUM_PARTIAL frames and GSO super-frames cross the switch intact: the
// switch never segments or checksums, it carries the header from the ingress port to every egress
// port and moves its offsets when a VLAN tag is pushed or popped.

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
