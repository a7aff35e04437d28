// BridgeEngine+Configuration: changing a bridge between batches (ports, VLAN modes, backends
// coming and going, filter rules, anti-spoofing, ageing) and reading its counters. Everything
// here runs on the bridge's dataplane thread between two batches (BridgeEngine.swift, "Threading"),
// so a frame sees one configuration, old or new.

extension BridgeEngine {
    // MARK: configuration (dataplane thread, between batches)

    /// Adds a port in `mode`, with its backend or nil when the interface is not there yet.
    /// Returns the port index (shown to users as index + 1).
    public func addPort(name: String, mode: VLANMode, device: Port?) throws(BridgeError) -> Int {
        guard let i = (0..<maxPorts).first(where: { kind[$0] == BridgeEngine.kindUnused }) else {
            throw .tooManyPorts(maxPorts)
        }
        portNames[i] = name
        counters[i] = PortCounters()
        retiredEvents[i] = PortEvents()
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
        fdb.setLimit(port: UInt16(i), 0)
        setStormLimits(i, broadcast: 0, multicast: 0, unknown: 0)
        localMACs[i] = nil
        let d = devices[i]
        if let d { retire(d, from: i) }
        removedPortEvents = removedPortEvents + retiredEvents[i]
        retiredEvents[i] = PortEvents()
        devices[i] = nil
        portNames[i] = nil
        portModes[i] = nil
        kind[i] = BridgeEngine.kindUnused
        pvid[i] = 0
        up[i] = false
        (members.base + i * 64).update(repeating: 0, count: 64)
        rebuildActive()
        local[i] = false
        if portAddresses[i] != nil { setPortAddresses(i, nil) }
        recompileFilter()
        return d
    }

    /// Keeps the events of a backend that leaves port `i`.
    func retire(_ device: Port, from i: Int) {
        device.updateEvents()
        retiredEvents[i] = retiredEvents[i] + device.events
    }

    // MARK: filtering (dataplane thread, between batches)

    /// Marks a port as the bridge's own port (a TAP port): INPUT/OUTPUT instead of FORWARD.
    public func setLocal(_ i: Int, _ isLocal: Bool) { local[i] = isLocal }
    public func isLocal(_ i: Int) -> Bool { local[i] }

    /// The rule set in force, with the dataplane's counters.
    public var currentFilterRules: FilterRuleSet { FilterProgram.counted(filterRules, by: filterProgram) }

    /// Replaces the whole rule set (compiled here; the next batch sees only the new one).
    public func setFilter(_ rules: FilterRuleSet) {
        filterRules = rules
        filterProgram = FilterProgram.compiled(rules, portNames: portNames, bridgeName: bridgeName)
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
        let own = localMACs[i]
        if own != nil { setLocalMAC(i, nil) }
        applyMode(i, mode)
        if let own { setLocalMAC(i, own) }
    }

    /// Storm control of port `i`: at most `broadcast`, `multicast` and `unknown` (unknown unicast)
    /// flooded frames a second from it (0: no limit), each a token bucket of a tenth of a second's
    /// worth; frames beyond are dropped and counted per kind. Hardware switches have this; the
    /// Linux bridge and Open vSwitch do not.
    public func setStormLimits(_ i: Int, broadcast: Int, multicast: Int, unknown: Int) {
        let was = (0..<3).contains { stormRate[i * 3 + $0] != 0 }
        for (k, rate) in [broadcast, multicast, unknown].enumerated() {
            stormRate[i * 3 + k] = UInt32(clamping: max(rate, 0))
            stormTokens[i * 3 + k] = UInt64(max(UInt32(clamping: max(rate, 0)) / 10, 1)) * 1000
            stormStamp[i * 3 + k] = 0
        }
        let now = (0..<3).contains { stormRate[i * 3 + $0] != 0 }
        stormPorts += (now ? 1 : 0) - (was ? 1 : 0)
    }
    /// Port `i`'s storm limits (broadcast, multicast, unknown unicast), frames/s, 0: none.
    public func stormLimits(_ i: Int) -> (broadcast: Int, multicast: Int, unknown: Int) {
        (Int(stormRate[i * 3]), Int(stormRate[i * 3 + 1]), Int(stormRate[i * 3 + 2]))
    }

