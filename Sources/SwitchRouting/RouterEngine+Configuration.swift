// RouterEngine+Configuration: the router's ports, addresses and routes, changed between batches on
// its dataplane thread (RouterEngine.swift, "Threading"); every change that touches routes compiles
// a new route table, which the next batch uses whole.

import SwitchCore

extension RouterEngine {
    /// Adds a port: the first one added is the uplink (index 0), the others guest ports. `device`
    /// is nil while the interface is missing. Returns the port's index.
    public func addPort(name: String, configuration: RouterPortConfiguration = RouterPortConfiguration(),
                        device: Port?, mtu portMTU: Int = 1500) throws(RouterError) -> Int {
        guard let i = (0..<maxPorts).first(where: { !inUse[$0] }) else { throw .tooManyPorts(maxPorts) }
        inUse[i] = true
        portNames[i] = name
        portConfigurations[i] = configuration
        devices[i] = device
        up[i] = device != nil
        mtu[i] = Int32(clamping: portMTU)
        counters[i] = PortCounters()
        retiredEvents[i] = PortEvents()
        portCount = max(portCount, i + 1)
        applyPortConfiguration(i)
        recompileFilter()
        return i
    }

    /// Removes a guest port with its routes, neighbours and queued frames; returns its backend.
    @discardableResult
    public func removePort(_ i: Int) throws(RouterError) -> Port? {
        guard i >= 0 && i < maxPorts && inUse[i] else { throw .noSuchPort(i) }
        let d = devices[i]
        if let d { d.updateEvents() }
        neighbours.release(neighbours.flush(port: i, permanentToo: true))
        inUse[i] = false
        up[i] = false
        devices[i] = nil
        portNames[i] = nil
        portConfigurations[i] = nil
        guestMAC[i] = 0
        noIPv6[i] = false
        servesDHCP[i] = false
        staticRoutes.removeAll { $0.port == i }
        staticRoutes6.removeAll { $0.port == i }
        while portCount > 0 && !inUse[portCount - 1] { portCount -= 1 }
        setAntiSpoof(i, nil)
        rebuildRoutes()
        recompileFilter()
        return d
    }

    /// Attaches (the interface came back) or detaches (nil) a port's backend; returns the old one.
    @discardableResult
    public func setDevice(_ i: Int, _ device: Port?) -> Port? {
        precondition(inUse[i])
        let old = devices[i]
        if let old {
            old.updateEvents()
            retiredEvents[i] = retiredEvents[i] + old.events
        }
        devices[i] = device
        if device == nil {
            if up[i] { counters[i].downEvents &+= 1 }
            neighbours.release(neighbours.flush(port: i))
        }
        up[i] = device != nil
        return old
    }

    /// The guest's addresses, MAC, metric and anti-spoofing of port `i`.
    public func setPortConfiguration(_ i: Int, _ c: RouterPortConfiguration) {
        precondition(inUse[i])
        portConfigurations[i] = c
        applyPortConfiguration(i)
    }

    /// The egress MTU of port `i` (the interface's MTU).
    public func setMTU(_ i: Int, _ value: Int) { mtu[i] = Int32(clamping: value) }
    public func portMTU(_ i: Int) -> Int { Int(mtu[i]) }

    func applyPortConfiguration(_ i: Int) {
        guestMAC[i] = i == 0 ? 0 : portConfigurations[i]?.guestMAC?.rawValue ?? 0
        guard i != 0, let c = portConfigurations[i] else { rebuildRoutes(); return }
        let a = PortAddresses(macs: c.guestMAC.map { [$0] } ?? [], ipv4: c.addresses, ipv6: c.addresses6, antiSpoofing: c.antiSpoofing)
        setAntiSpoof(i, a.isEmpty && a.antiSpoofing == nil ? nil : a)
        noIPv6[i] = c.addresses6.isEmpty && (antiSpoofTable?.isEnforced(i) ?? false)
        servesDHCP[i] = c.dhcp
        anyRouterAdvertisements = portConfigurations.contains { $0?.routerAdvertisements == true }
        advertisementsSent[i] = 0
        advertisementDeadline[i] = clock
        rebuildRoutes()
    }

    func setAntiSpoof(_ i: Int, _ a: PortAddresses?) {
        antiSpoofAddresses[i] = a
        let table = AntiSpoofTable(antiSpoofAddresses)
        antiSpoofTable = table.anyEnforced ? table : nil
    }

    /// The router's own address with the mask of the uplink's prefix, and the default gateway.
    public func setAddress(_ a: UInt32?, mask: UInt32 = 0xFFFF_FF00, gateway g: UInt32?) {
        address = a
        addressMask = mask
        gateway = g
        rebuildRoutes()
    }

    /// The DHCP server's lease time and DNS servers.
    public func setDHCPSettings(_ s: DHCPSettings) { dhcpSettings = s }

    public func setMAC(_ m: MACAddress) { mac = m; linkLocal = RouterEngine.linkLocalAddress(m) }

    /// The router's IPv6 address on the uplink with its prefix length (nil: none), and the next
    /// hop of the IPv6 default route (a link-local one is on the uplink).
    public func setAddress6(_ a: IPAddress?, prefixLength: Int = 64, gateway g: IPAddress?) {
        address6 = a ?? IPAddress(high: 0, low: 0)
        hasAddress6 = a != nil
        prefixLength6 = prefixLength
        gateway6 = g
        rebuildRoutes()
    }

