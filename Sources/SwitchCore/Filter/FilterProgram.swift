// FilterProgram: a FilterRuleSet compiled for the dataplane, and its evaluator.
//
// Compilation happens on a configuration change (rules, ports); the program is immutable after
// that except for its counters, and the engine swaps whole programs between batches, so a frame
// is judged by the old rule set or the new one, never a mix.
//
// Why the cost does not grow with the number of rules of the shape Xen hosts write:
//   - Index by ingress port. Every chain has one rule list per ingress port (and one for "no
//     ingress port", the OUTPUT case). `-i` and `--logical-in` are decided at compile time, so a
//     port's list holds only the rules that can match its frames: 1000 `-i vifN -s ! MAC -j DROP`
//     rules become one rule in each vif's list.
//   - Hash sets for exact values. A run of consecutive rules in a list that differ only in one
//     exact value (source or destination MAC, IPv4 source or destination address) and the
//     counter they bump becomes one node: check the shared part, then one hash lookup finds the
//     one rule of the run that can match. Keys in a run are distinct, so at most one rule of it
//     matches, which keeps first-match order and CONTINUE semantics exactly.
//   - `-o` is a per-rule bitmap of egress ports, tested in one load.
// Everything else follows ebt_do_table: rule order, CONTINUE, RETURN, jumps with a stack, user
// chain fall-off by policy, counters of a rule bumped when all its matches hold.
//
// Memory is allocated at compile time; `evaluate` neither allocates nor retains.

public final class FilterProgram {
    // Targets in CompiledRule.target; >= 0 is a chain index.
    static let accept: Int32 = -1, drop: Int32 = -2, continueTarget: Int32 = -3, returnTarget: Int32 = -4

    struct Check {
        static let src: UInt32 = 1 << 0, dst: UInt32 = 1 << 1, proto: UInt32 = 1 << 2, length: UInt32 = 1 << 3
        static let vlanID: UInt32 = 1 << 4, vlanPrio: UInt32 = 1 << 5, vlanEncap: UInt32 = 1 << 6
        static let arpOp: UInt32 = 1 << 7, arpHType: UInt32 = 1 << 8, arpPType: UInt32 = 1 << 9
        static let arpIPSrc: UInt32 = 1 << 10, arpIPDst: UInt32 = 1 << 11, arpMACSrc: UInt32 = 1 << 12
        static let arpMACDst: UInt32 = 1 << 13, arpGrat: UInt32 = 1 << 14
        static let ipSrc: UInt32 = 1 << 15, ipDst: UInt32 = 1 << 16, ipTOS: UInt32 = 1 << 17, ipProto: UInt32 = 1 << 18
        static let ipSport: UInt32 = 1 << 19, ipDport: UInt32 = 1 << 20
        static let ip6Src: UInt32 = 1 << 21, ip6Dst: UInt32 = 1 << 22, ip6TClass: UInt32 = 1 << 23, ip6Proto: UInt32 = 1 << 24
        static let ip6Sport: UInt32 = 1 << 25, ip6Dport: UInt32 = 1 << 26
        static let amongSrc: UInt32 = 1 << 27, amongDst: UInt32 = 1 << 28
        static let out: UInt32 = 1 << 29, logicalOut: UInt32 = 1 << 30
        static let vlanAll = vlanID | vlanPrio | vlanEncap
        static let arpAll: UInt32 = 0x7F80
        static let arpIPAll = arpIPSrc | arpIPDst | arpGrat
        static let arpMACAll = arpMACSrc | arpMACDst
        static let ipAll: UInt32 = 0x1F8000
        static let ip6All: UInt32 = 0x7E00000
    }

    /// Which exact value a merged run looks up.
    enum SetKey: UInt8 { case none = 0, srcMAC, dstMAC, ipSrc, ipDst }

