// Daemon+Filter: the filter table (ebtables commands, save, restore) and the port properties that
// drive anti-spoofing (guest MACs and IPs).
//
// A bridge's rule set lives in its engine. A command is applied to a copy taken on the dataplane
// thread (with the dataplane's counters), validated there, and the new rule set is compiled and
// installed in the same job between two batches: every frame sees the old rule set or the new
// one, and a refused command leaves the rule set in force untouched. Restore parses the whole
// text on the control thread first; only a valid rule set reaches the dataplane.
//
// ebtables has no bridge argument (its table is per host); here a rule set is per bridge, and a
// command without `--bridge` acts on the only bridge there is.

import SwitchControl
import SwitchCore
import SwitchIO

extension Daemon {
    func executeFilterCommand(_ command: ControlCommand) throws -> ControlResult {
        switch command {
        case .filter(let bridge, let arguments):
            let parsed: FilterCommand
            do { parsed = try FilterParser.parseCommand(arguments) } catch {
                throw CommandError("ebtables syntax: \(error.description)")
            }
            let listing: FilterListing?
            switch try filterTarget(bridge) {
            case .bridge(let r): listing = try applyFilter(parsed, on: r)
            case .router(let r): listing = try applyFilter(parsed, on: r)
            }
            if parsed.isChange { logger.info("filter \(bridge ?? ""): \(arguments.joined(separator: " "))") }
            return listing.map { .filterListing($0) } ?? .done

        case .filterSave(let bridge, let counters):
            switch try filterTarget(bridge) {
            case .bridge(let r): return .filterText(r.sync { $0.engine.currentFilterRules.saveText(counters: counters) })
            case .router(let r): return .filterText(r.sync { $0.engine.currentFilterRules.saveText(counters: counters) })
            }

        case .filterRestore(let bridge, let text):
            let set: FilterRuleSet
            do { set = try FilterRuleSet.restore(text: text) } catch {
                throw CommandError("ebtables-save text: \(error.description)")
            }
            switch try filterTarget(bridge) {
            case .bridge(let r): r.sync { $0.engine.bridgeName = $0.name; $0.engine.setFilter(set) }
            case .router(let r): r.sync { $0.engine.bridgeName = $0.name; $0.engine.setFilter(set) }
            }
            logger.info("filter \(bridge ?? ""): restored \(set.ruleCount) rules in \(set.chains.count) chains")
            return .done

        case .setPort(let bridge, let port, let macs, let ips, let antiSpoofing, let maxMACs, let storm):
            guard let r = bridges[bridge] else { throw CommandError("no such bridge '\(bridge)'") }
            let parsedIPs = try ips.map { try Daemon.parseAddresses($0) }
            let err: String? = r.sync { runner in
                let e = runner.engine
                guard let i = e.portIndex(named: port) else { return "bridge '\(bridge)' has no port '\(port)'" }
                var a = e.portAddresses[i] ?? PortAddresses()
                if let macs { a.macs = macs }
                if let p = parsedIPs { a.ipv4 = p.0; a.ipv6 = p.1 }
                if let antiSpoofing { a.antiSpoofing = antiSpoofing }
                e.setPortAddresses(i, a.isEmpty && a.antiSpoofing == nil ? nil : a)
                if let maxMACs { e.setMACLimit(i, maxMACs) }
                if let storm { Daemon.applyStorm(storm, e, i) }
                return nil
            }
            if let err { throw CommandError(err) }
            return .done

        case .addPortWithAddresses(let bridge, let port, let type, let vlan, let info):
            if info.routerAdvertisements != nil {
                throw CommandError("ra= is an option of a port on a router, and '\(bridge)' is not a router")
            }
            if info.dhcp != nil {
                throw CommandError("dhcp= is an option of a port on a router, and '\(bridge)' is not a router")
            }
            let ips = try Daemon.parseAddresses(info.ips)
            _ = try execute(.addPort(bridge: bridge, port: port, type: type, vlan: vlan))
            let addresses = PortAddresses(macs: info.macs, ipv4: ips.0, ipv6: ips.1, antiSpoofing: info.antiSpoofing)
            bridges[bridge]?.sync { runner in
                guard let i = runner.engine.portIndex(named: port) else { return }
                runner.engine.setPortAddresses(i, addresses.isEmpty && addresses.antiSpoofing == nil ? nil : addresses)
                if let m = info.maxMACs { runner.engine.setMACLimit(i, m) }
                if let storm = info.storm { Daemon.applyStorm(storm, runner.engine, i) }
            }
            return .done

        default:
            throw CommandError("internal: not a filter command")
        }
    }

