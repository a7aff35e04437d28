// BridgeEngine: the forwarding pipeline of one bridge over batches of frames.
//
// A batch received on one port goes through four stages, each a loop over the whole batch:
//   1. classify  - validate the Ethernet header, find the frame's VLAN from the ingress port's
//                  mode (access / trunk / native, priority tags join the port's VLAN and keep
//                  their PCP), drop what the port may not carry, and record the frame's VLAN,
//                  tag, ethertype and network-layer offset in `batch.info` for every later stage;
//   2. learn     - every valid source (VLAN, MAC) is learned on the ingress port. All learning of
//                  a batch happens before any forwarding, so a reply in the same batch as the
//                  request already finds its destination;
//   3. forward   - known unicast goes to its one port; broadcast, multicast and unknown unicast
//                  are flooded to every other up port that is a member of the VLAN; each
//                  (port, frame) pair becomes an EgressEntry carrying the tag to push, or none.
//                  The destinations of the whole batch are looked up in the FDB at once first
//                  (`MACTable.lookup(keys:count:ports:)`, which prefetches every home slot before
//                  probing), so that with a large FDB the batch's cache misses overlap instead of
//                  being taken one frame after another. Classify, which has the header in hand,
//                  writes each frame's destination key for it. Nothing in this stage changes the
//                  FDB, so the answers are those a lookup per frame would give;
//   4. transmit  - each egress port copies its entries into its ring or buffers once, with the
//                  tag rewritten during that copy, then is kicked once. A long frame whose body
//                  the ingress port left in its socket queue (PacketBatch.deferred) is read by its
//                  one egress port straight into its TX slot; a flooded one (`pendingShared`) is
//                  read into the ingress port's memory by the first egress port that sends it.
// Only then are the ingress frames given back to their port.
//
// Filtering (Filter/): anti-spoofing runs on ingress right after classification, before learning,
// so a spoofed source never enters the FDB. The ebtables-style chains run in the forward stage per
// (frame, egress port), after learning as in the kernel bridge: OUTPUT when the frame comes from
// the bridge's own port (a TAP port), INPUT when it goes to one, FORWARD otherwise. The compiled
// FilterProgram and AntiSpoofTable are immutable snapshots replaced between batches; with no
// rules and no enforced port they are nil and cost one branch per batch.
//
// Every frame received is counted on its port; every frame that does not leave is counted under
// exactly one DropReason. Flooded copies are counted per egress port. A port's `transmit` says for
// each entry whether it was queued and, if not, why (TransmitStatus); the engine counts the sent
// frames' bytes and each refusal from that (one counter path: FramePort.swift).
//
// Threading: an engine belongs to one dataplane thread. Configuration changes (ports, VLANs, static
// entries, ageing) are method calls made on that same thread between batches, so a frame always
// sees one configuration, old or new, never a mix. All per-frame state lives in memory allocated
// when the engine or a port is set up; the per-frame path neither allocates nor retains.

public struct BridgeSettings: Sendable, Equatable {
    /// Learned entries not seen for this long are removed (default 300 s, as the Linux bridge).
    public var ageingMilliseconds: UInt32
    /// Hard limit of FDB entries, learned and static together.
    public var fdbCapacity: Int
    /// Frames taken from one port at a time.
    public var batchSize: Int

    public static let defaultAgeingSeconds: UInt32 = 300
    public static let defaultFDBCapacity = 65536

    public init(ageingMilliseconds: UInt32 = defaultAgeingSeconds * 1000,
                fdbCapacity: Int = defaultFDBCapacity, batchSize: Int = 128) {
        self.ageingMilliseconds = ageingMilliseconds
        self.fdbCapacity = fdbCapacity
        self.batchSize = batchSize
    }
}

public enum BridgeError: Error, Equatable, CustomStringConvertible {
    case tooManyPorts(Int)
    case noSuchPort(Int)
    case fdbFull

    public var description: String {
        switch self {
        case .tooManyPorts(let n): return "bridge already has the maximum of \(n) ports"
        case .noSuchPort(let i): return "no port \(i)"
        case .fdbFull: return "forwarding database full of static entries"
        }
    }
}

public final class BridgeEngine<Port: FramePort> {
    public let maxPorts: Int
    public internal(set) var settings: BridgeSettings
    public let fdb: MACTable
    public let batch: PacketBatch

