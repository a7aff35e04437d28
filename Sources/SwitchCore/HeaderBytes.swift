// HeaderBytes: reading protocol header fields out of a frame.
//
// Network byte order, unaligned loads (an Ethernet header is 14 bytes, so everything behind it is
// misaligned by 2), no bounds checks: the caller has checked the frame's length for the field. One
// place for these so the bridge's stages, the filter program and the router read headers alike.

public enum HeaderBytes {
    /// The big-endian 16-bit field at byte `offset` of `frame`.
    @inlinable @inline(__always)
    public static func be16(_ frame: UnsafeRawPointer, _ offset: Int) -> UInt16 {
        UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// The big-endian 32-bit field at byte `offset` of `frame`.
    @inlinable @inline(__always)
    public static func be32(_ frame: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// The byte at `offset` of `frame`.
    @inlinable @inline(__always)
    public static func byte(_ frame: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        frame.load(fromByteOffset: offset, as: UInt8.self)
    }

    /// The MAC address at byte `offset` of `frame`, as `MACAddress.rawValue`.
    @inlinable @inline(__always)
    public static func mac(_ frame: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        MACAddress(loadingFrom: frame + offset).rawValue
    }

    /// The 128-bit address at byte `offset` (an IPv6 source or destination) as two words.
    @inlinable @inline(__always)
    public static func ipv6(_ frame: UnsafeRawPointer, _ offset: Int) -> (high: UInt64, low: UInt64) {
        (UInt64(be32(frame, offset)) << 32 | UInt64(be32(frame, offset + 4)),
         UInt64(be32(frame, offset + 8)) << 32 | UInt64(be32(frame, offset + 12)))
    }
}