    private func isZeroingList(_ c: FilterCommand) -> Bool {
        if case .list(_, let o) = c { return o.zero }
        return false
    }

    /// What a filter command acts on: a bridge (its INPUT, FORWARD and OUTPUT chains) or a router
    /// (its FORWARD chain judges routed frames).
    enum FilterTarget {
        case bridge(BridgeRunner)
        case router(RouterRunner)
    }

    /// The named bridge or router, or the only bridge there is.
    private func filterTarget(_ name: String?) throws -> FilterTarget {
        if let n = name, let r = routers[n] { return .router(r) }
        return .bridge(try filterRunner(name))
    }

    /// Applies an ebtables command to a copy of the rule set in force (with the dataplane's
    /// counters), on the dataplane thread, and installs the result there when it changes anything.
    private func applyFilter<E: FilteringEngine>(_ parsed: FilterCommand, on r: DataplaneRunner<E>) throws -> FilterListing? {
        let zeroing = isZeroingList(parsed)
        let outcome: Result<FilterListing?, FilterError> = r.sync { runner in
            var set = runner.engine.currentFilterRules
            do throws(FilterError) {
                let listing = try set.apply(parsed)
                if parsed.isChange || zeroing {
                    runner.engine.bridgeName = runner.name
                    runner.engine.setFilter(set)
                }
                return .success(listing)
            } catch { return .failure(error) }
        }
        switch outcome {
        case .failure(let e): throw CommandError(e.description)
        case .success(let listing): return listing
        }
    }

    /// The bridge a filter command acts on: the named one, or the only one.
    private func filterRunner(_ bridge: String?) throws -> BridgeRunner {
        if let b = bridge {
            guard let r = bridges[b] else { throw CommandError("no such bridge or router '\(b)'") }
            return r
        }
        guard bridges.count == 1, let r = bridges.values.first else {
            throw CommandError(bridges.isEmpty ? "there is no bridge"
                               : "there are \(bridges.count) bridges: say which with --bridge (\(bridges.keys.sorted().joined(separator: ", ")))")
        }
        return r
    }

    static func parseAddresses(_ words: [String]) throws -> ([IPv4Prefix], [IPv6Prefix]) {
        let p = PortAddresses.parseIPs(words)
        if let bad = p.bad { throw CommandError("invalid IP address '\(bad)': expected A.B.C.D[/N] or an IPv6 address[/N]") }
        return (p.v4, p.v6)
    }

    /// `show` fields of port `i`: its anti-spoofing, addresses and MAC limit.
    static func withAddresses(_ info: PortInfo, _ engine: BridgeEngine<SwitchPort>, _ i: Int) -> PortInfo {
        var info = info
        info.antiSpoofing = engine.portAddresses[i]?.enforced ?? false
        info.addresses = addressInfo(engine, i)
        return info
    }

    /// Port `i`'s guest addresses, anti-spoofing and MAC limit as the protocol and the saved
    /// configuration carry them; nil when it has none of them.
    static func addressInfo(_ engine: BridgeEngine<SwitchPort>, _ i: Int) -> PortAddressInfo? {
        let limit = engine.macLimit(i)
        let s = engine.stormLimits(i)
        var info = engine.portAddresses[i].map { PortAddressInfo(macs: $0.macs, ips: $0.ipWords, antiSpoofing: $0.antiSpoofing) }
        if limit > 0 {
            if info == nil { info = PortAddressInfo() }
            info?.maxMACs = limit
        }
        if s.broadcast > 0 || s.multicast > 0 || s.unknown > 0 {
            if info == nil { info = PortAddressInfo() }
            info?.storm = StormLimits(broadcast: s.broadcast > 0 ? s.broadcast : nil, multicast: s.multicast > 0 ? s.multicast : nil,
                                      unknown: s.unknown > 0 ? s.unknown : nil)
        }
        return info
    }

    /// Sets the storm limits given (the others stay as they are).
    static func applyStorm(_ storm: StormLimits, _ engine: BridgeEngine<SwitchPort>, _ i: Int) {
        let old = engine.stormLimits(i)
        engine.setStormLimits(i, broadcast: storm.broadcast ?? old.broadcast, multicast: storm.multicast ?? old.multicast,
                              unknown: storm.unknown ?? old.unknown)
    }
}
