// NeighbourTable: the router's neighbour cache for ARP and IPv6 neighbour discovery, with Linux's
// states and timings (net/core/neighbour.c). One table holds both families: an IPv4 address is
// kept as its IPv4-mapped IPv6 form (::ffff:A.B.C.D, RFC 4291 2.5.5.2), so one state machine and
// one bound serve both, as Linux's arp_tbl and nd_tbl share neighbour.c.
//
// States, as `ip neigh` shows them:
//   INCOMPLETE  an ARP request (or a neighbour solicitation to the solicited-node group) was
//               sent, no answer yet; frames for the neighbour wait
//               in its queue. Requests are repeated every `retransmitMilliseconds` (1 s) up to
//               `probes` (3) in all; then FAILED, and every queued frame gets an ICMP host
//               unreachable.
//   REACHABLE   confirmed by an ARP reply; for a reachable time drawn between 0.5 and 1.5 times
//               `baseReachableMilliseconds` (30 s), as Linux randomises it; then STALE.
//   STALE       the address is used as it is; the first frame sent to it starts DELAY.
//   DELAY       frames are sent; after `delayMilliseconds` (5 s) without a confirmation, PROBE.
//   PROBE       unicast ARP requests, one a second, up to `probes`; then FAILED.
//   FAILED      kept for a while so a listing shows it; the next frame for it starts again at
//               INCOMPLETE (as Linux does).
//   PERMANENT   a guest's `mac=`, or `neigh-add`: never asked, never aged.
// An ARP request or reply from a neighbour with another MAC updates it and makes it STALE (a
// reply makes it REACHABLE). Timers run in `tick`, which the engine calls between batches, never
// inside the batch loop.
//
// Bounds: at most `capacity` entries (default 4096) in an open-addressing index at most half full,
// keyed by (port, address) with Swift's Hasher (SipHash, seeded per process) and a per-table random
// secret, so a guest cannot pick destinations that collide. When full, a new neighbour is refused
// (counted by the engine) and the existing ones keep working. Each unresolved neighbour queues at
// most `queueLength` (3) frames in a pool shared by the router (`poolFrames`, 64, of 68 KiB: a GSO
// super-frame fits); frames beyond either bound are dropped and counted.

import SwitchCore

public enum NeighbourState: UInt8, Sendable, Codable, CaseIterable {
    case incomplete, reachable, stale, delay, probe, failed, permanent

    /// The name `ip neigh` prints.
    public var name: String {
        switch self {
        case .incomplete: return "INCOMPLETE"
        case .reachable: return "REACHABLE"
        case .stale: return "STALE"
        case .delay: return "DELAY"
        case .probe: return "PROBE"
        case .failed: return "FAILED"
        case .permanent: return "PERMANENT"
        }
    }

    /// Frames may be sent to the neighbour's MAC now.
    @inlinable public var isUsable: Bool {
        switch self {
        case .reachable, .stale, .delay, .probe, .permanent: return true
        case .incomplete, .failed: return false
        }
    }
}

/// A neighbour's address: IPv6, or IPv4 in its IPv4-mapped form.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64, low: UInt64
    @inlinable public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    @inlinable public init(ipv4 a: UInt32) { high = 0; low = 0xFFFF_0000_0000 | UInt64(a) }
    /// The IPv4 address when this is an IPv4-mapped one.
    @inlinable public var ipv4: UInt32? { high == 0 && low >> 32 == 0xFFFF ? UInt32(truncatingIfNeeded: low) : nil }
    @inlinable public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }

    /// `A.B.C.D` or an IPv6 address.
    public init?(_ text: String) {
        if let a = IPv4Prefix.parseAddress(text) { self.init(ipv4: a); return }
        guard !text.contains("/"), let (h, l) = IPv6Prefix.parseAddress(text) else { return nil }
        self.init(high: h, low: l)
    }

    public var description: String {
        if let a = ipv4 { return IPv4Prefix.format(a) }
        return IPv6Prefix(high: high, low: low).description
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        // IPv4 first, then IPv6, each in address order (as `ip neigh` lists families apart).
        if a.isIPv4 != b.isIPv4 { return a.isIPv4 }
        return (a.high, a.low) < (b.high, b.low)
    }
}