    struct CompiledRule: Equatable {
        var counter: Int32 = 0
        var target: Int32 = FilterProgram.continueTarget
        var checks: UInt32 = 0
        var inverts: UInt32 = 0
        /// Word offset of the `-o` bitmap in `bitmaps`.
        var outBitmap: Int32 = -1
        var proto: UInt16 = 0
        var vlanID: UInt16 = 0, vlanEncap: UInt16 = 0
        var vlanPrio: UInt8 = 0
        var ipTOS: UInt8 = 0, ipProto: UInt8 = 0, ip6TClass: UInt8 = 0, ip6Proto: UInt8 = 0
        var srcMAC: UInt64 = 0, srcMask: UInt64 = 0, dstMAC: UInt64 = 0, dstMask: UInt64 = 0
        var arpOp: UInt16 = 0, arpHType: UInt16 = 0, arpPType: UInt16 = 0
        var arpIPSrc: UInt32 = 0, arpIPSrcMask: UInt32 = 0, arpIPDst: UInt32 = 0, arpIPDstMask: UInt32 = 0
        var arpMACSrc: UInt64 = 0, arpMACSrcMask: UInt64 = 0, arpMACDst: UInt64 = 0, arpMACDstMask: UInt64 = 0
        var ipSrc: UInt32 = 0, ipSrcMask: UInt32 = 0, ipDst: UInt32 = 0, ipDstMask: UInt32 = 0
        var ipSport: (UInt16, UInt16) = (0, 0), ipDport: (UInt16, UInt16) = (0, 0)
        var ip6Src: IPv6Prefix = IPv6Prefix(high: 0, low: 0, length: 0)
        var ip6Dst: IPv6Prefix = IPv6Prefix(high: 0, low: 0, length: 0)
        var ip6Sport: (UInt16, UInt16) = (0, 0), ip6Dport: (UInt16, UInt16) = (0, 0)
        var amongSrc: (Int32, Int32) = (0, 0), amongDst: (Int32, Int32) = (0, 0)
        /// Merged run: which key, and the hash table (offset, mask) in `setSlots`.
        var setKey: SetKey = .none
        var setTable: (Int32, Int32) = (0, 0)

        static func == (a: CompiledRule, b: CompiledRule) -> Bool {
            a.counter == b.counter && a.target == b.target && a.checks == b.checks && a.inverts == b.inverts
                && a.outBitmap == b.outBitmap && a.proto == b.proto && a.vlanID == b.vlanID && a.vlanEncap == b.vlanEncap
                && a.vlanPrio == b.vlanPrio && a.ipTOS == b.ipTOS && a.ipProto == b.ipProto && a.ip6TClass == b.ip6TClass
                && a.ip6Proto == b.ip6Proto && a.srcMAC == b.srcMAC && a.srcMask == b.srcMask && a.dstMAC == b.dstMAC
                && a.dstMask == b.dstMask && a.arpOp == b.arpOp && a.arpHType == b.arpHType && a.arpPType == b.arpPType
                && a.arpIPSrc == b.arpIPSrc && a.arpIPSrcMask == b.arpIPSrcMask && a.arpIPDst == b.arpIPDst
                && a.arpIPDstMask == b.arpIPDstMask && a.arpMACSrc == b.arpMACSrc && a.arpMACSrcMask == b.arpMACSrcMask
                && a.arpMACDst == b.arpMACDst && a.arpMACDstMask == b.arpMACDstMask && a.ipSrc == b.ipSrc
                && a.ipSrcMask == b.ipSrcMask && a.ipDst == b.ipDst && a.ipDstMask == b.ipDstMask
                && a.ipSport == b.ipSport && a.ipDport == b.ipDport && a.ip6Src == b.ip6Src && a.ip6Dst == b.ip6Dst
                && a.ip6Sport == b.ip6Sport && a.ip6Dport == b.ip6Dport && a.amongSrc == b.amongSrc
                && a.amongDst == b.amongDst && a.setKey == b.setKey && a.setTable == b.setTable
        }
    }

