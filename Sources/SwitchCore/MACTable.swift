// MACTable: the forwarding database (FDB) of one bridge.
//
// Design (after Open vSwitch's lib/mac-learning.h and VPP's l2 FIB):
// - Key: one 64-bit word, VLAN ID (12 bits) << 48 | MAC (48 bits) (`FDBKey`). Key 0 (VLAN 0, MAC
//   0) can never be learned, so 0 marks an empty slot.
// - Storage: an open-addressing hash index (linear probing, at most half full, backward-shift
//   deletion so there are no tombstones, no entry ever more than `maxProbe` slots from its home)
//   of 16-byte slots, and a slab of entries holding the
//   port, flags, last-seen time and LRU links. A slot holds the key, the entry number and a copy of
//   the port, so a forwarding lookup reads one cache line (four slots) and never the slab. All memory is allocated once, for the configured capacity; the
//   table never allocates while forwarding.
// - Ageing: every learned entry sits in its port's LRU list (doubly linked through the slab).
//   A learn hit refreshes `lastSeen` and moves the entry to the tail of the list at most once per
//   second of the coarse clock, so the per-frame cost stays a couple of stores. `age(now:)` walks
//   each port's list from its head and stops at the first entry young enough.
// - Static entries never age and never move: they are in their port's static list (linked through
//   the same slab links), not in an LRU list, and a learn of the same key on another port leaves
//   them alone. Removing a port walks its two lists, never the index.
// - Capacity and fair eviction (MAC-flood defence): when the learned entries reach capacity, the
//   port that holds the most learned entries loses its least recently used one, so one guest
//   flooding random source MACs only evicts its own addresses, not its neighbours'. The ports sit
//   in buckets by learned count (a doubly linked list of ports per count, and the highest count
//   with a port in it); a count moves by one at a time, so keeping the buckets costs a few stores
//   per change and the victim is the head of the highest bucket: O(1), no scan of the ports
//   during a flood. The bucket heads take 2 bytes per entry of capacity.
// - MAC moves: a learned address seen on another port moves there (counted in `moves`).
// - Batched lookup (`lookup(keys:count:ports:)`, used by the forward stage): at 1M entries the index
//   (2M slots, 32 MiB) is larger than the caches, so nearly every lookup misses to memory. One
//   lookup at a time, each miss is only found when its probe runs, and the out-of-order window
//   overlaps just a few of them. The batched lookup first computes every key's home slot and
//   issues a software prefetch for it (CPrefetch: Swift has no prefetch builtin), then probes, so the
//   misses of a whole batch are in flight together and the probes mostly hit in L1. Same probes,
//   same results as one `lookup` per key; it costs a hash per key more, noise for small tables.
// - Keyed hash (`home`): a guest chooses its source MACs, so a public hash would let it compute
//   offline thousands of MACs with one home slot and make every learn and lookup near it walk
//   the whole run. The home is murmur3's 64-bit finaliser of the key XORed with a per-table random
//   secret: the finaliser's avalanche makes colliding keys under one secret say nothing about
//   another, and the secret never leaves the table. Probe sequences are bounded as well: an entry
//   whose home and the `maxProbe` slots after it are all taken is not stored (`crowded`, counted
//   in `crowdedRefusals`; its frame is still forwarded, only not learned), so a lookup never
//   probes more than `maxProbe + 1` slots, whatever keys the table was fed. At half load a random
//   secret makes such a run practically impossible (runs of linear probing at load 1/2 stay near
//   log n).
// - Thread safety: none. The table belongs to its bridge's dataplane thread; the control plane
//   reaches it only through that thread (see BridgeEngine).
//
// Time is a UInt32 count of milliseconds that may wrap; ages use wrapping subtraction.

internal import CPrefetch

/// (VLAN, MAC) packed in one machine word.
public struct FDBKey: Hashable, Sendable {
    public let rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(vlan: UInt16, mac: MACAddress) {
        rawValue = UInt64(vlan & 0xFFF) << 48 | mac.rawValue
    }
    @inlinable public var vlan: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 48) }
    @inlinable public var mac: MACAddress { MACAddress(rawValue: rawValue) }
}