public struct NeighbourTimings: Equatable, Sendable {
    public var baseReachableMilliseconds: UInt32 = 30_000
    public var retransmitMilliseconds: UInt32 = 1_000
    public var delayMilliseconds: UInt32 = 5_000
    public var probes: UInt8 = 3
    /// How long a FAILED or STALE entry stays before it is collected (Linux's gc_stale_time).
    public var staleMilliseconds: UInt32 = 60_000
    public init() {}
}

/// One entry as listings show it.
public struct NeighbourEntry: Equatable, Sendable {
    public var address: IPAddress
    public var port: Int
    public var mac: MACAddress?
    public var state: NeighbourState
    /// Frames waiting for the address to resolve.
    public var queued: Int
}

/// What `tick` asks the engine to do.
public enum NeighbourAction: Equatable, Sendable {
    /// Send an ARP request (a neighbour solicitation for IPv6) for `address` on `port`: broadcast
    /// (multicast to the solicited-node group for IPv6) when nil, or unicast to `mac`.
    case request(address: IPAddress, port: Int, unicast: MACAddress?)
    /// Resolution failed: the frames queued in these pool slots get ICMP host unreachable and are
    /// released.
    case failed(address: IPAddress, port: Int, slots: [Int32])
}

public final class NeighbourTable {
    public let capacity: Int
    public let queueLength: Int
    public var timings: NeighbourTimings
    public private(set) var count = 0

    // Index: entry number + 1 per slot (0: empty).
    let index: FixedArray<Int32>
    let indexMask: Int
    let secret: UInt64
    // Entries.
    let addressHigh: FixedArray<UInt64>
    let addressLow: FixedArray<UInt64>
    let port: FixedArray<UInt16>
    let mac: FixedArray<UInt64>
    let state: FixedArray<NeighbourState>
    let inUse: FixedArray<Bool>
    let probesSent: FixedArray<UInt8>
    /// When the current state's timer runs out (milliseconds of the engine's clock).
    let deadline: FixedArray<UInt32>
    /// Queued frames: the pool slots, oldest first.
    let queue: FixedArray<Int32>
    let queueCount: FixedArray<UInt8>
    var freeEntries: [Int32]
    /// Random source for reachable times (a xorshift; the spread only has to differ per entry).
    var random: UInt64

    // The pool of queued frames (shared by every neighbour).
    public let poolFrames: Int
    public static let poolSlotSize = 69_632
    let pool: FixedBytes
    let poolLength: FixedArray<UInt32>
    let poolVnet: FixedArray<VirtioNetHeader>
    var freeSlots: [Int32]

    public init(capacity: Int = 4096, queueLength: Int = 3, poolFrames: Int = 64, timings: NeighbourTimings = NeighbourTimings()) {
        precondition(capacity >= 1 && queueLength >= 1 && poolFrames >= 1)
        self.capacity = capacity
        self.queueLength = queueLength
        self.timings = timings
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        indexMask = size - 1
        index = FixedArray(repeating: 0, count: size)
        secret = UInt64.random(in: 0...UInt64.max)
        addressHigh = FixedArray(repeating: 0, count: capacity)
        addressLow = FixedArray(repeating: 0, count: capacity)
        port = FixedArray(repeating: 0, count: capacity)
        mac = FixedArray(repeating: 0, count: capacity)
        state = FixedArray(repeating: .failed, count: capacity)
        inUse = FixedArray(repeating: false, count: capacity)
        probesSent = FixedArray(repeating: 0, count: capacity)
        deadline = FixedArray(repeating: 0, count: capacity)
        queue = FixedArray(repeating: -1, count: capacity * queueLength)
        queueCount = FixedArray(repeating: 0, count: capacity)
        freeEntries = (0..<Int32(capacity)).reversed()
        random = UInt64.random(in: 1...UInt64.max)
        self.poolFrames = poolFrames
        // Anonymous memory: pages are only touched by frames that really wait.
        pool = FixedBytes(byteCount: poolFrames * NeighbourTable.poolSlotSize, zeroed: false)
        poolLength = FixedArray(repeating: 0, count: poolFrames)
        poolVnet = FixedArray(repeating: .none, count: poolFrames)
        freeSlots = (0..<Int32(poolFrames)).reversed()
    }

