// IPv6RouteTable: the router's IPv6 routes and their longest-prefix match, built as the IPv4
// table is (RouteTable.swift): compiled into an immutable snapshot whenever a route changes, one
// open-addressing table of every (prefix length, prefix) pair with a per-table random secret, and
// the prefix lengths in use, longest first. A lookup probes one slot per length in use (in routed
// mode: 128 for the guests' addresses, the guests' prefixes, the uplink's prefix and 0 for the
// default route), whatever the number of guests.

import SwitchCore

public struct IPv6Route: Equatable, Sendable {
    public var prefix: IPv6Prefix
    public var port: Int
    /// The next hop; nil when the destination itself is on the link.
    public var gateway: IPAddress?
    public var metric: Int
    public var kind: IPv4Route.Kind

    public init(prefix: IPv6Prefix, port: Int, gateway: IPAddress? = nil, metric: Int = 0, kind: IPv4Route.Kind) {
        self.prefix = prefix; self.port = port; self.gateway = gateway; self.metric = metric; self.kind = kind
    }
}

public final class IPv6RouteTable {
    public let routes: [IPv6Route]
    /// Per route in flat memory for the dataplane: the port, and the next hop (0, 0: on link).
    let routePort: FixedArray<Int32>
    let gatewayHigh: FixedArray<UInt64>
    let gatewayLow: FixedArray<UInt64>
    /// Slots: the prefix's two words and its length + 1 (0: empty), and the route's index.
    let slotHigh: FixedArray<UInt64>
    let slotLow: FixedArray<UInt64>
    let slotLength: FixedArray<UInt8>
    let values: FixedArray<Int32>
    let mask: Int
    let secret: UInt64
    let lengths: FixedArray<UInt8>

    public init(_ routes: [IPv6Route], secret: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        self.routes = routes
        routePort = FixedArray(routes.map { Int32($0.port) })
        gatewayHigh = FixedArray(routes.map { $0.gateway?.high ?? 0 })
        gatewayLow = FixedArray(routes.map { $0.gateway?.low ?? 0 })
        struct Key: Hashable { var high: UInt64, low: UInt64, length: Int }
        var best: [Key: Int] = [:]
        for (i, r) in routes.enumerated() {
            let k = Key(high: r.prefix.high, low: r.prefix.low, length: r.prefix.length)
            if let j = best[k], routes[j].metric <= r.metric { continue }
            best[k] = i
        }
        var size = 16
        while size < best.count * 2 { size <<= 1 }
        var h = [UInt64](repeating: 0, count: size), l = [UInt64](repeating: 0, count: size)
        var len = [UInt8](repeating: 0, count: size), v = [Int32](repeating: -1, count: size)
        for (k, i) in best {
            var s = IPv6RouteTable.slot(k.high, k.low, k.length, secret: secret, mask: size - 1)
            while len[s] != 0 { s = (s + 1) & (size - 1) }
            h[s] = k.high; l[s] = k.low; len[s] = UInt8(k.length + 1); v[s] = Int32(i)
        }
        self.secret = secret
        mask = size - 1
        slotHigh = FixedArray(h); slotLow = FixedArray(l); slotLength = FixedArray(len); values = FixedArray(v)
        lengths = FixedArray(Set(best.keys.map { UInt8($0.length) }).sorted(by: >))
    }

    @inline(__always)
    static func slot(_ high: UInt64, _ low: UInt64, _ length: Int, secret: UInt64, mask: Int) -> Int {
        var x = (high ^ secret) &* 0x9E37_79B9_7F4A_7C15
        x ^= low &+ UInt64(length) &* 0xD6E8_FEB8_6659_FD93
        x ^= x >> 31
        x = x &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 29
        return Int(truncatingIfNeeded: x) & mask
    }

    /// The route for a destination: an index into `routes`, or -1 when none matches.
    @inline(__always)
    public func lookup(high: UInt64, low: UInt64) -> Int {
        let n = lengths.count
        for k in 0..<n {
            let len = Int(lengths[k])
            let mh: UInt64 = len >= 64 ? ~0 : (len == 0 ? 0 : ~UInt64(0) << UInt64(64 - len))
            let ml: UInt64 = len >= 128 ? ~0 : (len <= 64 ? 0 : ~UInt64(0) << UInt64(128 - len))
            let h = high & mh, l = low & ml
            var s = IPv6RouteTable.slot(h, l, len, secret: secret, mask: mask)
            while true {
                let sl = slotLength[s]
                if sl == 0 { break }
                if Int(sl) == len + 1 && slotHigh[s] == h && slotLow[s] == l { return Int(values[s]) }
                s = (s &+ 1) & mask
            }
        }
        return -1
    }

    /// Route `i`'s egress port, and its next hop (nil: on link), without touching `routes`.
    @inline(__always)
    public func port(_ i: Int) -> Int { Int(routePort[i]) }
    @inline(__always)
    public func gateway(_ i: Int) -> IPAddress? {
        let h = gatewayHigh[i], l = gatewayLow[i]
        return h == 0 && l == 0 ? nil : IPAddress(high: h, low: l)
    }
}