public struct FDBEntry: Equatable, Sendable {
    public var vlan: UInt16
    public var mac: MACAddress
    public var port: UInt16
    public var isStatic: Bool
    /// Milliseconds since last seen (0 for static entries).
    public var ageMilliseconds: UInt32
    /// The switch's own address (a local entry, also static); not saved with the configuration:
    /// it follows its TAP port.
    public var isLocal: Bool = false
}

/// One slot of the FDB's hash index: 16 bytes, four to a cache line.
@usableFromInline
struct FDBSlot: Sendable {
    /// `FDBKey.rawValue`, 0 when the slot is empty.
    var key: UInt64
    /// Index of the entry in the slab.
    var entry: UInt32
    /// Copy of the entry's port, so that a lookup needs nothing but the slot.
    var port: UInt16
    var reserved: UInt16 = 0

    static let empty = FDBSlot(key: 0, entry: .max, port: 0)
}

public enum LearnResult: Equatable {
    case refreshed
    case learned
    case moved(from: UInt16)
    /// A static entry holds this key on another port; nothing changed.
    case staticConflict
    /// The key's home slot and the `maxProbe` after it are all taken: not learned (the bounded
    /// probe sequence; only keys aimed at one home slot get here).
    case crowded
    /// The key is one of the switch's own addresses (a local entry), held by another port: the
    /// frame's source is a spoof or a loop (the bridge drops it: `own-address-source`).
    case ownAddress
    /// The port already holds its limit of learned MACs (port security, `max-macs`): a new source
    /// is not learned (the bridge drops its frame: `mac-limit`).
    case limitReached
}

public final class MACTable {
    public let capacity: Int
    /// Entries that were evicted to make room for new ones.
    public private(set) var evictions: UInt64 = 0
    /// Learned addresses that moved to another port.
    public private(set) var moves: UInt64 = 0
    /// Entries not stored because their probe sequence was full (`crowded`).
    public private(set) var crowdedRefusals: UInt64 = 0
    /// Longest probe sequence: no entry is stored further than this from its home slot.
    public static let maxProbe = 64
    /// The hash's secret (random per table unless a test fixes it).
    @usableFromInline let secret: UInt64
    public private(set) var count: Int = 0
    public private(set) var learnedCount: Int = 0

    static let none: UInt32 = .max
    static let flagStatic: UInt8 = 1
    /// A local entry (the switch's own address): static, and a source that claims it elsewhere
    /// is refused.
    static let flagLocal: UInt8 = 2

    // Hash index.
    let slotBits: Int
    let slotMask: Int
    /// 64 - slotBits: the hash keeps the top slotBits bits of the product.
    let hashShift: UInt64
    let slots: FixedArray<FDBSlot>

    // Entry slab.
    let keys: FixedArray<UInt64>
    let ports: FixedArray<UInt16>
    let flags: FixedArray<UInt8>
    let lastSeen: FixedArray<UInt32>
    /// Second of the last move to the LRU tail (approximate LRU, see the header).
    let lruStamp: FixedArray<UInt32>
    let prev: FixedArray<UInt32>
    let next: FixedArray<UInt32>
    var freeHead: UInt32

    // Per-port LRU lists of learned entries and their lengths.
    public let maxPorts: Int
    /// Per-port lists through `prev`/`next`: list p is port p's LRU list of learned entries, list
    /// maxPorts + p its list of static entries.
    let listHead: FixedArray<UInt32>
    let listTail: FixedArray<UInt32>
    let portLearned: FixedArray<Int32>
    /// Learned entries each port may hold (port security), 0: no limit.
    let portLimit: FixedArray<Int32>
    /// Ports by learned count: `bucketHead[c]` is the first port with c learned entries (ports
    /// with none are in no bucket), `bucketNext`/`bucketPrev` link the ports of one count, and
    /// `top[0]` is the highest count any port has (in raw memory, as the other per-frame state:
    /// no exclusivity check per access).
    let bucketHead: FixedArray<UInt16>
    let bucketNext: FixedArray<UInt16>
    let bucketPrev: FixedArray<UInt16>
    let top: FixedArray<Int32>
    static let noPort: UInt16 = .max

