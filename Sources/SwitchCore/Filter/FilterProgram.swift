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
    let rules: UnsafeMutablePointer<CompiledRule>
    let ruleStorage: Int
    let lists: UnsafeMutablePointer<Int32>
    let listStart: UnsafeMutablePointer<Int32>
    let listCount: UnsafeMutablePointer<Int32>
    let policies: UnsafeMutablePointer<Int32>
    let bitmaps: UnsafeMutablePointer<UInt64>
    let bitmapWords: Int
    /// Among entries: (mac << 16 ... ) kept as pairs (mac, ip) sorted by mac.
    let amongMAC: UnsafeMutablePointer<UInt64>
    let amongIP: UnsafeMutablePointer<UInt32>
    /// Merged runs: open addressing, key + 1 (0 = empty) and the counter slot of the rule.
    let setKeys: UnsafeMutablePointer<UInt64>
    let setValues: UnsafeMutablePointer<Int32>
    /// Packet and byte counter per rule, in FilterRuleSet.flatCounters order.
    let packetCounts: UnsafeMutablePointer<UInt64>
    let byteCounts: UnsafeMutablePointer<UInt64>
    let stack: UnsafeMutablePointer<(Int32, Int32)>
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
        rules = .allocate(capacity: max(1, all.count)); rules.initialize(from: all, count: all.count)
        lists = .allocate(capacity: max(1, listPool.count)); lists.initialize(from: listPool, count: listPool.count)
        listStart = .allocate(capacity: starts.count); listStart.initialize(from: starts, count: starts.count)
        listCount = .allocate(capacity: counts.count); listCount.initialize(from: counts, count: counts.count)
        policies = .allocate(capacity: chainCount)
        for (i, c) in chains.enumerated() {
            policies[i] = c.policy == .accept ? FilterProgram.accept : c.policy == .drop ? FilterProgram.drop : FilterProgram.returnTarget
        }
        bitmaps = .allocate(capacity: max(1, bitmapPool.count)); bitmaps.initialize(from: bitmapPool, count: bitmapPool.count)
        amongMAC = .allocate(capacity: max(1, amongM.count)); amongMAC.initialize(from: amongM, count: amongM.count)
        amongIP = .allocate(capacity: max(1, amongI.count)); amongIP.initialize(from: amongI, count: amongI.count)
        setKeys = .allocate(capacity: max(1, keyPool.count)); setKeys.initialize(from: keyPool, count: keyPool.count)
        setValues = .allocate(capacity: max(1, valuePool.count)); setValues.initialize(from: valuePool, count: valuePool.count)
        packetCounts = .allocate(capacity: max(1, ruleCount)); byteCounts = .allocate(capacity: max(1, ruleCount))
        for (i, k) in counters.enumerated() { packetCounts[i] = k.packets; byteCounts[i] = k.bytes }
        stack = .allocate(capacity: chainCount + 1)
        func trivial(_ c: Int) -> Bool { chains[c].rules.isEmpty && chains[c].policy == .accept }
        inputIsTrivial = trivial(0); forwardIsTrivial = trivial(1); outputIsTrivial = trivial(2)
        sizes = (listPool.count, bitmapPool.count, amongM.count, keyPool.count, 0)
    }

    deinit {
        rules.deallocate(); lists.deallocate(); listStart.deallocate(); listCount.deallocate(); policies.deallocate()
        bitmaps.deallocate(); amongMAC.deallocate(); amongIP.deallocate(); setKeys.deallocate(); setValues.deallocate()
        packetCounts.deallocate(); byteCounts.deallocate(); stack.deallocate()
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

    // MARK: evaluation

    /// Judges one frame in built-in `chain` (0 INPUT, 1 FORWARD, 2 OUTPUT), arriving on port
    /// `inPort` (-1: the bridge's own port sent it) and leaving on `outPort` (-1: to the bridge's
    /// own port). Returns true to let it pass. Bumps the counters of the rules that match.
    @inline(__always)
    public func allows(chain: Int, frame: UnsafeRawPointer, length: Int, tagLength: Int, inPort: Int, outPort: Int) -> Bool {
        let slot = inPort >= 0 && inPort < portSlots - 1 ? inPort : portSlots - 1
        let bytes = UInt64(max(0, length - 14 - tagLength))
        var c = chain
        var pos: Int32 = 0
        var sp = 0
        while true {
            let li = c &* portSlots &+ slot
            let start = Int(listStart[li]), count = listCount[li]
            var jumped = false
            while pos < count {
                let ri = Int(lists[start &+ Int(pos)])
                pos &+= 1
                let counter = matches(rules + ri, frame, length, outPort)
                if counter < 0 { continue }
                packetCounts[Int(counter)] &+= 1
                byteCounts[Int(counter)] &+= bytes
                let t = rules[ri].target
                if t == FilterProgram.continueTarget { continue }
                if t == FilterProgram.accept { return true }
                if t == FilterProgram.drop { return false }
                if t == FilterProgram.returnTarget {
                    if sp == 0 { continue } // only reachable through a hand-made set: like the kernel, CONTINUE
                    sp -= 1
                    (c, pos) = (Int(stack[sp].0), stack[sp].1)
                    jumped = true
                    break
                }
                stack[sp] = (Int32(c), pos)
                sp += 1
                c = Int(t)
                pos = 0
                jumped = true
                break
            }
            if jumped { continue }
            let p = policies[c]
            if p == FilterProgram.accept { return true }
            if p == FilterProgram.drop { return false }
            if sp == 0 { return true }
            sp -= 1
            (c, pos) = (Int(stack[sp].0), stack[sp].1)
        }
    }

    @inline(__always)
    static func be16(_ f: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: f.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always)
    static func be32(_ f: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(bigEndian: f.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always)
    static func mac(_ f: UnsafeRawPointer, _ o: Int) -> UInt64 { MACAddress(loadingFrom: f + o).rawValue }

    /// The counter slot of the rule when all its matches hold, or -1.
    @inline(__always)
    func matches(_ rp: UnsafePointer<CompiledRule>, _ f: UnsafeRawPointer, _ len: Int, _ outPort: Int) -> Int32 {
        let checks = rp.pointee.checks
        let inv = rp.pointee.inverts
        @inline(__always) func fails(_ bit: UInt32, _ mismatch: Bool) -> Bool { checks & bit != 0 && (mismatch != (inv & bit != 0)) }
        // Egress port (-o, --logical-out).
        if checks & (Check.out | Check.logicalOut) != 0 {
            if checks & Check.logicalOut != 0 && outPort >= 0 { return -1 }
            if checks & Check.out != 0 {
                let mismatch = outPort < 0
                    || bitmaps[Int(rp.pointee.outBitmap) &+ outPort >> 6] & (1 << UInt64(outPort & 63)) == 0
                if mismatch != (inv & Check.out != 0) { return -1 }
            }
        }
        let type = FilterProgram.be16(f, 12)
        if fails(Check.proto, type != rp.pointee.proto) { return -1 }
        if fails(Check.length, type >= 0x0600) { return -1 }
        if fails(Check.src, (FilterProgram.mac(f, 6) ^ rp.pointee.srcMAC) & rp.pointee.srcMask != 0) { return -1 }
        if fails(Check.dst, (FilterProgram.mac(f, 0) ^ rp.pointee.dstMAC) & rp.pointee.dstMask != 0) { return -1 }
        if checks & ~(Check.proto | Check.length | Check.src | Check.dst | Check.out | Check.logicalOut) != 0 {
            if !matchesPayload(rp, f, len, type) { return -1 }
        }
        var counter = rp.pointee.counter
        if rp.pointee.setKey != .none {
            let key: UInt64
            switch rp.pointee.setKey {
            case .srcMAC: key = FilterProgram.mac(f, 6)
            case .dstMAC: key = FilterProgram.mac(f, 0)
            case .ipSrc: if len < 34 { return -1 }; key = UInt64(FilterProgram.be32(f, 26))
            case .ipDst: if len < 34 { return -1 }; key = UInt64(FilterProgram.be32(f, 30))
            case .none: key = 0
            }
            let (off, mask) = (Int(rp.pointee.setTable.0), UInt64(rp.pointee.setTable.1))
            var h = FilterProgram.hash(key) & mask
            while true {
                let k = setKeys[off &+ Int(h)]
                if k == 0 { return -1 }
                if k == key &+ 1 { counter = setValues[off &+ Int(h)]; break }
                h = (h &+ 1) & mask
            }
        }
        return counter
    }

    /// VLAN, ARP, IPv4, IPv6 and among matches (the extensions), as the kernel's ebt_* modules.
    func matchesPayload(_ rp: UnsafePointer<CompiledRule>, _ f: UnsafeRawPointer, _ len: Int, _ type: UInt16) -> Bool {
        let r = rp.pointee
        let checks = r.checks, inv = r.inverts
        @inline(__always) func fails(_ bit: UInt32, _ mismatch: Bool) -> Bool { checks & bit != 0 && (mismatch != (inv & bit != 0)) }
        if checks & Check.vlanAll != 0 {
            // ebt_vlan: the tag (the frame carries it inline here), and the ethertype behind it.
            if len < 18 { return false }
            let tci = FilterProgram.be16(f, 14)
            if fails(Check.vlanID, tci & 0xFFF != r.vlanID) { return false }
            if fails(Check.vlanPrio, UInt8(tci >> 13) != r.vlanPrio) { return false }
            if fails(Check.vlanEncap, FilterProgram.be16(f, 16) != r.vlanEncap) { return false }
        }
        if checks & Check.arpAll != 0 {
            // ebt_arp: the fixed ARP header after the Ethernet header.
            if len < 14 + 8 { return false }
            let hrd = FilterProgram.be16(f, 14), pro = FilterProgram.be16(f, 16)
            let hln = Int(f.load(fromByteOffset: 18, as: UInt8.self)), pln = Int(f.load(fromByteOffset: 19, as: UInt8.self))
            if fails(Check.arpOp, FilterProgram.be16(f, 20) != r.arpOp) { return false }
            if fails(Check.arpHType, hrd != r.arpHType) { return false }
            if fails(Check.arpPType, pro != r.arpPType) { return false }
            if checks & Check.arpIPAll != 0 {
                if pln != 4 || pro != 0x0800 { return false }
                let so = 22 + hln, dof = 22 + 2 * hln + 4
                if len < so + 4 || len < dof + 4 { return false }
                let sip = FilterProgram.be32(f, so), dip = FilterProgram.be32(f, dof)
                if fails(Check.arpIPSrc, sip & r.arpIPSrcMask != r.arpIPSrc) { return false }
                if fails(Check.arpIPDst, dip & r.arpIPDstMask != r.arpIPDst) { return false }
                if fails(Check.arpGrat, dip != sip) { return false }
            }
            if checks & Check.arpMACAll != 0 {
                if hln != 6 || hrd != 1 { return false }
                if checks & Check.arpMACSrc != 0 {
                    if len < 22 + 6 { return false }
                    if fails(Check.arpMACSrc, (FilterProgram.mac(f, 22) ^ r.arpMACSrc) & r.arpMACSrcMask != 0) { return false }
                }
                if checks & Check.arpMACDst != 0 {
                    let o = 22 + 6 + pln
                    if len < o + 6 { return false }
                    if fails(Check.arpMACDst, (FilterProgram.mac(f, o) ^ r.arpMACDst) & r.arpMACDstMask != 0) { return false }
                }
            }
        }
        if checks & Check.ipAll != 0 || r.setKey == .ipSrc || r.setKey == .ipDst {
            // ebt_ip: a 20-byte header must be there; the version field is not looked at.
            if len < 14 + 20 { return false }
            if fails(Check.ipTOS, f.load(fromByteOffset: 15, as: UInt8.self) != r.ipTOS) { return false }
            if fails(Check.ipSrc, FilterProgram.be32(f, 26) & r.ipSrcMask != r.ipSrc) { return false }
            if fails(Check.ipDst, FilterProgram.be32(f, 30) & r.ipDstMask != r.ipDst) { return false }
            if checks & Check.ipProto != 0 {
                if fails(Check.ipProto, f.load(fromByteOffset: 23, as: UInt8.self) != r.ipProto) { return false }
                if checks & (Check.ipSport | Check.ipDport) != 0 {
                    if FilterProgram.be16(f, 20) & 0x1FFF != 0 { return false } // not the first fragment
                    let o = 14 + Int(f.load(fromByteOffset: 14, as: UInt8.self) & 0x0F) * 4
                    if len < o + 4 { return false }
                    let sport = FilterProgram.be16(f, o), dport = FilterProgram.be16(f, o + 2)
                    if fails(Check.ipDport, dport < r.ipDport.0 || dport > r.ipDport.1) { return false }
                    if fails(Check.ipSport, sport < r.ipSport.0 || sport > r.ipSport.1) { return false }
                }
            }
        }
        if checks & Check.ip6All != 0 {
            // ebt_ip6: a 40-byte header must be there.
            if len < 14 + 40 { return false }
            let tclass = UInt8(truncatingIfNeeded: FilterProgram.be16(f, 14) >> 4)
            if fails(Check.ip6TClass, tclass != r.ip6TClass) { return false }
            let sh = UInt64(FilterProgram.be32(f, 22)) << 32 | UInt64(FilterProgram.be32(f, 26))
            let sl = UInt64(FilterProgram.be32(f, 30)) << 32 | UInt64(FilterProgram.be32(f, 34))
            if fails(Check.ip6Src, !r.ip6Src.contains(high: sh, low: sl)) { return false }
            let dh = UInt64(FilterProgram.be32(f, 38)) << 32 | UInt64(FilterProgram.be32(f, 42))
            let dl = UInt64(FilterProgram.be32(f, 46)) << 32 | UInt64(FilterProgram.be32(f, 50))
            if fails(Check.ip6Dst, !r.ip6Dst.contains(high: dh, low: dl)) { return false }
            if checks & Check.ip6Proto != 0 {
                let (next, offset) = FilterProgram.skipIPv6ExtensionHeaders(f, len)
                if offset < 0 { return false }
                if fails(Check.ip6Proto, next != r.ip6Proto) { return false }
                if checks & (Check.ip6Sport | Check.ip6Dport) != 0 {
                    if len < offset + 4 { return false }
                    let sport = FilterProgram.be16(f, offset), dport = FilterProgram.be16(f, offset + 2)
                    if fails(Check.ip6Dport, dport < r.ip6Dport.0 || dport > r.ip6Dport.1) { return false }
                    if fails(Check.ip6Sport, sport < r.ip6Sport.0 || sport > r.ip6Sport.1) { return false }
                }
            }
        }
        if checks & Check.amongSrc != 0 {
            // ebt_among: the IPv4 source of an IPv4 packet or the sender of an ARP packet, else 0.
            guard let ip = FilterProgram.amongIP(f, len, type, destination: false) else { return false }
            if contains(r.amongSrc, FilterProgram.mac(f, 6), ip) == (inv & Check.amongSrc != 0) { return false }
        }
        if checks & Check.amongDst != 0 {
            guard let ip = FilterProgram.amongIP(f, len, type, destination: true) else { return false }
            if contains(r.amongDst, FilterProgram.mac(f, 0), ip) == (inv & Check.amongDst != 0) { return false }
        }
        return true
    }

    static func amongIP(_ f: UnsafeRawPointer, _ len: Int, _ type: UInt16, destination: Bool) -> UInt32? {
        if type == 0x0800 {
            if len < 34 { return nil }
            return be32(f, destination ? 30 : 26)
        }
        if type == 0x0806 {
            if len < 22 { return nil }
            if f.load(fromByteOffset: 19, as: UInt8.self) != 4 || f.load(fromByteOffset: 18, as: UInt8.self) != 6 { return nil }
            let o = destination ? 22 + 6 + 4 + 6 : 22 + 6
            if len < o + 4 { return nil }
            return be32(f, o)
        }
        return 0
    }

    @inline(__always)
    func contains(_ list: (Int32, Int32), _ mac: UInt64, _ ip: UInt32) -> Bool {
        // Sorted by MAC: binary search for the first entry of this MAC, then its IPs.
        var lo = Int(list.0), hi = Int(list.0 + list.1)
        let end = hi
        while lo < hi {
            let mid = (lo + hi) >> 1
            if amongMAC[mid] < mac { lo = mid + 1 } else { hi = mid }
        }
        while lo < end && amongMAC[lo] == mac {
            if amongIP[lo] == 0 || amongIP[lo] == ip { return true }
            lo += 1
        }
        return false
    }

    /// ipv6_skip_exthdr: the upper-layer protocol and its offset in the frame, offset -1 when the
    /// chain of extension headers ends in "no next header" or runs off the frame.
    static func skipIPv6ExtensionHeaders(_ f: UnsafeRawPointer, _ len: Int) -> (UInt8, Int) {
        var next = f.load(fromByteOffset: 20, as: UInt8.self)
        var o = 14 + 40
        while true {
            switch next {
            case 0, 43, 60, 44, 51:
                if len < o + 8 { return (next, -1) }
                let hdrNext = f.load(fromByteOffset: o, as: UInt8.self)
                let hlen: Int
                if next == 44 {
                    if be16(f, o + 2) & 0xFFF8 != 0 { return (next, o) } // not the first fragment
                    hlen = 8
                } else if next == 51 {
                    hlen = (Int(f.load(fromByteOffset: o + 1, as: UInt8.self)) + 2) << 2
                } else {
                    hlen = (Int(f.load(fromByteOffset: o + 1, as: UInt8.self)) + 1) << 3
                }
                next = hdrNext
                o += hlen
            case 59:
                return (next, -1)
            default:
                return (next, o)
            }
        }
    }
}
