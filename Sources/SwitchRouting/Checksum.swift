// Checksum: the Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// A router changes a few header bytes of every packet it forwards (the TTL, later NAT's addresses
// and ports) and must leave every checksum that covers them right without summing the whole
// packet again. RFC 1624's equation 3, HC' = ~(~HC + ~m + m'), updates a checksum for one 16-bit
// word that changed from m to m'; it never produces 0xFFFF from a valid header (the flaw of
// RFC 1141's form). The partial checksum of a CHECKSUM_PARTIAL frame (the virtio-net header's
// csum_start/csum_offset) holds the uncomplemented pseudo-header sum instead: `adjustPartial`
// updates that one without the complement, as Linux's inet_proto_csum_replace4 does with
// pseudohdr=true for such skbs.

public enum Checksum {
    /// The one's-complement sum of `count` bytes at `p`, not folded, not complemented (odd
    /// lengths padded with a zero byte).
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt64 {
        // 32 bits at a time into a 64-bit accumulator (no carry is lost before the fold), then
        // the tail; the sum of big-endian words is what RFC 1071 adds.
        var s = initial
        var i = 0
        while i + 4 <= count {
            s &+= UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
            i += 4
        }
        if i + 2 <= count {
            s &+= UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
            i += 2
        }
        if i < count { s &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8 }
        return s
    }

    /// Folds a sum into 16 bits (end-around carry).
    @inlinable
    public static func fold(_ s: UInt64) -> UInt16 {
        var x = s
        while x >> 16 != 0 { x = (x & 0xFFFF) &+ (x >> 16) }
        return UInt16(truncatingIfNeeded: x)
    }

    /// The checksum field value for `count` bytes at `p` (the field itself taken as zero or
    /// already zeroed by the caller).
    @inlinable
    public static func of(_ p: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt16 {
        ~fold(sum(p, count: count, initial: initial))
    }

    /// RFC 1624 eqn. 3: the checksum `hc` after one 16-bit word changed from `old` to `new`.
    @inlinable
    public static func update(_ hc: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~fold(UInt64(~hc) &+ UInt64(~old) &+ UInt64(new))
    }

    /// The same for a 32-bit field (an IPv4 address), as two 16-bit words.
    @inlinable
    public static func update(_ hc: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        ~fold(UInt64(~hc) &+ UInt64(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt64(~UInt16(truncatingIfNeeded: old))
              &+ UInt64(UInt16(truncatingIfNeeded: new >> 16)) &+ UInt64(UInt16(truncatingIfNeeded: new)))
    }

    /// The uncomplemented pseudo-header sum a CHECKSUM_PARTIAL frame carries in its checksum
    /// field, after a 32-bit field it covers changed from `old` to `new`.
    @inlinable
    public static func adjustPartial(_ partial: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        ~update(~partial, old: old, new: new)
    }
}