    /// A table for `capacity` entries (learned and static together) on ports 0..<maxPorts.
    /// `secret` fixes the hash's key (tests only; nil: random).
    public init(capacity: Int, maxPorts: Int = 1024, secret: UInt64? = nil) {
        precondition(capacity >= 1 && capacity <= 1 << 28)
        self.secret = secret ?? UInt64.random(in: 0...UInt64.max)
        self.capacity = capacity
        self.maxPorts = maxPorts
        var bits = 4
        while (1 << bits) < capacity * 2 { bits += 1 }
        slotBits = bits
        slotMask = (1 << bits) - 1
        hashShift = UInt64(64 - bits)
        slots = FixedArray(repeating: FDBSlot.empty, count: 1 << bits)
        keys = FixedArray(repeating: 0, count: capacity)
        ports = FixedArray(repeating: 0, count: capacity)
        flags = FixedArray(repeating: 0, count: capacity)
        lastSeen = FixedArray(repeating: 0, count: capacity)
        lruStamp = FixedArray(repeating: 0, count: capacity)
        prev = FixedArray(repeating: MACTable.none, count: capacity)
        // The free list threads through `next`.
        next = FixedArray(count: capacity) { i in i + 1 < capacity ? UInt32(i + 1) : MACTable.none }
        freeHead = 0
        listHead = FixedArray(repeating: MACTable.none, count: 2 * maxPorts)
        listTail = FixedArray(repeating: MACTable.none, count: 2 * maxPorts)
        portLearned = FixedArray(repeating: 0, count: maxPorts)
        portLimit = FixedArray(repeating: 0, count: maxPorts)
        precondition(maxPorts < Int(MACTable.noPort))
        bucketHead = FixedArray(repeating: MACTable.noPort, count: capacity + 1)
        bucketNext = FixedArray(repeating: MACTable.noPort, count: maxPorts)
        bucketPrev = FixedArray(repeating: MACTable.noPort, count: maxPorts)
        top = FixedArray(repeating: 0, count: 1)
    }

    /// One more (delta 1) or one fewer (delta -1) learned entry on port `p`: the port moves to the
    /// next bucket.
    @inline(__always)
    func addLearned(_ p: Int, _ delta: Int32) {
        let old = portLearned[p]
        let new = old &+ delta
        portLearned[p] = new
        let port = UInt16(truncatingIfNeeded: p)
        if old > 0 {
            let pr = bucketPrev[p], nx = bucketNext[p]
            if pr == MACTable.noPort { bucketHead[Int(old)] = nx } else { bucketNext[Int(pr)] = nx }
            if nx != MACTable.noPort { bucketPrev[Int(nx)] = pr }
        }
        if new > 0 {
            let h = bucketHead[Int(new)]
            bucketNext[p] = h
            bucketPrev[p] = MACTable.noPort
            if h != MACTable.noPort { bucketPrev[Int(h)] = port }
            bucketHead[Int(new)] = port
        }
        let t = top[0]
        if new > t {
            top[0] = new
        } else if old == t && bucketHead[Int(old)] == MACTable.noPort {
            top[0] = new  // the highest bucket emptied: the next one down has this port
        }
    }

    /// Bytes of memory per entry of capacity (index slots included), for capacity planning.
    public var bytesPerEntry: Double {
        let slab = capacity * (8 + 2 + 1 + 4 + 4 + 4 + 4 + 2)  // the last 2: the ports-by-count bucket heads
        let index = (1 << slotBits) * MemoryLayout<FDBSlot>.stride
        return Double(slab + index) / Double(capacity)
    }

    @inline(__always)
    func home(_ key: UInt64) -> Int {
        var x = key ^ secret
        x ^= x &>> 33
        x &*= 0xFF51_AFD7_ED55_8CCD
        x ^= x &>> 33
        x &*= 0xC4CE_B9FE_1A85_EC53
        x ^= x &>> 33
        return Int(truncatingIfNeeded: x &>> hashShift)
    }

    /// The home slot of (vlan, mac) in this table, for tests that aim keys at one slot.
    public func homeSlot(vlan: UInt16, mac: MACAddress) -> Int { home(FDBKey(vlan: vlan, mac: mac).rawValue) }
    /// Slots in the index.
    public var slotCount: Int { slotMask + 1 }
    /// Slots a lookup of (vlan, mac) reads, found or not: at most `maxProbe + 1`.
    public func probeLength(vlan: UInt16, mac: MACAddress) -> Int {
        let key = FDBKey(vlan: vlan, mac: mac).rawValue
        var s = home(key)
        for n in 1...(MACTable.maxProbe + 1) {
            let k = slots[s].key
            if k == key || k == 0 { return n }
            s = (s &+ 1) & slotMask
        }
        return MACTable.maxProbe + 1
    }

