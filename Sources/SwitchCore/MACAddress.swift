// MACAddress: a 48-bit Ethernet address held in the low bits of one UInt64, so that it packs
// with a VLAN ID into a single FDB key word (see FDBKey) and compares in one instruction.

public struct MACAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address in the low 48 bits, first octet most significant.
    public let rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        self.init(rawValue: UInt64(b0) << 40 | UInt64(b1) << 32 | UInt64(b2) << 24
                  | UInt64(b3) << 16 | UInt64(b4) << 8 | UInt64(b5))
    }

    /// Reads six bytes at `p` (network order).
    @inlinable
    public init(loadingFrom p: UnsafeRawPointer) {
        let hi = UInt64(UInt16(bigEndian: p.loadUnaligned(as: UInt16.self)))
        let lo = UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self)))
        rawValue = hi << 32 | lo
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (also with `-` separators); nil when malformed.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let groups = parts.count == 6 ? parts : text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var v: UInt64 = 0
        for g in groups {
            guard (1...2).contains(g.count), let b = UInt8(g, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        self.init(rawValue: v)
    }

    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(rawValue: 0)

    /// Group bit (I/G) set: multicast or broadcast.
    @inlinable public var isMulticast: Bool { rawValue & 0x0100_0000_0000 != 0 }
    @inlinable public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF_FFFF }
    @inlinable public var isZero: Bool { rawValue == 0 }
    /// 01:80:C2:00:00:00 - 01:80:C2:00:00:0F, the IEEE 802.1D reserved link-local group addresses
    /// (STP, PAUSE, LACP, LLDP, 802.1X): a bridge consumes or drops these, never floods them.
    @inlinable public var isLinkLocalReserved: Bool { rawValue & ~0xF == 0x0180_C200_0000 }

    @inlinable
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt16(truncatingIfNeeded: rawValue >> 32).bigEndian, as: UInt16.self)
        p.storeBytes(of: UInt32(truncatingIfNeeded: rawValue).bigEndian, toByteOffset: 2, as: UInt32.self)
    }

    public var bytes: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64($0))) } }

    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }
}

extension MACAddress: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let m = MACAddress(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a MAC address: \(s)")
        }
        self = m
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
