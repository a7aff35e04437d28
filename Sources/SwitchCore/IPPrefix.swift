// IPv4Prefix and IPv6Prefix: addresses with a prefix length, as filter rules, anti-spoofing and
// routes use them. Plain values in host order, so a match is a mask and a compare.

/// An IPv4 address with a prefix mask, host order.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public var address: UInt32
    public var mask: UInt32
    public init(address: UInt32, mask: UInt32 = 0xFFFF_FFFF) { self.address = address & mask; self.mask = mask }
    @inlinable public func contains(_ a: UInt32) -> Bool { a & mask == address }

    /// `A.B.C.D`, `A.B.C.D/N` or `A.B.C.D/M.M.M.M`.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let a = IPv4Prefix.parseAddress(parts[0]) else { return nil }
        var mask: UInt32 = 0xFFFF_FFFF
        if parts.count == 2 {
            if let n = Int(parts[1]), (0...32).contains(n), parts[1].allSatisfy(\.isNumber) {
                mask = n == 0 ? 0 : ~UInt32(0) << UInt32(32 - n)
            } else if let m = IPv4Prefix.parseAddress(parts[1]) {
                mask = m
            } else { return nil }
        }
        self.init(address: a, mask: mask)
    }

    public static func parseAddress(_ text: some StringProtocol) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var v: UInt32 = 0
        for o in octets {
            guard !o.isEmpty, o.count <= 3, o.allSatisfy(\.isNumber), let b = UInt8(o) else { return nil }
            v = v << 8 | UInt32(b)
        }
        return v
    }

    public static func format(_ a: UInt32) -> String { "\(a >> 24).\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)" }

    public var description: String {
        if mask == 0xFFFF_FFFF { return IPv4Prefix.format(address) }
        if mask == 0 { return IPv4Prefix.format(address) + "/0" }
        let n = mask.nonzeroBitCount
        if mask == ~UInt32(0) << UInt32(32 - n) { return IPv4Prefix.format(address) + "/\(n)" }
        return IPv4Prefix.format(address) + "/" + IPv4Prefix.format(mask)
    }
}

/// A 128-bit IPv6 address as two words (high first) with a prefix mask.
public struct IPv6Prefix: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64, low: UInt64
    public var maskHigh: UInt64, maskLow: UInt64
    public init(high: UInt64, low: UInt64, length: Int = 128) {
        maskHigh = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
        maskLow = length >= 128 ? ~0 : (length <= 64 ? 0 : ~UInt64(0) << UInt64(128 - length))
        self.high = high & maskHigh
        self.low = low & maskLow
    }
    @inlinable public func contains(high h: UInt64, low l: UInt64) -> Bool { h & maskHigh == high && l & maskLow == low }
    public var length: Int { maskHigh.nonzeroBitCount + maskLow.nonzeroBitCount }

    /// `ADDR` or `ADDR/N`, with `::` compression and an embedded IPv4 tail.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        var length = 128
        if parts.count == 2 {
            guard parts[1].allSatisfy(\.isNumber), let n = Int(parts[1]), (0...128).contains(n) else { return nil }
            length = n
        }
        guard let (h, l) = IPv6Prefix.parseAddress(String(parts[0])) else { return nil }
        self.init(high: h, low: l, length: length)
    }

    public static func parseAddress(_ s: String) -> (UInt64, UInt64)? {
        var groups: [UInt16] = []
        var tailStart: Int? = nil
        var halves: [String] = []
        if let r = s.firstRange(of: "::") {
            halves = [String(s[..<r.lowerBound]), String(s[r.upperBound...])]
            if halves[1].contains("::") { return nil }
        } else { halves = [s] }
        guard halves.count <= 2 else { return nil }
        func parseGroups(_ t: String) -> [UInt16]? {
            if t.isEmpty { return [] }
            var out: [UInt16] = []
            let items = t.split(separator: ":", omittingEmptySubsequences: false)
            for (k, g) in items.enumerated() {
                if k == items.count - 1, g.contains("."), let v4 = IPv4Prefix.parseAddress(g) {
                    out.append(UInt16(v4 >> 16)); out.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(g.count), let v = UInt16(g, radix: 16) else { return nil }
                    out.append(v)
                }
            }
            return out
        }
        guard let head = parseGroups(halves[0]) else { return nil }
        groups = head
        if halves.count == 2 {
            guard let tail = parseGroups(halves[1]), head.count + tail.count <= 7 else { return nil }
            tailStart = 8 - tail.count
            groups += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        _ = tailStart
        guard groups.count == 8 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for k in 0..<4 { h = h << 16 | UInt64(groups[k]) }
        for k in 4..<8 { l = l << 16 | UInt64(groups[k]) }
        return (h, l)
    }

    public var description: String {
        var g: [UInt16] = []
        for k in 0..<4 { g.append(UInt16(truncatingIfNeeded: high >> UInt64(48 - 16 * k))) }
        for k in 0..<4 { g.append(UInt16(truncatingIfNeeded: low >> UInt64(48 - 16 * k))) }
        // Longest run of zero groups (2 or more) becomes "::" (RFC 5952).
        var best = (start: -1, count: 0), k = 0
        while k < 8 {
            if g[k] == 0 {
                var e = k
                while e < 8 && g[e] == 0 { e += 1 }
                if e - k > best.count && e - k >= 2 { best = (k, e - k) }
                k = e
            } else { k += 1 }
        }
        let hex = g.map { String($0, radix: 16) }
        var s: String
        if best.start >= 0 {
            s = hex[0..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.count)...].joined(separator: ":")
        } else { s = hex.joined(separator: ":") }
        return length == 128 ? s : s + "/\(length)"
    }
}