    /// Slot of `key` in the index, or -1.
    @inline(__always)
    func slot(of key: UInt64) -> Int { probe(key, from: home(key)) }

    /// Slot of `key` in the index searching from its home slot `s`, or -1.
    @inline(__always)
    func probe(_ key: UInt64, from home: Int) -> Int {
        var s = home
        var left = MACTable.maxProbe
        while true {
            let k = slots[s].key
            if k == key { return s }
            if k == 0 || left == 0 { return -1 }
            left &-= 1
            s = (s &+ 1) & slotMask
        }
    }

    /// The free slot a new `key` would take, or -1 when its home and the `maxProbe` slots after
    /// it are all taken.
    @inline(__always)
    func freeSlot(for key: UInt64) -> Int {
        var s = home(key)
        for _ in 0...MACTable.maxProbe {
            if slots[s].key == 0 { return s }
            s = (s &+ 1) & slotMask
        }
        return -1
    }

    /// The port an address is on in a VLAN, or -1 when unknown. One hash probe in the common case.
    @inlinable @inline(__always)
    public func lookup(vlan: UInt16, mac: MACAddress) -> Int {
        lookup(key: FDBKey(vlan: vlan, mac: mac).rawValue)
    }

    @usableFromInline @inline(__always)
    func lookup(key: UInt64) -> Int {
        let s = slot(of: key)
        return s < 0 ? -1 : Int(slots[s].port)
    }

    /// Looks up `count` keys at once: `ports[i]` becomes the port of `keys[i]` (an `FDBKey.rawValue`),
    /// or -1 when unknown, exactly as `lookup(key:)` answers each nonzero key. Key 0 (VLAN 0, MAC 0, never
    /// learned) is never looked up and answers -1, so a caller marks the frames that need no lookup
    /// (multicast, dropped) with 0 and keeps its keys and ports indexed by frame.
    ///
    /// Two passes: the first prefetches every key's home slot, the second probes. The misses of the
    /// whole batch then overlap instead of being taken one after another (see the header). Allocates
    /// nothing; `keys` and `ports` must hold `count` elements and may not overlap (`ports` holds
    /// each home slot between the two passes, so the hash is computed once).
    public func lookup(keys: UnsafePointer<UInt64>, count: Int, ports: UnsafeMutablePointer<Int32>) {
        let slots = self.slots.base
        for i in 0..<count {
            let k = keys[i]
            let h = home(k)
            ports[i] = Int32(truncatingIfNeeded: h)  // < 2^29 slots: fits
            if k != 0 { CPrefetch_read(slots + h) }
        }
        for i in 0..<count {
            let k = keys[i]
            if k == 0 { ports[i] = -1; continue }
            let s = probe(k, from: Int(ports[i]))
            ports[i] = s < 0 ? -1 : Int32(truncatingIfNeeded: slots[s].port)
        }
    }

    /// Learns that `mac` in `vlan` was seen on `port` at `now` (milliseconds).
    @discardableResult @inline(__always)
    public func learn(vlan: UInt16, mac: MACAddress, port: UInt16, now: UInt32) -> LearnResult {
        let key = FDBKey(vlan: vlan, mac: mac).rawValue
        let s = slot(of: key)
        if s >= 0 {
            let e = Int(slots[s].entry)
            if flags[e] & MACTable.flagStatic != 0 {
                if ports[e] == port { return .refreshed }
                return flags[e] & MACTable.flagLocal != 0 ? .ownAddress : .staticConflict
            }
            let old = ports[e]
            lastSeen[e] = now
            if old == port {
                let second = now / 1000
                if lruStamp[e] != second {
                    lruStamp[e] = second
                    lruUnlink(e, port: Int(old))
                    lruAppend(e, port: Int(old))
                }
                return .refreshed
            }
            let limit = portLimit[Int(port)]
            if limit > 0 && portLearned[Int(port)] >= limit { return .limitReached }
            lruUnlink(e, port: Int(old))
            addLearned(Int(old), -1)
            ports[e] = port
            slots[s].port = port
            lruStamp[e] = now / 1000
            lruAppend(e, port: Int(port))
            addLearned(Int(port), 1)
            moves &+= 1
            return .moved(from: old)
        }
        let limit = portLimit[Int(port)]
        if limit > 0 && portLearned[Int(port)] >= limit { return .limitReached }
        if count >= capacity && !evictOne() { return .staticConflict }
        let free = freeSlot(for: key)
        if free < 0 { crowdedRefusals &+= 1; return .crowded }
        let e = allocateEntry(key: key, port: port, slot: free)
        flags[e] = 0
        lastSeen[e] = now
        lruStamp[e] = now / 1000
        lruAppend(e, port: Int(port))
        addLearned(Int(port), 1)
        learnedCount += 1
        return .learned
    }