    public let ruleCount: Int
    let chainCount: Int
    /// Lists per (chain, ingress slot); slot `portSlots - 1` is "no ingress port".
    let portSlots: Int
    let rules: FixedArray<CompiledRule>
    let ruleStorage: Int
    let lists: FixedArray<Int32>
    let listStart: FixedArray<Int32>
    let listCount: FixedArray<Int32>
    let policies: FixedArray<Int32>
    let bitmaps: FixedArray<UInt64>
    let bitmapWords: Int
    /// Among entries: (mac << 16 ... ) kept as pairs (mac, ip) sorted by mac.
    let amongMAC: FixedArray<UInt64>
    let amongIP: FixedArray<UInt32>
    /// Merged runs: open addressing, key + 1 (0 = empty) and the counter slot of the rule.
    let setKeys: FixedArray<UInt64>
    let setValues: FixedArray<Int32>
    /// Packet and byte counter per rule, in FilterRuleSet.flatCounters order.
    let packetCounts: FixedArray<UInt64>
    let byteCounts: FixedArray<UInt64>
    let stack: FixedArray<(Int32, Int32)>
    /// Chain indices of INPUT, FORWARD, OUTPUT are 0, 1, 2.
    public let inputIsTrivial: Bool, forwardIsTrivial: Bool, outputIsTrivial: Bool
    private let sizes: (Int, Int, Int, Int, Int)

    public static let input = 0, forward = 1, output = 2