    // Per-port configuration read by the per-frame path, indexed by port index.
    static var kindUnused: UInt8 { 0 }
    static var kindAccess: UInt8 { 1 }
    static var kindTrunk: UInt8 { 2 }
    let kind: FixedArray<UInt8>
    /// Access VLAN, or a trunk's native VLAN (0: none).
    let pvid: FixedArray<UInt16>
    let up: FixedArray<Bool>
    /// 4096-bit VLAN membership bitmap per port.
    let members: FixedArray<UInt64>
    /// Ports in use, in index order: the flood list.
    let active: FixedArray<UInt16>
    var activeCount = 0
    /// Egress entries per port for the batch in flight, and what the port made of each.
    let egress: FixedArray<EgressEntry>
    let egressCount: FixedArray<Int32>
    let egressStatus: FixedArray<TransmitStatus>
    let counters: FixedArray<PortCounters>
    /// Events of the backends that left each port (its interface went away, or was replaced), so
    /// that a port's figures survive a re-attach; and of ports since removed, for the bridge's
    /// totals.
    let retiredEvents: FixedArray<PortEvents>
    var removedPortEvents = PortEvents()
    let drops: FixedArray<UInt64>
    /// Per frame of the batch in flight: its destination's FDB key, written by classify (0: no
    /// lookup: multicast or dropped), and the port the FDB answered (-1: unknown), for the batched
    /// lookup in `forward`.
    let fdbKeys: FixedArray<UInt64>
    let fdbPorts: FixedArray<Int32>
    /// Nonzero keys classify wrote (an upper bound once anti-spoofing drops frames): 0 lets a
    /// batch of only multicast or dropped frames skip the FDB.
    var fdbKeyCount = 0

    /// The port backends, nil while a port's interface is down.
    public internal(set) var devices: [Port?]
    public internal(set) var portNames: [String?]
    public internal(set) var portModes: [VLANMode?]
    /// The switch's own MAC behind each port (a TAP port's: dom0's stack), nil for guests' ports:
    /// local FDB entries in every VLAN of the port (setLocalMAC).
    public internal(set) var localMACs: [MACAddress?]

    // Filtering (Filter/): the rule set as the user sees it, its compiled form (nil: no rules),
    // per-port guest addresses and their compiled table (nil: nothing enforced).
    /// The bridge's name, for --logical-in/--logical-out.
    public var bridgeName: String = ""
    public internal(set) var filterRules = FilterRuleSet()
    public internal(set) var filterProgram: FilterProgram?
    public internal(set) var portAddresses: [PortAddresses?]
    public internal(set) var antiSpoofTable: AntiSpoofTable?
    /// Ports that are the bridge's own port (TAP): frames to them pass INPUT, from them OUTPUT.
    let local: FixedArray<Bool>
    /// Storm control per port and kind (0 broadcast, 1 multicast, 2 unknown unicast), index
    /// port * 3 + kind: the limit in frames/s (0: off), the bucket's tokens in thousandths of a
    /// frame, and when it was last filled. `stormPorts` counts the ports with any limit, so a
    /// bridge without one pays a single branch per flooded frame.
    let stormRate: FixedArray<UInt32>
    let stormTokens: FixedArray<UInt64>
    let stormStamp: FixedArray<UInt32>
    var stormPorts = 0

    public init(settings: BridgeSettings = BridgeSettings(), maxPorts: Int = 1024) {
        precondition(maxPorts >= 1 && maxPorts <= Int(UInt16.max))
        self.maxPorts = maxPorts
        self.settings = settings
        fdb = MACTable(capacity: settings.fdbCapacity, maxPorts: maxPorts)
        batch = PacketBatch(capacity: settings.batchSize)
        kind = FixedArray(repeating: 0, count: maxPorts)
        pvid = FixedArray(repeating: 0, count: maxPorts)
        up = FixedArray(repeating: false, count: maxPorts)
        members = FixedArray(repeating: 0, count: maxPorts * 64)
        active = FixedArray(repeating: 0, count: maxPorts)
        egress = FixedArray(repeating: EgressEntry(frame: 0, tci: 0), count: maxPorts * settings.batchSize)
        egressCount = FixedArray(repeating: 0, count: maxPorts)
        egressStatus = FixedArray(repeating: .queued, count: settings.batchSize)
        counters = FixedArray(repeating: PortCounters(), count: maxPorts)
        retiredEvents = FixedArray(repeating: PortEvents(), count: maxPorts)
        drops = FixedArray(repeating: 0, count: DropReason.allCases.count)
        fdbKeys = FixedArray(repeating: 0, count: batch.capacity)
        fdbPorts = FixedArray(repeating: -1, count: batch.capacity)
        devices = Array(repeating: nil, count: maxPorts)
        portNames = Array(repeating: nil, count: maxPorts)
        portModes = Array(repeating: nil, count: maxPorts)
        localMACs = Array(repeating: nil, count: maxPorts)
        portAddresses = Array(repeating: nil, count: maxPorts)
        local = FixedArray(repeating: false, count: maxPorts)
        stormRate = FixedArray(repeating: 0, count: 3 * maxPorts)
        stormTokens = FixedArray(repeating: 0, count: 3 * maxPorts)
        stormStamp = FixedArray(repeating: 0, count: 3 * maxPorts)
    }