    /// Adds or replaces a static entry. Fails only when the table is full of static entries.
    @discardableResult
    public func addStatic(vlan: UInt16, mac: MACAddress, port: UInt16) -> Bool {
        let key = FDBKey(vlan: vlan, mac: mac).rawValue
        let s = slot(of: key)
        if s >= 0 {
            let e = Int(slots[s].entry)
            if flags[e] & MACTable.flagStatic == 0 {
                lruUnlink(e, port: Int(ports[e]))
                addLearned(Int(ports[e]), -1)
                learnedCount -= 1
            } else {
                staticUnlink(e, port: Int(ports[e]))
            }
            ports[e] = port
            slots[s].port = port
            flags[e] = MACTable.flagStatic
            staticAppend(e, port: Int(port))
            return true
        }
        if count >= capacity && !evictOne() { return false }
        let free = freeSlot(for: key)
        if free < 0 { crowdedRefusals &+= 1; return false }
        let e = allocateEntry(key: key, port: port, slot: free)
        flags[e] = MACTable.flagStatic
        lastSeen[e] = 0
        staticAppend(e, port: Int(port))
        return true
    }

    /// Adds or replaces a local entry: static, never aged or moved, and its MAC refused as a
    /// source on every other port (the Linux bridge's local entries, stricter).
    @discardableResult
    public func addLocal(vlan: UInt16, mac: MACAddress, port: UInt16) -> Bool {
        guard addStatic(vlan: vlan, mac: mac, port: port) else { return false }
        let s = slot(of: FDBKey(vlan: vlan, mac: mac).rawValue)
        flags[Int(slots[s].entry)] = MACTable.flagStatic | MACTable.flagLocal
        return true
    }

    /// True when (vlan, mac) is a local entry.
    public func isLocal(vlan: UInt16, mac: MACAddress) -> Bool {
        let s = slot(of: FDBKey(vlan: vlan, mac: mac).rawValue)
        return s >= 0 && flags[Int(slots[s].entry)] & MACTable.flagLocal != 0
    }

    /// Removes an entry (static or learned); false when there was none.
    @discardableResult
    public func remove(vlan: UInt16, mac: MACAddress) -> Bool {
        let s = slot(of: FDBKey(vlan: vlan, mac: mac).rawValue)
        guard s >= 0 else { return false }
        removeEntry(Int(slots[s].entry), slot: s)
        return true
    }

    /// Removes every entry on `port`, static ones too when `includingStatic`.
    public func flush(port: UInt16, includingStatic: Bool = true) {
        var e = listHead[Int(port)]
        while e != MACTable.none {
            let n = next[Int(e)]
            removeEntry(Int(e), slot: slot(of: keys[Int(e)]))
            e = n
        }
        if includingStatic {
            e = listHead[maxPorts + Int(port)]
            while e != MACTable.none {
                let n = next[Int(e)]
                removeEntry(Int(e), slot: slot(of: keys[Int(e)]))
                e = n
            }
        }
    }

    /// Removes every learned entry (static ones stay).
    public func flushLearned() {
        for p in 0..<maxPorts where listHead[p] != MACTable.none { flush(port: UInt16(p), includingStatic: false) }
    }

    /// Removes learned entries not seen for more than `ageing` milliseconds; returns how many.
    @discardableResult
    public func age(now: UInt32, ageing: UInt32) -> Int {
        var removed = 0
        for p in 0..<maxPorts {
            var e = listHead[p]
            while e != MACTable.none {
                let n = next[Int(e)]
                let age = now &- lastSeen[Int(e)]
                // Entries are only approximately ordered (refreshed once a second), so allow one
                // second of slack before concluding the rest of the list is younger.
                if age > ageing {
                    removeEntry(Int(e), slot: slot(of: keys[Int(e)]))
                    removed += 1
                } else if ageing > 1000 && age < ageing - 1000 {
                    // (Written as a subtraction: `age + 1000` would overflow for ageing times near
                    // UInt32.max.)
                    break
                }
                e = n
            }
        }
        return removed
    }