    @inline(__always)
    func home(_ a: IPAddress, _ p: Int) -> Int {
        var h = Hasher()
        h.combine(secret)
        h.combine(a.high)
        h.combine(a.low)
        h.combine(UInt16(truncatingIfNeeded: p))
        return h.finalize() & indexMask
    }

    @inline(__always)
    func address(_ i: Int) -> IPAddress { IPAddress(high: addressHigh[i], low: addressLow[i]) }

    /// The entry of (address, port), or -1.
    @inline(__always)
    func find(_ a: IPAddress, _ p: Int) -> Int {
        var s = home(a, p)
        while true {
            let e = Int(index[s])
            if e == 0 { return -1 }
            if addressLow[e - 1] == a.low && addressHigh[e - 1] == a.high && Int(port[e - 1]) == p { return e - 1 }
            s = (s &+ 1) & indexMask
        }
    }

    /// A new entry, or -1 when the table is full.
    func insert(_ a: IPAddress, _ p: Int, _ s: NeighbourState, now: UInt32) -> Int {
        guard let e = freeEntries.popLast() else { return -1 }
        let i = Int(e)
        addressHigh[i] = a.high; addressLow[i] = a.low
        port[i] = UInt16(truncatingIfNeeded: p); mac[i] = 0; state[i] = s
        inUse[i] = true; probesSent[i] = 0; deadline[i] = now; queueCount[i] = 0
        var slot = home(a, p)
        while index[slot] != 0 { slot = (slot &+ 1) & indexMask }
        index[slot] = e + 1
        count += 1
        return i
    }