    /// Compiles `set` for a bridge named `bridgeName` whose ports are `portNames` (by port index,
    /// nil for unused indices). Counters start at the rule set's counters.
    public init(_ set: FilterRuleSet, portNames: [String?], bridgeName: String) {
        let chains = set.chains
        chainCount = chains.count
        portSlots = portNames.count + 1
        var chainIndex: [String: Int32] = [:]
        for (i, c) in chains.enumerated() { chainIndex[c.name] = Int32(i) }
        bitmapWords = max(1, (portNames.count + 63) / 64)

        var compiled: [CompiledRule] = []
        var inMatch: [[Bool]] = [] // per flat rule, per slot
        var bitmapPool: [UInt64] = []
        var amongM: [UInt64] = [], amongI: [UInt32] = []
        var counters: [FilterCounter] = []
        for c in chains {
            for (r, k) in zip(c.rules, c.counters) {
                counters.append(k)
                var x = CompiledRule()
                x.counter = Int32(compiled.count)
                switch r.target {
                case .accept: x.target = FilterProgram.accept
                case .drop: x.target = FilterProgram.drop
                case .continue: x.target = FilterProgram.continueTarget
                case .return: x.target = FilterProgram.returnTarget
                case .jump(let t): x.target = chainIndex[t] ?? FilterProgram.continueTarget
                }
                func flag(_ bit: UInt32, _ inverted: Bool) { x.checks |= bit; if inverted { x.inverts |= bit } }
                if let s = r.source { flag(Check.src, s.inverted); x.srcMAC = s.value.address.rawValue; x.srcMask = s.value.mask.rawValue }
                if let d = r.destination { flag(Check.dst, d.inverted); x.dstMAC = d.value.address.rawValue; x.dstMask = d.value.mask.rawValue }
                if let p = r.proto {
                    switch p.value {
                    case .length: flag(Check.length, p.inverted)
                    case .type(let t): flag(Check.proto, p.inverted); x.proto = t
                    }
                }
                if let v = r.vlanID { flag(Check.vlanID, v.inverted); x.vlanID = v.value }
                if let v = r.vlanPriority { flag(Check.vlanPrio, v.inverted); x.vlanPrio = v.value }
                if let v = r.vlanEncapsulation { flag(Check.vlanEncap, v.inverted); x.vlanEncap = v.value }
                if let v = r.arpOpcode { flag(Check.arpOp, v.inverted); x.arpOp = v.value }
                if let v = r.arpHardwareType { flag(Check.arpHType, v.inverted); x.arpHType = v.value }
                if let v = r.arpProtocolType { flag(Check.arpPType, v.inverted); x.arpPType = v.value }
                if let v = r.arpIPSource { flag(Check.arpIPSrc, v.inverted); x.arpIPSrc = v.value.address; x.arpIPSrcMask = v.value.mask }
                if let v = r.arpIPDestination { flag(Check.arpIPDst, v.inverted); x.arpIPDst = v.value.address; x.arpIPDstMask = v.value.mask }
                if let v = r.arpMACSource { flag(Check.arpMACSrc, v.inverted); x.arpMACSrc = v.value.address.rawValue; x.arpMACSrcMask = v.value.mask.rawValue }
                if let v = r.arpMACDestination { flag(Check.arpMACDst, v.inverted); x.arpMACDst = v.value.address.rawValue; x.arpMACDstMask = v.value.mask.rawValue }
                if let v = r.arpGratuitous { flag(Check.arpGrat, v.inverted) }
                if let v = r.ipSource { flag(Check.ipSrc, v.inverted); x.ipSrc = v.value.address; x.ipSrcMask = v.value.mask }
                if let v = r.ipDestination { flag(Check.ipDst, v.inverted); x.ipDst = v.value.address; x.ipDstMask = v.value.mask }
                if let v = r.ipTOS { flag(Check.ipTOS, v.inverted); x.ipTOS = v.value }
                if let v = r.ipProtocol { flag(Check.ipProto, v.inverted); x.ipProto = v.value }
                if let v = r.ipSourcePort { flag(Check.ipSport, v.inverted); x.ipSport = (v.value.low, v.value.high) }
                if let v = r.ipDestinationPort { flag(Check.ipDport, v.inverted); x.ipDport = (v.value.low, v.value.high) }
                if let v = r.ip6Source { flag(Check.ip6Src, v.inverted); x.ip6Src = v.value }
                if let v = r.ip6Destination { flag(Check.ip6Dst, v.inverted); x.ip6Dst = v.value }
                if let v = r.ip6TrafficClass { flag(Check.ip6TClass, v.inverted); x.ip6TClass = v.value }
                if let v = r.ip6Protocol { flag(Check.ip6Proto, v.inverted); x.ip6Proto = v.value }
                if let v = r.ip6SourcePort { flag(Check.ip6Sport, v.inverted); x.ip6Sport = (v.value.low, v.value.high) }
                if let v = r.ip6DestinationPort { flag(Check.ip6Dport, v.inverted); x.ip6Dport = (v.value.low, v.value.high) }
                func among(_ list: [AmongEntry]) -> (Int32, Int32) {
                    let start = Int32(amongM.count)
                    for e in list.sorted(by: { ($0.mac.rawValue, $0.ip ?? 0) < ($1.mac.rawValue, $1.ip ?? 0) }) {
                        amongM.append(e.mac.rawValue); amongI.append(e.ip ?? 0)
                    }
                    return (start, Int32(list.count))
                }
                if let v = r.amongSource { flag(Check.amongSrc, v.inverted); x.amongSrc = among(v.value) }
                if let v = r.amongDestination { flag(Check.amongDst, v.inverted); x.amongDst = among(v.value) }
                if let o = r.outInterface {
                    flag(Check.out, o.inverted)
                    x.outBitmap = Int32(bitmapPool.count)
                    var words = Array(repeating: UInt64(0), count: bitmapWords)
                    for (i, n) in portNames.enumerated() where n.map(o.value.matches) == true { words[i >> 6] |= 1 << UInt64(i & 63) }
                    bitmapPool += words
                }
                if let lo = r.logicalOut, lo.value.matches(bridgeName) == lo.inverted {
                    // With an egress port the bridge is always this one: the match fails; with
                    // none (INPUT) the kernel does not look at it.
                    x.checks |= Check.logicalOut
                }
                // Ingress: decided per slot now.
                var perSlot = Array(repeating: true, count: portNames.count + 1)
                for slot in 0...portNames.count {
                    let name: String? = slot < portNames.count ? portNames[slot] : nil
                    if slot < portNames.count && name == nil { perSlot[slot] = false; continue }
                    if let i = r.inInterface {
                        let mismatch = name.map { !i.value.matches($0) } ?? true
                        if mismatch != i.inverted { perSlot[slot] = false }
                    }
                    if let li = r.logicalIn, name != nil, li.value.matches(bridgeName) == li.inverted { perSlot[slot] = false }
                }
                inMatch.append(perSlot)
                compiled.append(x)
            }
        }
        ruleCount = compiled.count

        // Per (chain, slot) lists, with runs of exact-value rules merged into hash nodes.
        var listPool: [Int32] = []
        var starts = Array(repeating: Int32(0), count: chainCount * portSlots)
        var counts = Array(repeating: Int32(0), count: chainCount * portSlots)
        var extra: [CompiledRule] = []
        var keyPool: [UInt64] = [], valuePool: [Int32] = []
        // Reuse identical lists (most ports of most chains share the same list).
        var listCache: [[Int32]: (Int32, Int32)] = [:]
        var ruleBase = 0
        for (c, chain) in chains.enumerated() {
            for slot in 0..<portSlots {
                if slot < portNames.count && portNames[slot] == nil { continue }
                var raw: [Int32] = []
                for r in 0..<chain.rules.count where inMatch[ruleBase + r][slot] { raw.append(Int32(ruleBase + r)) }
                if let cached = listCache[raw] {
                    starts[c * portSlots + slot] = cached.0; counts[c * portSlots + slot] = cached.1
                    continue
                }
                var merged: [Int32] = []
                var k = 0
                while k < raw.count {
                    let (key, base) = FilterProgram.splitKey(compiled[Int(raw[k])])
                    var run = [k]
                    var seenKeys: Set<UInt64> = [key ?? 0]
                    if key != nil {
                        var m = k + 1
                        while m < raw.count {
                            let (k2, b2) = FilterProgram.splitKey(compiled[Int(raw[m])])
                            guard let k2, b2.setKey == base.setKey, FilterProgram.sameExceptCounter(b2, base),
                                  seenKeys.insert(k2).inserted else { break }
                            run.append(m)
                            m += 1
                        }
                    }
                    if run.count >= 3 {
                        var capacity = 8
                        while capacity < run.count * 2 { capacity <<= 1 }
                        let offset = keyPool.count
                        keyPool += Array(repeating: 0, count: capacity)
                        valuePool += Array(repeating: -1, count: capacity)
                        for idx in run {
                            let rr = compiled[Int(raw[idx])]
                            let (kk, _) = FilterProgram.splitKey(rr)
                            var h = Int(FilterProgram.hash(kk!) & UInt64(capacity - 1))
                            while keyPool[offset + h] != 0 { h = (h + 1) & (capacity - 1) }
                            keyPool[offset + h] = kk! &+ 1
                            valuePool[offset + h] = rr.counter
                        }
                        var node = base
                        node.setTable = (Int32(offset), Int32(capacity - 1))
                        merged.append(Int32(compiled.count + extra.count))
                        extra.append(node)
                        k += run.count
                    } else {
                        merged.append(raw[k])
                        k += 1
                    }
                }
                let entry = (Int32(listPool.count), Int32(merged.count))
                listPool += merged
                listCache[raw] = entry
                starts[c * portSlots + slot] = entry.0; counts[c * portSlots + slot] = entry.1
            }
            ruleBase += chain.rules.count
        }
        let all = compiled + extra
        ruleStorage = all.count
        rules = FixedArray(all)
        lists = FixedArray(listPool)
        listStart = FixedArray(starts)
        listCount = FixedArray(counts)
        policies = FixedArray(chains.map {
            $0.policy == .accept ? FilterProgram.accept : $0.policy == .drop ? FilterProgram.drop : FilterProgram.returnTarget
        })
        bitmaps = FixedArray(bitmapPool)
        amongMAC = FixedArray(amongM)
        amongIP = FixedArray(amongI)
        setKeys = FixedArray(keyPool)
        setValues = FixedArray(valuePool)
        packetCounts = FixedArray(counters.map(\.packets))
        byteCounts = FixedArray(counters.map(\.bytes))
        stack = FixedArray(repeating: (0, 0), count: chainCount + 1)
        func trivial(_ c: Int) -> Bool { chains[c].rules.isEmpty && chains[c].policy == .accept }
        inputIsTrivial = trivial(0); forwardIsTrivial = trivial(1); outputIsTrivial = trivial(2)
        sizes = (listPool.count, bitmapPool.count, amongM.count, keyPool.count, 0)
    }