    /// Port security: at most `limit` learned source MACs on port `i` (0: no limit); frames from
    /// a new source beyond it are dropped (`mac-limit`), the MACs already learned keep working.
    public func setMACLimit(_ i: Int, _ limit: Int) { fdb.setLimit(port: UInt16(i), limit) }
    public func macLimit(_ i: Int) -> Int { fdb.limit(port: UInt16(i)) }

    /// Makes `mac` the switch's own address behind port `i` (a TAP port: dom0's stack), or none:
    /// a local FDB entry in every VLAN the port carries, which never ages or moves, and a frame
    /// from any other port with that source is dropped (`own-address-source`). As the Linux
    /// bridge keeps its own addresses; it forwards such frames and logs them, where on a Xen host
    /// they can only be a guest's spoof or a loop. False when the FDB has no room left.
    @discardableResult
    public func setLocalMAC(_ i: Int, _ mac: MACAddress?) -> Bool {
        precondition(kind[i] != BridgeEngine.kindUnused)
        let vlans = portModes[i]?.members ?? []
        if let old = localMACs[i] {
            for v in vlans where fdb.isLocal(vlan: v, mac: old) { fdb.remove(vlan: v, mac: old) }
        }
        localMACs[i] = mac
        guard let mac else { return true }
        var ok = true
        for v in vlans { ok = fdb.addLocal(vlan: v, mac: mac, port: UInt16(i)) && ok }
        return ok
    }

    /// Attaches a backend to a port (its interface came back) or detaches it (nil: the interface
    /// vanished). A port going down forgets its learned addresses and counts a down event; the
    /// events the old backend counted stay on the port. Returns the previous backend.
    @discardableResult
    public func setDevice(_ i: Int, _ device: Port?) -> Port? {
        precondition(kind[i] != BridgeEngine.kindUnused)
        let old = devices[i]
        if let old { retire(old, from: i) }
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
    /// What the engine counted for port `i`.
    public func portCounters(_ i: Int) -> PortCounters { counters[i] }
    /// What port `i`'s backends counted: those that left the port and the one attached now (as of
    /// its last `updateEvents`).
    public func portEvents(_ i: Int) -> PortEvents {
        if let d = devices[i] { return retiredEvents[i] + d.events }
        return retiredEvents[i]
    }
    /// Brings every attached backend's events up to date (PACKET_STATISTICS). About once a second.
    public func updatePortEvents() {
        for a in 0..<activeCount { devices[Int(active[a])]?.updateEvents() }
    }
    /// Drops per reason: the engine's own, and the receive events of the bridge's ports (present
    /// and removed) under `runt`, `truncated` and `rx-ring-full`.
    public var dropCounters: DropCounters {
        var d = DropCounters()
        for r in DropReason.allCases { d[r] = drops[r.rawValue] }
        var events = removedPortEvents
        for a in 0..<activeCount { events = events + portEvents(Int(active[a])) }
        d[.runt] &+= events.rxRunts
        d[.truncated] &+= events.rxTruncated
        d[.rxRingFull] &+= events.rxRingFull
        return d
    }
    /// Indices of the ports in use.
    public var portIndices: [Int] { (0..<activeCount).map { Int(active[$0]) } }

    /// Forgets learned entries older than the ageing time. Call about once a second.
    @discardableResult
    public func age(now: UInt32) -> Int { fdb.age(now: now, ageing: settings.ageingMilliseconds) }

    func applyMode(_ i: Int, _ mode: VLANMode) {
        portModes[i] = mode
        let m = members.base + i * 64
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
}
