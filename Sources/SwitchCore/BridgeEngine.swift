// BridgeEngine: the forwarding pipeline of one bridge over batches of frames.
//
// A batch received on one port goes through four stages, each a loop over the whole batch:
//   1. classify  - validate the Ethernet header, find the frame's VLAN from the ingress port's
//                  mode (access / trunk / native, priority tags join the port's VLAN and keep
//                  their PCP), drop what the port may not carry;
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
//                  tag rewritten during that copy, then is kicked once.
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
// exactly one DropReason. Flooded copies are counted per egress port.
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
    public private(set) var settings: BridgeSettings
    public let fdb: MACTable
    public let batch: PacketBatch

    // Per-port configuration read by the per-frame path, indexed by port index.
    static var kindUnused: UInt8 { 0 }
    static var kindAccess: UInt8 { 1 }
    static var kindTrunk: UInt8 { 2 }
    let kind: UnsafeMutablePointer<UInt8>
    /// Access VLAN, or a trunk's native VLAN (0: none).
    let pvid: UnsafeMutablePointer<UInt16>
    let up: UnsafeMutablePointer<Bool>
    /// 4096-bit VLAN membership bitmap per port.
    let members: UnsafeMutablePointer<UInt64>
    /// Ports in use, in index order: the flood list.
    let active: UnsafeMutablePointer<UInt16>
    var activeCount = 0
    /// Egress entries per port for the batch in flight.
    let egress: UnsafeMutablePointer<EgressEntry>
    let egressCount: UnsafeMutablePointer<Int32>
    let counters: UnsafeMutablePointer<PortCounters>
    let drops: UnsafeMutablePointer<UInt64>
    /// Per frame of the batch in flight: its destination's FDB key, written by classify (0: no
    /// lookup: multicast or dropped), and the port the FDB answered (-1: unknown), for the batched
    /// lookup in `forward`.
    let fdbKeys: UnsafeMutablePointer<UInt64>
    let fdbPorts: UnsafeMutablePointer<Int32>
    /// Nonzero keys classify wrote (an upper bound once anti-spoofing drops frames): 0 lets a
    /// batch of only multicast or dropped frames skip the FDB.
    var fdbKeyCount = 0

    /// The port backends, nil while a port's interface is down.
    public private(set) var devices: [Port?]
    public private(set) var portNames: [String?]
    public private(set) var portModes: [VLANMode?]

    // Filtering (Filter/): the rule set as the user sees it, its compiled form (nil: no rules),
    // per-port guest addresses and their compiled table (nil: nothing enforced).
    /// The bridge's name, for --logical-in/--logical-out.
    public var bridgeName: String = ""
    public private(set) var filterRules = FilterRuleSet()
    public private(set) var filterProgram: FilterProgram?
    public private(set) var portAddresses: [PortAddresses?]
    public private(set) var antiSpoofTable: AntiSpoofTable?
    /// Ports that are the bridge's own port (TAP): frames to them pass INPUT, from them OUTPUT.
    let local: UnsafeMutablePointer<Bool>

    public init(settings: BridgeSettings = BridgeSettings(), maxPorts: Int = 1024) {
        precondition(maxPorts >= 1 && maxPorts <= Int(UInt16.max))
        self.maxPorts = maxPorts
        self.settings = settings
        fdb = MACTable(capacity: settings.fdbCapacity, maxPorts: maxPorts)
        batch = PacketBatch(capacity: settings.batchSize)
        kind = .allocate(capacity: maxPorts); kind.initialize(repeating: 0, count: maxPorts)
        pvid = .allocate(capacity: maxPorts); pvid.initialize(repeating: 0, count: maxPorts)
        up = .allocate(capacity: maxPorts); up.initialize(repeating: false, count: maxPorts)
        members = .allocate(capacity: maxPorts * 64); members.initialize(repeating: 0, count: maxPorts * 64)
        active = .allocate(capacity: maxPorts); active.initialize(repeating: 0, count: maxPorts)
        egress = .allocate(capacity: maxPorts * settings.batchSize)
        egress.initialize(repeating: EgressEntry(frame: 0, tci: 0), count: maxPorts * settings.batchSize)
        egressCount = .allocate(capacity: maxPorts); egressCount.initialize(repeating: 0, count: maxPorts)
        counters = .allocate(capacity: maxPorts); counters.initialize(repeating: PortCounters(), count: maxPorts)
        drops = .allocate(capacity: DropReason.allCases.count)
        drops.initialize(repeating: 0, count: DropReason.allCases.count)
        fdbKeys = .allocate(capacity: batch.capacity); fdbKeys.initialize(repeating: 0, count: batch.capacity)
        fdbPorts = .allocate(capacity: batch.capacity); fdbPorts.initialize(repeating: -1, count: batch.capacity)
        devices = Array(repeating: nil, count: maxPorts)
        portNames = Array(repeating: nil, count: maxPorts)
        portModes = Array(repeating: nil, count: maxPorts)
        portAddresses = Array(repeating: nil, count: maxPorts)
        local = .allocate(capacity: maxPorts); local.initialize(repeating: false, count: maxPorts)
    }

    deinit {
        kind.deallocate(); pvid.deallocate(); up.deallocate(); members.deallocate()
        active.deallocate(); egress.deallocate(); egressCount.deallocate()
        counters.deallocate(); drops.deallocate(); local.deallocate()
        fdbKeys.deallocate(); fdbPorts.deallocate()
    }

    // MARK: configuration (dataplane thread, between batches)

    /// Adds a port in `mode`, with its backend or nil when the interface is not there yet.
    /// Returns the port index (shown to users as index + 1).
    public func addPort(name: String, mode: VLANMode, device: Port?) throws(BridgeError) -> Int {
        guard let i = (0..<maxPorts).first(where: { kind[$0] == BridgeEngine.kindUnused }) else {
            throw .tooManyPorts(maxPorts)
        }
        portNames[i] = name
        counters[i] = PortCounters()
        applyMode(i, mode)
        devices[i] = device
        up[i] = device != nil
        rebuildActive()
        recompileFilter()
        return i
    }

    /// Removes a port and every FDB entry on it; returns its backend for the caller to close.
    @discardableResult
    public func removePort(_ i: Int) throws(BridgeError) -> Port? {
        guard i >= 0 && i < maxPorts && kind[i] != BridgeEngine.kindUnused else { throw .noSuchPort(i) }
        fdb.flush(port: UInt16(i), includingStatic: true)
        let d = devices[i]
        devices[i] = nil
        portNames[i] = nil
        portModes[i] = nil
        kind[i] = BridgeEngine.kindUnused
        pvid[i] = 0
        up[i] = false
        (members + i * 64).update(repeating: 0, count: 64)
        rebuildActive()
        local[i] = false
        if portAddresses[i] != nil { setPortAddresses(i, nil) }
        recompileFilter()
        return d
    }

    // MARK: filtering (dataplane thread, between batches)

    /// Marks a port as the bridge's own port (a TAP port): INPUT/OUTPUT instead of FORWARD.
    public func setLocal(_ i: Int, _ isLocal: Bool) { local[i] = isLocal }
    public func isLocal(_ i: Int) -> Bool { local[i] }

    /// The rule set in force, with the dataplane's counters.
    public var currentFilterRules: FilterRuleSet {
        var s = filterRules
        if let p = filterProgram, p.ruleCount == s.ruleCount { s.setFlatCounters(p.counters) }
        return s
    }

    /// Replaces the whole rule set (compiled here; the next batch sees only the new one).
    public func setFilter(_ rules: FilterRuleSet) {
        filterRules = rules
        filterProgram = rules.isEmpty ? nil : FilterProgram(rules, portNames: portNames, bridgeName: bridgeName)
    }

    /// Port names changed: compile again, keeping the counters.
    func recompileFilter() {
        if filterProgram != nil { setFilter(currentFilterRules) }
    }

    /// Sets (nil: clears) the guest addresses of port `i` and whether they are enforced.
    public func setPortAddresses(_ i: Int, _ addresses: PortAddresses?) {
        portAddresses[i] = addresses
        let table = AntiSpoofTable(portAddresses)
        antiSpoofTable = table.anyEnforced ? table : nil
    }

    /// Changes a port's VLAN mode; its learned addresses are forgotten (they were learned in
    /// VLANs it may no longer carry).
    public func setMode(_ i: Int, _ mode: VLANMode) throws(BridgeError) {
        guard i >= 0 && i < maxPorts && kind[i] != BridgeEngine.kindUnused else { throw .noSuchPort(i) }
        fdb.flush(port: UInt16(i), includingStatic: false)
        applyMode(i, mode)
    }

    /// Attaches a backend to a port (its interface came back) or detaches it (nil: the interface
    /// vanished). A port going down forgets its learned addresses and counts a down event.
    /// Returns the previous backend.
    @discardableResult
    public func setDevice(_ i: Int, _ device: Port?) -> Port? {
        precondition(kind[i] != BridgeEngine.kindUnused)
        let old = devices[i]
        devices[i] = device
        if device == nil {
            if up[i] { counters[i].downEvents &+= 1 }
            fdb.flush(port: UInt16(i), includingStatic: false)
        }
        up[i] = device != nil
        return old
    }

    public func setAgeing(milliseconds: UInt32) { settings.ageingMilliseconds = milliseconds }

    public func portIndex(named name: String) -> Int? { portNames.firstIndex(where: { $0 == name }) }
    public func isUp(_ i: Int) -> Bool { up[i] }
    public func portCounters(_ i: Int) -> PortCounters { counters[i] }
    public var dropCounters: DropCounters {
        var d = DropCounters()
        for r in DropReason.allCases { d[r] = drops[r.rawValue] }
        return d
    }
    /// Lets a port backend's own drops (ring slot too small, ...) show in the bridge's counters.
    public func countDrop(_ reason: DropReason, _ n: UInt64 = 1) { drops[reason.rawValue] &+= n }
    /// Indices of the ports in use.
    public var portIndices: [Int] { (0..<activeCount).map { Int(active[$0]) } }

    /// Forgets learned entries older than the ageing time. Call about once a second.
    @discardableResult
    public func age(now: UInt32) -> Int { fdb.age(now: now, ageing: settings.ageingMilliseconds) }

    func applyMode(_ i: Int, _ mode: VLANMode) {
        portModes[i] = mode
        let m = members + i * 64
        m.update(repeating: 0, count: 64)
        for v in mode.members { m[Int(v) >> 6] |= 1 << UInt64(v & 63) }
        switch mode {
        case .access(let v):
            kind[i] = BridgeEngine.kindAccess
            pvid[i] = v
        case .trunk(_, let native):
            kind[i] = BridgeEngine.kindTrunk
            pvid[i] = native ?? 0
        }
    }

    func rebuildActive() {
        activeCount = 0
        for i in 0..<maxPorts where kind[i] != BridgeEngine.kindUnused {
            active[activeCount] = UInt16(i)
            activeCount += 1
        }
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
        forward(from: p, count: n)
        transmit()
    }

    @inline(__always)
    func isMember(_ port: Int, _ vlan: UInt16) -> Bool {
        members[port &* 64 &+ Int(vlan >> 6)] & (1 << UInt64(vlan & 63)) != 0
    }

    @inline(__always)
    func drop(_ r: DropReason) { drops[r.rawValue] &+= 1 }

    func classify(from p: Int, count n: Int) {
        let frames = batch.frames, lengths = batch.lengths
        let vlanOut = batch.vlan, pcpOut = batch.pcp, tagOut = batch.tagLength, keyOut = fdbKeys
        let isTrunk = kind[p] == BridgeEngine.kindTrunk
        let portVLAN = pvid[p]
        var rxBytes: UInt64 = 0
        var keyCount = 0
        for i in 0..<n {
            let f = UnsafeRawPointer(frames[i])
            let len = Int(lengths[i])
            rxBytes &+= UInt64(len)
            vlanOut[i] = 0
            pcpOut[i] = 0
            tagOut[i] = 0
            keyOut[i] = 0
            if len < 14 { drop(.runt); continue }
            let src = MACAddress(loadingFrom: f + 6)
            if src.isMulticast || src.isZero { drop(.invalidSourceMAC); continue }
            let dst = MACAddress(loadingFrom: f)
            if dst.isLinkLocalReserved { drop(.linkLocalDestination); continue }
            let type = UInt16(bigEndian: f.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            var vid: UInt16 = 0
            if type == 0x8100 {
                if len < 18 { drop(.runt); continue }
                let tci = UInt16(bigEndian: f.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
                vid = tci & 0xFFF
                pcpOut[i] = UInt8(truncatingIfNeeded: tci >> 13)
                tagOut[i] = 4
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
            vlanOut[i] = vid
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
        let frames = batch.frames, lengths = batch.lengths, vlans = batch.vlan, tags = batch.tagLength
        for i in 0..<n where vlans[i] != 0 {
            if let reason = table.violation(port: p, frame: frames[i], length: Int(lengths[i]), l3: 12 &+ Int(tags[i])) {
                vlans[i] = 0
                fdbKeys[i] = 0
                drop(reason)
            }
        }
    }

    /// The filter's verdict for frame `i` from port `p` to port `q`.
    @inline(__always)
    func filterAllows(_ prog: FilterProgram, _ i: Int, _ p: Int, _ q: Int) -> Bool {
        let f = UnsafeRawPointer(batch.frames[i]), len = Int(batch.lengths[i]), tag = Int(batch.tagLength[i])
        if local[p] {
            if prog.outputIsTrivial { return true }
            return prog.allows(chain: FilterProgram.output, frame: f, length: len, tagLength: tag, inPort: -1, outPort: q)
        }
        if local[q] {
            if prog.inputIsTrivial { return true }
            return prog.allows(chain: FilterProgram.input, frame: f, length: len, tagLength: tag, inPort: p, outPort: -1)
        }
        if prog.forwardIsTrivial { return true }
        return prog.allows(chain: FilterProgram.forward, frame: f, length: len, tagLength: tag, inPort: p, outPort: q)
    }

    func learn(from p: Int, count n: Int, now: UInt32) {
        let frames = batch.frames, vlans = batch.vlan
        let port = UInt16(truncatingIfNeeded: p)
        for i in 0..<n where vlans[i] != 0 {
            fdb.learn(vlan: vlans[i], mac: MACAddress(loadingFrom: frames[i] + 6), port: port, now: now)
        }
    }

    func forward(from p: Int, count n: Int) {
        let frames = batch.frames, vlans = batch.vlan, pcps = batch.pcp, tags = batch.tagLength
        let stride = settings.batchSize
        let prog = filterProgram
        // The destinations of the whole batch at once (keys from classify; 0: no lookup).
        let ports = fdbPorts
        if fdbKeyCount > 0 {
            fdb.lookup(keys: fdbKeys, count: n, ports: ports)
        } else {
            ports.update(repeating: -1, count: n)
        }
        for i in 0..<n {
            let vlan = vlans[i]
            if vlan == 0 { continue }
            // The tag a trunk egress gets: the frame's VLAN with its PCP, and its DEI (drop
            // eligible) bit when it arrived tagged, which an 802.1Q bridge relays unchanged.
            var tciBase = UInt16(pcps[i]) << 13 | vlan
            if tags[i] != 0 {
                tciBase |= UInt16(bigEndian: frames[i].loadUnaligned(fromByteOffset: 14, as: UInt16.self)) & 0x1000
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
        }
    }

    func transmit() {
        let stride = settings.batchSize
        let lengths = batch.lengths, tags = batch.tagLength
        for a in 0..<activeCount {
            let q = Int(active[a])
            let c = Int(egressCount[q])
            if c == 0 { continue }
            egressCount[q] = 0
            let entries = egress + q &* stride
            guard let device = devices[q] else {
                drops[DropReason.egressPortDown.rawValue] &+= UInt64(c)
                continue
            }
            let sent = device.transmit(batch, entries: entries, count: c)
            var bytes: UInt64 = 0
            for k in 0..<sent {
                let e = entries[k]
                let f = Int(e.frame)
                bytes &+= UInt64(Int(lengths[f]) - Int(tags[f]) + (e.tci == 0 ? 0 : 4))
            }
            counters[q].txFrames &+= UInt64(sent)
            counters[q].txBytes &+= bytes
            if sent < c { drops[DropReason.txQueueFull.rawValue] &+= UInt64(c - sent) }
            device.flush()
        }
    }
}