    // MARK: the dataplane

    /// Receives one batch from port `i`, forwards it, and gives the frames back. Returns the number
    /// of frames received (0: nothing waiting).
    @discardableResult
    public func poll(port i: Int, now: UInt32) -> Int {
        guard let device = devices[i] else { return 0 }
        batch.count = 0
        let n = device.receive(into: batch)
        batch.count = n
        if n > 0 { process(from: i, now: now) }
        device.releaseReceived()
        return n
    }

    /// Polls every up port once. Returns the frames received in all.
    @discardableResult
    public func pollAll(now: UInt32) -> Int {
        var total = 0
        for a in 0..<activeCount { total &+= poll(port: Int(active[a]), now: now) }
        return total
    }

    /// Runs the pipeline over `batch` (already filled) as received on port `p`.
    public func process(from p: Int, now: UInt32) {
        let n = batch.count
        if n == 0 { return }
        classify(from: p, count: n)
        if let guardTable = antiSpoofTable, guardTable.isEnforced(p) { checkSources(from: p, count: n, guardTable) }
        learn(from: p, count: n, now: now)
        forward(from: p, count: n, now: now)
        transmit(from: p)
    }

    @inline(__always)
    func isMember(_ port: Int, _ vlan: UInt16) -> Bool {
        members[port &* 64 &+ Int(vlan >> 6)] & (1 << UInt64(vlan & 63)) != 0
    }

    @inline(__always)
    func drop(_ r: DropReason) { drops[r.rawValue] &+= 1 }

    func classify(from p: Int, count n: Int) {
        let frames = batch.frames.base, lengths = batch.lengths.base
        let infoOut = batch.info.base, keyOut = fdbKeys.base
        let isTrunk = kind[p] == BridgeEngine.kindTrunk
        let portVLAN = pvid[p]
        var rxBytes: UInt64 = 0
        var keyCount = 0
        for i in 0..<n {
            let f = UnsafeRawPointer(frames[i])
            let len = Int(lengths[i])
            rxBytes &+= UInt64(len)
            infoOut[i] = .dropped
            keyOut[i] = 0
            if len < 14 { drop(.runt); continue }
            let src = MACAddress(loadingFrom: f + 6)
            if src.isMulticast || src.isZero { drop(.invalidSourceMAC); continue }
            let dst = MACAddress(loadingFrom: f)
            if dst.isLinkLocalReserved { drop(.linkLocalDestination); continue }
            var type = HeaderBytes.be16(f, 12)
            var vid: UInt16 = 0
            var pcp: UInt8 = 0
            var tag: UInt8 = 0
            if type == 0x8100 {
                if len < 18 { drop(.runt); continue }
                let tci = HeaderBytes.be16(f, 14)
                vid = tci & 0xFFF
                pcp = UInt8(truncatingIfNeeded: tci >> 13)
                tag = 4
                type = HeaderBytes.be16(f, 16)
            }
            if vid == 0 {
                // Untagged or priority-tagged: the port's access VLAN or native VLAN.
                if portVLAN == 0 { drop(.untaggedOnTrunk); continue }
                vid = portVLAN
            } else if !isTrunk {
                drop(.taggedOnAccessPort); continue
            } else if vid == 0xFFF || !isMember(p, vid) {
                drop(.vlanNotAllowed); continue
            }
            infoOut[i] = FrameInfo(vlan: vid, etherType: type, pcp: pcp, tagLength: tag, l3Offset: 14 &+ tag)
            // The destination's FDB key for the forward stage's batched lookup (the header
            // is in hand here); multicast is flooded without a lookup.
            if !dst.isMulticast {
                keyOut[i] = FDBKey(vlan: vid, mac: dst).rawValue
                keyCount &+= 1
            }
        }
        fdbKeyCount = keyCount
        counters[p].rxFrames &+= UInt64(n)
        counters[p].rxBytes &+= rxBytes
    }