    /// The exact value a rule could be merged on, and the rule without it (setKey says which).
    static func splitKey(_ r: CompiledRule) -> (UInt64?, CompiledRule) {
        var b = r
        b.counter = 0
        if r.checks & Check.src != 0 && r.inverts & Check.src == 0 && r.srcMask == 0xFFFF_FFFF_FFFF {
            b.checks &= ~Check.src; b.srcMAC = 0; b.srcMask = 0; b.setKey = .srcMAC
            return (r.srcMAC, b)
        }
        if r.checks & Check.dst != 0 && r.inverts & Check.dst == 0 && r.dstMask == 0xFFFF_FFFF_FFFF {
            b.checks &= ~Check.dst; b.dstMAC = 0; b.dstMask = 0; b.setKey = .dstMAC
            return (r.dstMAC, b)
        }
        if r.checks & Check.ipSrc != 0 && r.inverts & Check.ipSrc == 0 && r.ipSrcMask == 0xFFFF_FFFF {
            b.checks &= ~Check.ipSrc; b.ipSrc = 0; b.ipSrcMask = 0; b.setKey = .ipSrc
            return (UInt64(r.ipSrc), b)
        }
        if r.checks & Check.ipDst != 0 && r.inverts & Check.ipDst == 0 && r.ipDstMask == 0xFFFF_FFFF {
            b.checks &= ~Check.ipDst; b.ipDst = 0; b.ipDstMask = 0; b.setKey = .ipDst
            return (UInt64(r.ipDst), b)
        }
        return (nil, b)
    }