    /// Learned entries held by `port`.
    public func learnedCount(port: UInt16) -> Int { Int(portLearned[Int(port)]) }

    /// At most `limit` learned entries on `port` (0: no limit). Entries it holds beyond a lowered
    /// limit stay until they age or move; only new ones are refused.
    public func setLimit(port: UInt16, _ limit: Int) { portLimit[Int(port)] = Int32(clamping: limit) }
    public func limit(port: UInt16) -> Int { Int(portLimit[Int(port)]) }

    /// Every entry, for `fdb` listings (allocates: control path only).
    public func entries(now: UInt32) -> [FDBEntry] {
        var out: [FDBEntry] = []
        out.reserveCapacity(count)
        for s in 0...slotMask where slots[s].key != 0 {
            let e = Int(slots[s].entry)
            let k = FDBKey(rawValue: keys[e])
            let st = flags[e] & MACTable.flagStatic != 0
            out.append(FDBEntry(vlan: k.vlan, mac: k.mac, port: ports[e], isStatic: st,
                                ageMilliseconds: st ? 0 : now &- lastSeen[e], isLocal: flags[e] & MACTable.flagLocal != 0))
        }
        return out
    }

    // MARK: internals

    @inline(__always)
    func allocateEntry(key: UInt64, port: UInt16, slot s: Int) -> Int {
        let e = Int(freeHead)
        freeHead = next[e]
        keys[e] = key
        prev[e] = MACTable.none
        next[e] = MACTable.none
        slots[s] = FDBSlot(key: key, entry: UInt32(e), port: port)
        ports[e] = port
        count += 1
        return e
    }

    func removeEntry(_ e: Int, slot s: Int) {
        if flags[e] & MACTable.flagStatic == 0 {
            lruUnlink(e, port: Int(ports[e]))
            addLearned(Int(ports[e]), -1)
            learnedCount -= 1
        } else {
            staticUnlink(e, port: Int(ports[e]))
        }
        flags[e] = 0
        next[e] = freeHead
        freeHead = UInt32(e)
        count -= 1
        // Backward-shift deletion keeps every probe chain unbroken without tombstones.
        var hole = s
        var j = s
        while true {
            j = (j + 1) & slotMask
            let k = slots[j].key
            if k == 0 { break }
            let h = home(k)
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let inRange = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j)
            if !inRange {
                slots[hole] = slots[j]
                hole = j
            }
        }
        slots[hole] = FDBSlot.empty
    }

    /// Fair eviction: the least recently used entry of the port with the most learned entries.
    func evictOne() -> Bool {
        let t = top[0]
        guard t > 0 else { return false }
        let victimPort = Int(bucketHead[Int(t)])
        let e = Int(listHead[victimPort])
        removeEntry(e, slot: slot(of: keys[e]))
        evictions &+= 1
        return true
    }

    @inline(__always)
    func unlink(_ e: Int, list l: Int) {
        let p = prev[e], n = next[e]
        if p == MACTable.none { listHead[l] = n } else { next[Int(p)] = n }
        if n == MACTable.none { listTail[l] = p } else { prev[Int(n)] = p }
        prev[e] = MACTable.none
        next[e] = MACTable.none
    }

    @inline(__always)
    func append(_ e: Int, list l: Int) {
        let t = listTail[l]
        prev[e] = t
        next[e] = MACTable.none
        if t == MACTable.none { listHead[l] = UInt32(e) } else { next[Int(t)] = UInt32(e) }
        listTail[l] = UInt32(e)
    }

    @inline(__always) func lruUnlink(_ e: Int, port: Int) { unlink(e, list: port) }
    @inline(__always) func lruAppend(_ e: Int, port: Int) { append(e, list: port) }
    func staticUnlink(_ e: Int, port: Int) { unlink(e, list: maxPorts + port) }
    func staticAppend(_ e: Int, port: Int) { append(e, list: maxPorts + port) }

    /// The port the fair eviction would take an entry from now (the most learned entries), for tests.
    public var evictionVictim: Int? { top[0] > 0 ? Int(bucketHead[Int(top[0])]) : nil }

}