    /// Anti-spoofing of an enforced port: frames its guest may not send are dropped before
    /// learning.
    func checkSources(from p: Int, count n: Int, _ table: AntiSpoofTable) {
        let frames = batch.frames.base, lengths = batch.lengths.base, info = batch.info.base
        for i in 0..<n where info[i].vlan != 0 {
            if let reason = table.violation(port: p, frame: frames[i], length: Int(lengths[i]), info: info[i]) {
                info[i].vlan = 0
                fdbKeys[i] = 0
                drop(reason)
            }
        }
    }

    /// The filter's verdict for frame `i` from port `p` to port `q`.
    @inline(__always)
    func filterAllows(_ prog: FilterProgram, _ i: Int, _ p: Int, _ q: Int) -> Bool {
        let f = UnsafeRawPointer(batch.frames[i]), len = Int(batch.lengths[i]), info = batch.info[i]
        if local[p] {
            if prog.outputIsTrivial { return true }
            return prog.allows(chain: FilterProgram.output, frame: f, length: len, info: info, inPort: -1, outPort: q)
        }
        if local[q] {
            if prog.inputIsTrivial { return true }
            return prog.allows(chain: FilterProgram.input, frame: f, length: len, info: info, inPort: p, outPort: -1)
        }
        if prog.forwardIsTrivial { return true }
        return prog.allows(chain: FilterProgram.forward, frame: f, length: len, info: info, inPort: p, outPort: q)
    }

    func learn(from p: Int, count n: Int, now: UInt32) {
        let frames = batch.frames.base, info = batch.info.base
        let port = UInt16(truncatingIfNeeded: p)
        for i in 0..<n where info[i].vlan != 0 {
            switch fdb.learn(vlan: info[i].vlan, mac: MACAddress(loadingFrom: frames[i] + 6), port: port, now: now) {
            case .ownAddress:
                // The switch's own address from another port: dropped before forwarding.
                info[i].vlan = 0
                fdbKeys[i] = 0
                drop(.ownAddressSource)
            case .limitReached:
                // Port security: a source beyond the port's max-macs.
                info[i].vlan = 0
                fdbKeys[i] = 0
                drop(.macLimit)
            default:
                break
            }
        }
    }

    /// Storm control: true when port `p` may flood one more frame of `kind` now (a token bucket of
    /// `rate` frames/s holding a tenth of a second's worth, at least one frame).
    @inline(__always)
    func stormAllows(_ p: Int, _ kind: Int, now: UInt32) -> Bool {
        let k = p &* 3 &+ kind
        let rate = UInt64(stormRate[k])
        if rate == 0 { return true }
        let capacity = max(rate / 10, 1) &* 1000
        let elapsed = UInt64(now &- stormStamp[k])
        stormStamp[k] = now
        let tokens = min(capacity, stormTokens[k] &+ elapsed &* rate)
        if tokens < 1000 { stormTokens[k] = tokens; return false }
        stormTokens[k] = tokens &- 1000
        return true
    }