    /// Adds (or replaces, for the same prefix) a static IPv6 route.
    public func addRoute6(_ r: IPv6Route) {
        staticRoutes6.removeAll { $0.prefix == r.prefix }
        var route = r
        route.kind = .static
        staticRoutes6.append(route)
        rebuildRoutes()
    }

    @discardableResult
    public func removeRoute6(_ prefix: IPv6Prefix) -> Bool {
        let before = staticRoutes6.count
        staticRoutes6.removeAll { $0.prefix == prefix }
        rebuildRoutes()
        return staticRoutes6.count != before
    }

    /// Adds (or replaces, for the same prefix) a static route.
    public func addRoute(_ r: IPv4Route) {
        staticRoutes.removeAll { $0.prefix == r.prefix }
        var route = r
        route.kind = .static
        staticRoutes.append(route)
        rebuildRoutes()
    }

    /// Removes the static route of `prefix`; false when there is none.
    @discardableResult
    public func removeRoute(_ prefix: IPv4Prefix) -> Bool {
        let before = staticRoutes.count
        staticRoutes.removeAll { $0.prefix == prefix }
        rebuildRoutes()
        return staticRoutes.count != before
    }

    /// Every route as `ip route` lists them: connected, host, static, default.
    func currentRoutes() -> [IPv4Route] {
        var all: [IPv4Route] = []
        if let a = address, inUse[0] {
            all.append(IPv4Route(prefix: IPv4Prefix(address: a, mask: addressMask), port: 0, metric: 0, kind: .connected))
        }
        for i in 1..<max(portCount, 1) where inUse[i] && up[i] {
            for p in portConfigurations[i]?.addresses ?? [] {
                all.append(IPv4Route(prefix: p, port: i, metric: portConfigurations[i]?.metric ?? 2, kind: .host))
            }
        }
        all += staticRoutes.filter { inUse[$0.port] }
        if let g = gateway, inUse[0] {
            all.append(IPv4Route(prefix: IPv4Prefix(address: 0, mask: 0), port: 0, gateway: g, metric: 0, kind: .default))
        }
        return all
    }

    /// Every IPv6 route as `ip -6 route` lists them: connected, host, static, default.
    func currentRoutes6() -> [IPv6Route] {
        var all: [IPv6Route] = []
        if hasAddress6, inUse[0] {
            all.append(IPv6Route(prefix: IPv6Prefix(high: address6.high, low: address6.low, length: prefixLength6), port: 0, kind: .connected))
        }
        for i in 1..<max(portCount, 1) where inUse[i] && up[i] {
            for p in portConfigurations[i]?.addresses6 ?? [] {
                all.append(IPv6Route(prefix: p, port: i, metric: portConfigurations[i]?.metric ?? 2, kind: .host))
            }
        }
        all += staticRoutes6.filter { inUse[$0.port] }
        if let g = gateway6, inUse[0] {
            all.append(IPv6Route(prefix: IPv6Prefix(high: 0, low: 0, length: 0), port: 0, gateway: g, kind: .default))
        }
        return all
    }

    /// Compiles the route tables again (after any change to ports, addresses or routes).
    public func rebuildRoutes() {
        routes = IPv4RouteTable(currentRoutes())
        routes6 = IPv6RouteTable(currentRoutes6())
    }

    /// Announces a guest port's addresses on the uplink (its port came up): gratuitous ARP, and an
    /// unsolicited neighbour advertisement for each IPv6 address; and a router advertisement to
    /// the guest when the port has `ra=on`.
    public func announce(port i: Int) {
        guard i != 0, inUse[0], let c = portConfigurations[i] else { return }
        made.count = 0
        for p in c.addresses where p.mask == 0xFFFF_FFFF { sendGratuitousARP(for: p.address) }
        for p in c.addresses6 where p.length == 128 { sendUnsolicitedAdvertisement(for: IPAddress(high: p.high, low: p.low)) }
        if c.routerAdvertisements && up[i] {
            sendRouterAdvertisement(on: i)
            advertisementsSent[i] = 1
            advertisementDeadline[i] = clock &+ 16_000
        }
        transmit(count: 0)
    }

    /// A permanent neighbour (`neigh-add`).
    @discardableResult
    public func addNeighbour(_ a: UInt32, mac m: MACAddress, port p: Int) -> Bool {
        addNeighbour(IPAddress(ipv4: a), mac: m, port: p)
    }

    @discardableResult
    public func addNeighbour(_ a: IPAddress, mac m: MACAddress, port p: Int) -> Bool {
        forgetCachedHops()
        let (ok, released) = neighbours.setPermanent(a, port: p, mac: m, now: clock)
        made.count = 0
        releaseQueued(released)
        transmit(count: 0)
        return ok
    }

    // MARK: filter rules

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

    // MARK: counters and state

    public func portIndex(named name: String) -> Int? { portNames.firstIndex(where: { $0 == name }) }
    public func isUp(_ i: Int) -> Bool { up[i] }
    public var portIndices: [Int] { (0..<portCount).filter { inUse[$0] } }
    public func portCounters(_ i: Int) -> PortCounters { counters[i] }
    public func portEvents(_ i: Int) -> PortEvents {
        if let d = devices[i] { return retiredEvents[i] + d.events }
        return retiredEvents[i]
    }
    public func updatePortEvents() { for i in portIndices { devices[i]?.updateEvents() } }
    /// Drops per reason name, every reason listed.
    public var dropCounters: [String: UInt64] {
        var d: [String: UInt64] = [:]
        for r in RouterDropReason.allCases { d[r.name] = drops[r.rawValue] }
        return d
    }
    public func dropCount(_ r: RouterDropReason) -> UInt64 { drops[r.rawValue] }
}
