// RouteTable: the router's IPv4 routes and their longest-prefix match.
//
// What `ip route` shows for one table: connected (the uplink's prefix), one host route per guest
// address (vif-route's `ip route add A dev vifN`), static routes (`route-add`) and the default
// route. The table is compiled into an immutable snapshot whenever a route changes, as the
// bridge's filter is: routes are chosen there (for one prefix, the lowest metric wins, so a
// guest's emulated `-emu` tap with metric 1 beats its PV vif with metric 2 while both exist), and
// the dataplane only looks up.
//
// Lookup: one open-addressing table of every (prefix length, prefix) pair, and the list of
// prefix lengths in use, longest first; a lookup probes one slot per length until one matches, so
// it costs as many probes as there are distinct lengths (a handful), whatever the number of guests.
// The hash is keyed with a per-table random secret, so the set of guest addresses cannot be chosen
// to make probe sequences long; probing is bounded by the table's load (at most half full).

import SwitchCore

public struct IPv4Route: Equatable, Sendable {
    public enum Kind: String, Sendable, Codable {
        /// The uplink's own prefix: its hosts are neighbours.
        case connected
        /// One address of a guest port (vif-route's host route).
        case host
        /// Added with `route-add`.
        case `static`
        /// 0.0.0.0/0 via the router's gateway.
        case `default`
    }
    public var prefix: IPv4Prefix
    /// The egress port's index.
    public var port: Int
    /// The next hop; 0 when the destination itself is on the link (connected, host, `dev PORT`).
    public var gateway: UInt32
    public var metric: Int
    public var kind: Kind

    public init(prefix: IPv4Prefix, port: Int, gateway: UInt32 = 0, metric: Int = 0, kind: Kind) {
        self.prefix = prefix; self.port = port; self.gateway = gateway; self.metric = metric; self.kind = kind
    }

    public var prefixLength: Int { prefix.mask.nonzeroBitCount }
}

public final class IPv4RouteTable {
    /// Every route given, in the order given (for listings).
    public let routes: [IPv4Route]
    /// The same in flat memory, for the dataplane (reading an element of `routes` would touch the
    /// array's reference count on every frame).
    let flat: FixedArray<IPv4Route>
    /// Slot keys: prefix length << 32 | prefix, + 1 (0: empty); values: index into `routes`.
    let keys: FixedArray<UInt64>
    let values: FixedArray<Int32>
    let mask: Int
    let secret: UInt64
    /// Prefix lengths present, longest first.
    let lengths: FixedArray<UInt8>

    public init(_ routes: [IPv4Route], secret: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        self.routes = routes
        flat = FixedArray(routes)
        let secret = secret | 1
        var best: [UInt64: Int] = [:]
        for (i, r) in routes.enumerated() {
            let k = IPv4RouteTable.key(length: r.prefixLength, prefix: r.prefix.address)
            if let j = best[k], routes[j].metric <= r.metric { continue }
            best[k] = i
        }
        var size = 16
        while size < best.count * 2 { size <<= 1 }
        var slotKeys = [UInt64](repeating: 0, count: size)
        var slotValues = [Int32](repeating: -1, count: size)
        for (k, i) in best {
            var s = IPv4RouteTable.slot(k, secret: secret, mask: size - 1)
            while slotKeys[s] != 0 { s = (s + 1) & (size - 1) }
            slotKeys[s] = k &+ 1
            slotValues[s] = Int32(i)
        }
        self.secret = secret
        mask = size - 1
        keys = FixedArray(slotKeys)
        values = FixedArray(slotValues)
        lengths = FixedArray(Set(best.values.map { UInt8(routes[$0].prefixLength) }).sorted(by: >))
    }

    @inline(__always)
    static func key(length: Int, prefix: UInt32) -> UInt64 { UInt64(length) << 32 | UInt64(prefix) }

    @inline(__always)
    static func slot(_ key: UInt64, secret: UInt64, mask: Int) -> Int {
        var h = (key ^ secret) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 31
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 29
        return Int(truncatingIfNeeded: h) & mask
    }

    /// Route `i` (an index `lookup` returned), without touching `routes`' reference count.
    @inline(__always)
    public func route(_ i: Int) -> IPv4Route { flat[i] }

    /// The route for `destination`: an index into `routes`, or -1 when none matches.
    @inline(__always)
    public func lookup(_ destination: UInt32) -> Int {
        let lengths = lengths.base, n = self.lengths.count
        let keys = keys.base, values = values.base
        for l in 0..<n {
            let len = Int(lengths[l])
            let m: UInt32 = len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len)
            let k = IPv4RouteTable.key(length: len, prefix: destination & m) &+ 1
            var s = IPv4RouteTable.slot(k &- 1, secret: secret, mask: mask)
            while true {
                let x = keys[s]
                if x == k { return Int(values[s]) }
                if x == 0 { break }
                s = (s &+ 1) & mask
            }
        }
        return -1
    }
}