    static func sameExceptCounter(_ a: CompiledRule, _ b: CompiledRule) -> Bool {
        var x = a, y = b
        x.counter = 0; y.counter = 0
        return x == y
    }

    @inline(__always)
    static func hash(_ k: UInt64) -> UInt64 {
        var h = k &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        return h
    }

    /// Number of merged hash nodes and list entries, for tests of the index.
    public var listEntries: Int { sizes.0 }
    public var hashSlots: Int { sizes.3 }
    /// How many rules a frame from port `slot` meets first in `chain` (a merged run counts once).
    public func listLength(chain: Int, inPort: Int?) -> Int {
        Int(listCount[chain * portSlots + (inPort ?? portSlots - 1)])
    }

    /// Counters in FilterRuleSet.flatCounters order.
    public var counters: [FilterCounter] {
        (0..<ruleCount).map { FilterCounter(packets: packetCounts[$0], bytes: byteCounts[$0]) }
    }

    /// The program an engine runs for `set`: none for an empty set, so its per-frame check is one
    /// nil test. Shared by the bridge and the router so both compile and count rules alike.
    public static func compiled(_ set: FilterRuleSet, portNames: [String?], bridgeName: String) -> FilterProgram? {
        set.isEmpty ? nil : FilterProgram(set, portNames: portNames, bridgeName: bridgeName)
    }

    /// `set` with the counters `program` has run up, when `program` was compiled from it.
    public static func counted(_ set: FilterRuleSet, by program: FilterProgram?) -> FilterRuleSet {
        var s = set
        if let p = program, p.ruleCount == s.ruleCount { s.setFlatCounters(p.counters) }
        return s
    }
}