    func forward(from p: Int, count n: Int, now: UInt32) {
        let storm = stormPorts > 0
        let frames = batch.frames.base, info = batch.info.base
        let stride = settings.batchSize
        let prog = filterProgram
        let egress = self.egress.base, egressCount = self.egressCount.base, pvid = self.pvid.base, up = self.up.base
        // The destinations of the whole batch at once (keys from classify; 0: no lookup).
        let ports = fdbPorts.base
        if fdbKeyCount > 0 {
            fdb.lookup(keys: fdbKeys.base, count: n, ports: ports)
        } else {
            ports.update(repeating: -1, count: n)
        }
        for i in 0..<n {
            let vlan = info[i].vlan
            if vlan == 0 { continue }
            // The tag a trunk egress gets: the frame's VLAN with its PCP, and its DEI (drop
            // eligible) bit when it arrived tagged, which an 802.1Q bridge relays unchanged.
            var tciBase = UInt16(info[i].pcp) << 13 | vlan
            if info[i].tagLength != 0 {
                tciBase |= HeaderBytes.be16(frames[i], 14) & 0x1000
            }
            // Known unicast (multicast has key 0, so its port is -1 and it floods).
            let q = Int(ports[i])
            if q >= 0 {
                if q == p { drop(.sameSegment); continue }
                if !up[q] || !isMember(q, vlan) { drop(.egressPortDown); continue }
                if let prog, !filterAllows(prog, i, p, q) { drop(.filtered); continue }
                let c = Int(egressCount[q])
                egress[q &* stride &+ c] = EgressEntry(frame: UInt16(truncatingIfNeeded: i),
                                                      tci: pvid[q] == vlan ? 0 : tciBase)
                egressCount[q] = Int32(c + 1)
                continue
            }
            // Storm control: broadcast, multicast and unknown unicast each within the port's limit.
            if storm {
                let first = HeaderBytes.byte(frames[i], 0)
                let kind = first & 1 == 0 ? 2 : (MACAddress(loadingFrom: frames[i]).isBroadcast ? 0 : 1)
                if !stormAllows(p, kind, now: now) {
                    drop(kind == 0 ? .stormBroadcast : kind == 1 ? .stormMulticast : .stormUnknown)
                    continue
                }
            }
            // Flood within the VLAN, never back out of the ingress port.
            var copies = 0, filtered = 0
            for a in 0..<activeCount {
                let q = Int(active[a])
                if q == p || !up[q] || !isMember(q, vlan) { continue }
                if let prog, !filterAllows(prog, i, p, q) { filtered += 1; continue }
                let c = Int(egressCount[q])
                egress[q &* stride &+ c] = EgressEntry(frame: UInt16(truncatingIfNeeded: i),
                                                      tci: pvid[q] == vlan ? 0 : tciBase)
                egressCount[q] = Int32(c + 1)
                copies += 1
            }
            if copies == 0 { drop(filtered > 0 ? .filtered : .noEgressPort) }
            // A long frame whose body is still queued on the ingress port (direct receive) is read
            // into that port's memory by its first egress port when it goes to several.
            if copies > 1 && batch.deferred[i] == PacketBatch.pending { batch.deferred[i] = PacketBatch.pendingShared }
        }
    }

    func transmit(from p: Int) {
        let stride = settings.batchSize
        let ingress = devices[p]
        let lengths = batch.lengths.base, info = batch.info.base, status = egressStatus.base
        for a in 0..<activeCount {
            let q = Int(active[a])
            let c = Int(egressCount[q])
            if c == 0 { continue }
            egressCount[q] = 0
            let entries = UnsafePointer(egress.base + q &* stride)
            guard let device = devices[q] else {
                drops[DropReason.egressPortDown.rawValue] &+= UInt64(c)
                continue
            }
            let sent = device.transmit(batch, entries: entries, count: c, status: status, from: ingress)
            // Bytes as they leave: the tag the entry pushed or popped included.
            var bytes: UInt64 = 0
            if sent == c {
                for k in 0..<c {
                    let e = entries[k], f = Int(e.frame)
                    bytes &+= UInt64(Int(lengths[f]) - Int(info[f].tagLength) + (e.tci == 0 ? 0 : 4))
                }
            } else {
                var ringFull: UInt64 = 0, oversize: UInt64 = 0, failed: UInt64 = 0
                for k in 0..<c {
                    switch status[k] {
                    case .queued:
                        let e = entries[k], f = Int(e.frame)
                        bytes &+= UInt64(Int(lengths[f]) - Int(info[f].tagLength) + (e.tci == 0 ? 0 : 4))
                    case .ringFull: ringFull &+= 1
                    case .oversize: oversize &+= 1
                    case .error: failed &+= 1
                    }
                }
                counters[q].txQueueFull &+= ringFull
                counters[q].txOversize &+= oversize
                counters[q].txErrors &+= failed
                drops[DropReason.txQueueFull.rawValue] &+= ringFull
                drops[DropReason.txOversize.rawValue] &+= oversize
                drops[DropReason.txError.rawValue] &+= failed
            }
            counters[q].txFrames &+= UInt64(sent)
            counters[q].txBytes &+= bytes
            device.flush()
        }
    }
}