    /// Removes entry `i` (its queue must be empty), with backward-shift deletion in the index.
    func remove(_ i: Int) {
        var s = home(address(i), Int(port[i]))
        while Int(index[s]) != i + 1 { s = (s &+ 1) & indexMask }
        var hole = s
        var j = (s &+ 1) & indexMask
        while index[j] != 0 {
            let e = Int(index[j]) - 1
            let h = home(address(e), Int(port[e]))
            // Move j into the hole when its home is not in (hole, j] (cyclically).
            let inRange = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j)
            if !inRange {
                index[hole] = index[j]
                hole = j
            }
            j = (j &+ 1) & indexMask
        }
        index[hole] = 0
        inUse[i] = false
        freeEntries.append(Int32(i))
        count -= 1
    }

    func reachableTime() -> UInt32 {
        random ^= random << 13; random ^= random >> 7; random ^= random << 17
        let base = UInt64(timings.baseReachableMilliseconds)
        return UInt32(truncatingIfNeeded: base / 2 + random % max(base, 1))
    }

    // MARK: the dataplane's questions

    /// Outcome of `lookup`.
    public enum Resolution: Equatable {
        /// Send to this MAC.
        case mac(MACAddress)
        /// Not resolved yet: queue the frame on entry `entry`; `request` says whether the engine
        /// must send the first ARP request now.
        case pending(entry: Int, request: Bool)
        /// The table is full: drop the frame.
        case full
    }

    /// The MAC to send to `a` on port `p`, starting resolution when there is none.
    @inline(__always)
    public func resolve(_ a: UInt32, port p: Int, now: UInt32) -> Resolution { resolve(IPAddress(ipv4: a), port: p, now: now) }

    @inline(__always)
    public func resolve(_ a: IPAddress, port p: Int, now: UInt32) -> Resolution {
        let i = find(a, p)
        if i >= 0 {
            switch state[i] {
            case .reachable, .delay, .probe, .permanent:
                return .mac(MACAddress(rawValue: mac[i]))
            case .stale:
                state[i] = .delay
                deadline[i] = now &+ timings.delayMilliseconds
                return .mac(MACAddress(rawValue: mac[i]))
            case .incomplete:
                return .pending(entry: i, request: false)
            case .failed:
                state[i] = .incomplete
                probesSent[i] = 1
                deadline[i] = now &+ timings.retransmitMilliseconds
                return .pending(entry: i, request: true)
            }
        }
        let n = insert(a, p, .incomplete, now: now)
        if n < 0 { return .full }
        probesSent[n] = 1
        deadline[n] = now &+ timings.retransmitMilliseconds
        return .pending(entry: n, request: true)
    }

    /// Copies a frame into entry `i`'s queue; false when the queue or the pool is full.
    public func enqueue(_ i: Int, frame: UnsafeRawPointer, length: Int, vnet: VirtioNetHeader) -> Bool {
        let c = Int(queueCount[i])
        guard c < queueLength, length <= NeighbourTable.poolSlotSize, let slot = freeSlots.popLast() else { return false }
        (pool.base + Int(slot) * NeighbourTable.poolSlotSize).copyMemory(from: frame, byteCount: length)
        poolLength[Int(slot)] = UInt32(length)
        poolVnet[Int(slot)] = vnet
        queue[i * queueLength + c] = slot
        queueCount[i] = UInt8(c + 1)
        return true
    }

    /// A pool slot's frame.
    public func slotFrame(_ slot: Int32) -> (UnsafeMutableRawPointer, Int, VirtioNetHeader) {
        (pool.base + Int(slot) * NeighbourTable.poolSlotSize, Int(poolLength[Int(slot)]), poolVnet[Int(slot)])
    }

    /// Gives pool slots back once their frames were sent (or answered with an ICMP error).
    public func release(_ slots: [Int32]) { freeSlots.append(contentsOf: slots) }

    /// An ARP packet from `a` with `hw` arrived on port `p`. A reply (`solicited`) makes the entry
    /// REACHABLE; a request updates an existing entry (STALE when its MAC changed) or creates a
    /// STALE one when `create` (the request was for the router). Returns the pool slots of frames
    /// that were waiting for this address: the engine sends them now.
    /// `override` false (an IPv6 advertisement without the O flag) keeps a usable entry's MAC: a
    /// different one only makes it STALE (RFC 4861 7.2.5).
    @discardableResult
    public func confirm(_ a: UInt32, port p: Int, mac hw: MACAddress, solicited: Bool, create: Bool, now: UInt32) -> [Int32] {
        confirm(IPAddress(ipv4: a), port: p, mac: hw, solicited: solicited, create: create, now: now)
    }

    @discardableResult
    public func confirm(_ a: IPAddress, port p: Int, mac hw: MACAddress, solicited: Bool, create: Bool,
                        override: Bool = true, now: UInt32) -> [Int32] {
        var i = find(a, p)
        if i < 0 {
            guard solicited || create else { return [] }
            i = insert(a, p, .stale, now: now)
            if i < 0 { return [] }
        }
        if state[i] == .permanent { return [] }
        let changed = mac[i] != hw.rawValue
        if changed && !override && state[i].isUsable {
            if solicited { state[i] = .stale; deadline[i] = now &+ timings.staleMilliseconds }
            return []
        }
        mac[i] = hw.rawValue
        if solicited {
            state[i] = .reachable
            deadline[i] = now &+ reachableTime()
        } else if changed || !state[i].isUsable {
            state[i] = .stale
            deadline[i] = now &+ timings.staleMilliseconds
        }
        probesSent[i] = 0
        return takeQueue(i)
    }

    func takeQueue(_ i: Int) -> [Int32] {
        let c = Int(queueCount[i])
        if c == 0 { return [] }
        let slots = (0..<c).map { queue[i * queueLength + $0] }
        queueCount[i] = 0
        return slots
    }

    // MARK: configuration and listings

    /// A permanent entry (`neigh-add`, a guest's `mac=`); false when the table is full.
    @discardableResult
    public func setPermanent(_ a: UInt32, port p: Int, mac hw: MACAddress, now: UInt32) -> (ok: Bool, released: [Int32]) {
        setPermanent(IPAddress(ipv4: a), port: p, mac: hw, now: now)
    }

    @discardableResult
    public func setPermanent(_ a: IPAddress, port p: Int, mac hw: MACAddress, now: UInt32) -> (ok: Bool, released: [Int32]) {
        var i = find(a, p)
        if i < 0 { i = insert(a, p, .permanent, now: now) }
        if i < 0 { return (false, []) }
        mac[i] = hw.rawValue
        state[i] = .permanent
        return (true, takeQueue(i))
    }

    /// Forgets (address, port); returns the pool slots of frames that were queued for it.
    @discardableResult
    public func remove(_ a: UInt32, port p: Int) -> [Int32]? { remove(IPAddress(ipv4: a), port: p) }

    @discardableResult
    public func remove(_ a: IPAddress, port p: Int) -> [Int32]? {
        let i = find(a, p)
        if i < 0 { return nil }
        let slots = takeQueue(i)
        remove(i)
        return slots
    }

    /// Forgets every entry (of `port`, or all) that is not permanent unless `permanentToo`.
    @discardableResult
    public func flush(port p: Int? = nil, permanentToo: Bool = false) -> [Int32] {
        var slots: [Int32] = []
        for i in 0..<capacity where inUse[i] {
            if let p, Int(port[i]) != p { continue }
            if state[i] == .permanent && !permanentToo { continue }
            slots += takeQueue(i)
            remove(i)
        }
        return slots
    }

    public func entries() -> [NeighbourEntry] {
        (0..<capacity).filter { inUse[$0] }.map { i in
            NeighbourEntry(address: address(i), port: Int(port[i]),
                           mac: state[i].isUsable || mac[i] != 0 ? MACAddress(rawValue: mac[i]) : nil,
                           state: state[i], queued: Int(queueCount[i]))
        }
    }

    // MARK: timers

    /// Runs the state machine's timers up to `now` (call every 100 ms or so, between batches).
    public func tick(now: UInt32) -> [NeighbourAction] {
        var actions: [NeighbourAction] = []
        for i in 0..<capacity where inUse[i] {
            // Wrapping time: a deadline is due when it is not in the future.
            let due = Int32(bitPattern: now &- deadline[i]) >= 0
            if !due { continue }
            switch state[i] {
            case .incomplete, .probe:
                if probesSent[i] < timings.probes {
                    probesSent[i] += 1
                    deadline[i] = now &+ timings.retransmitMilliseconds
                    actions.append(.request(address: address(i), port: Int(port[i]),
                                            unicast: state[i] == .probe ? MACAddress(rawValue: mac[i]) : nil))
                } else {
                    state[i] = .failed
                    deadline[i] = now &+ timings.staleMilliseconds
                    let slots = takeQueue(i)
                    if !slots.isEmpty { actions.append(.failed(address: address(i), port: Int(port[i]), slots: slots)) }
                }
            case .reachable:
                state[i] = .stale
                deadline[i] = now &+ timings.staleMilliseconds
            case .delay:
                state[i] = .probe
                probesSent[i] = 1
                deadline[i] = now &+ timings.retransmitMilliseconds
                actions.append(.request(address: address(i), port: Int(port[i]), unicast: MACAddress(rawValue: mac[i])))
            case .stale, .failed:
                remove(i)
            case .permanent:
                break
            }
        }
        return actions
    }
}
