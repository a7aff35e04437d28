// FrameRewrite: VLAN tag push and pop during the one copy every egress needs.
//
// A frame leaves the switch by being copied into the egress port's ring slot or buffer, so the tag
// rewrite costs nothing extra: copy the 12 address bytes, write the new tag (or none), then copy
// the rest after the old tag. The offload header moves with the bytes (`VirtioNetHeader.shifted`).

public enum FrameRewrite {
    /// Bytes the rewritten frame will take.
    @inlinable
    public static func outputLength(length: Int, tagLength: Int, tci: UInt16) -> Int {
        length - tagLength + (tci == 0 ? 0 : 4)
    }

    /// Copies `length` bytes of `source` (whose first `tagLength` bytes after offset 12 are an
    /// 802.1Q tag to drop) into `destination`, with a new 802.1Q tag `tci` when it is not zero.
    /// Returns the bytes written, or -1 when they would not fit in `capacity`.
    @inlinable
    public static func copy(from source: UnsafeRawPointer, length: Int, tagLength: Int, tci: UInt16,
                            into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let out = outputLength(length: length, tagLength: tagLength, tci: tci)
        guard length >= 12 + tagLength, out <= capacity else { return -1 }
        destination.copyMemory(from: source, byteCount: 12)
        var d = 12
        if tci != 0 {
            destination.storeBytes(of: UInt16(0x8100).bigEndian, toByteOffset: 12, as: UInt16.self)
            destination.storeBytes(of: tci.bigEndian, toByteOffset: 14, as: UInt16.self)
            d = 16
        }
        let s = 12 + tagLength
        (destination + d).copyMemory(from: source + s, byteCount: length - s)
        return out
    }
}
