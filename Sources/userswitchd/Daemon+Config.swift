// Daemon+Config: the durable, declarative side of the control plane.
//
// The running switch and a `SwitchConfiguration` convert both ways:
// - `snapshot()` reads the running state (bridges, ports, VLAN modes, static FDB entries, guests,
//   filter rules) into a configuration; after every successful command that is not read-only the
//   daemon saves that snapshot through ConfigStore (atomic and durable), so what is saved is what
//   runs, whatever the command was.
// - `converge(to:)` brings the running switch to a configuration with the fewest changes: ports
//   that stay are left alone (no traffic lost), a port whose VLAN mode changed gets the new mode in
//   place; only what differs is removed, re-created or added. Every step goes through `execute`,
//   so restore and `apply` check exactly what the interactive commands check.
// - Restore at start and `apply` are all or nothing: the configuration is validated as a whole
//   first; if a step still fails (a TAP device that cannot be created...), `apply` returns to the
//   previous state and a restore stops the daemon rather than run half a configuration.
//
// Ports whose interface does not exist yet are added down (restore after a reboot, before the
// guests start); DataplaneRunner.checkPorts attaches them when the interface appears.
//
// Everything here runs with the daemon's lock held (from `handle`, or `restore` before the control
// socket is served).

import Foundation
import SwitchControl
import SwitchCore
import SwitchIO

extension Daemon {
    /// Called by `handle` after `execute` succeeded: adds the guests to `show`, and saves the
    /// configuration after any command that may have changed it.
    func afterCommand(_ command: ControlCommand, _ result: ControlResult) throws -> ControlResult {
        if case .show(var list) = result {
            for b in list.indices {
                for p in list[b].ports.indices { list[b].ports[p].guest = portGuests[list[b].ports[p].name] }
            }
            return .show(list)
        }
        guard !command.isReadOnly else { return result }
        try saveConfiguration()
        return result
    }

    /// Saves the running configuration (no-op without a store). A failure is reported to the
    /// client: the change took effect but would not survive a restart.
    func saveConfiguration() throws {
        forgetGuestsOfRemovedPorts()
        guard let store = configStore else { return }
        do throws(ConfigurationError) {
            try store.save(snapshot())
        } catch {
            logger.error("configuration not saved: \(error.message)")
            throw CommandError("the change was made but could not be saved: \(error.message)")
        }
    }

    /// A guest belongs to a port; when the port goes, so does the record (a later port of the same
    /// name is another guest's).
    private func forgetGuestsOfRemovedPorts() {
        guard !portGuests.isEmpty else { return }
        var present = Set<String>()
        for (_, r) in bridges { present.formUnion(r.sync { runner in runner.engine.portIndices.compactMap { runner.engine.portNames[$0] } }) }
        portGuests = portGuests.filter { present.contains($0.key) }
    }

    /// The running state as a configuration (bridges by name, ports in port-number order).
    func snapshot() -> SwitchConfiguration {
        let now = MonotonicClock.milliseconds()
        return SwitchConfiguration(bridges: bridges.keys.sorted().map { name in
            var b: BridgeConfiguration = bridges[name]!.sync { runner in
                let e = runner.engine
                let ports = e.portIndices.map { i in
                    PortConfiguration(name: e.portNames[i]!, type: runner.portTypes[i] ?? .system, vlan: e.portModes[i]!,
                                      addresses: Daemon.addressInfo(e, i))
                }
                // Local entries (a TAP port's MAC) follow their port and are not saved.
                let statics = e.fdb.entries(now: now).filter { $0.isStatic && !$0.isLocal }.compactMap { x in
                    e.portNames[Int(x.port)].map { StaticFDBEntry(mac: x.mac, vlan: x.vlan, port: $0) }
                }.sorted { ($0.port, $0.vlan, $0.mac) < ($1.port, $1.vlan, $1.mac) }
                return BridgeConfiguration(name: name, ageingSeconds: e.settings.ageingMilliseconds / 1000,
                                           fdbCapacity: e.settings.fdbCapacity, ports: ports, staticFDB: statics)
            }
            for k in b.ports.indices { b.ports[k].guest = portGuests[b.ports[k].name] }
            b.filterRules = filterRules(bridge: name)
            return b
        }, routers: routerSnapshot())
    }

    // MARK: commands

    func executeConfigCommand(_ command: ControlCommand) throws -> ControlResult {
        switch command {
        case .setPortGuest(let bridge, let port, let guest):
            guard let r = bridges[bridge] else { throw CommandError("no such bridge '\(bridge)'") }
            guard r.sync({ $0.engine.portIndex(named: port) != nil }) else {
                throw CommandError("bridge '\(bridge)' has no port '\(port)'")
            }
            portGuests[port] = guest
            return .done
        case .configuration:
            return .configuration(snapshot())
        case .apply(let target):
            try apply(target)
            return .done
        default:
            throw CommandError("internal error: \(command) is not a configuration command")
        }
    }

    /// `userswitchctl apply FILE`: all or nothing.
    func apply(_ target: SwitchConfiguration) throws {
        let before = snapshot()
        do {
            try converge(to: target)
        } catch {
            let message = (error as? CommandError)?.message ?? "\(error)"
            do {
                try converge(to: before)
            } catch {
                let again = (error as? CommandError)?.message ?? "\(error)"
                logger.error("apply failed (\(message)) and the previous configuration could not be restored: \(again)")
                throw CommandError("apply failed: \(message); returning to the previous configuration failed too: \(again)")
            }
            throw CommandError("apply failed: \(message); the previous configuration is back in place")
        }
        logger.info("configuration applied: \(target.bridges.count) bridge(s)")
    }

    /// Restores the saved configuration at start, before the control socket is served. Throws
    /// (leaving no bridge behind) when the file is corrupt or cannot be applied as a whole.
    func restore(from store: ConfigStore) throws(ConfigurationError) {
        lock.lock()
        defer { lock.unlock() }
        configStore = nil // restoring is not a change to save
        guard let config = try store.load() else {
            configStore = store
            logger.info("no saved configuration at \(store.path): starting empty")
            return
        }
        do {
            try converge(to: config)
        } catch {
            for (_, r) in bridges { r.stop() }
            bridges.removeAll()
            portGuests.removeAll()
            let message = (error as? CommandError)?.message ?? "\(error)"
            throw ConfigurationError("\(store.path): cannot restore the configuration: \(message)")
        }
        configStore = store
        let ports = config.bridges.reduce(0) { $0 + $1.ports.count }
        logger.info("configuration restored from \(store.path): \(config.bridges.count) bridge(s), \(ports) port(s)")
    }

    /// Brings the running switch to `target` (validated) with the fewest changes.
    func converge(to target: SwitchConfiguration) throws {
        allowMissingInterfaces = true
        defer { allowMissingInterfaces = false }

        // 0. Routers that go or change, and routed ports that go or change (Daemon+Router.swift).
        try convergeRoutersRemoving(to: target)
        // 1. Bridges that go, and those whose FDB capacity changes (the table is sized at creation).
        for b in snapshot().bridges {
            if let t = target.bridge(named: b.name), t.effectiveFDBCapacity == b.effectiveFDBCapacity { continue }
            _ = try execute(.delBridge(name: b.name))
        }
        // 2. Ports that go or change type, before any port is added: a port may move to another bridge.
        for b in snapshot().bridges {
            let t = target.bridge(named: b.name)!
            for p in b.ports {
                if let tp = t.ports.first(where: { $0.name == p.name }), tp.type == p.type { continue }
                _ = try execute(.delPort(bridge: b.name, port: p.name))
            }
        }
        // 3. Bridges, ageing, ports and VLAN modes.
        let live = snapshot()
        for t in target.bridges {
            let current = live.bridge(named: t.name)
            if let current {
                if current.effectiveAgeingSeconds != t.effectiveAgeingSeconds {
                    _ = try execute(.setAgeing(bridge: t.name, seconds: t.effectiveAgeingSeconds))
                }
            } else {
                _ = try execute(.addBridge(name: t.name, ageingSeconds: t.ageingSeconds, fdbCapacity: t.fdbCapacity))
            }
            for p in t.ports {
                let cp = current?.ports.first(where: { $0.name == p.name })
                if let cp {
                    if cp.vlan != p.vlan { try setMode(bridge: t.name, port: p.name, p.vlan) }
                } else {
                    _ = try execute(.addPort(bridge: t.name, port: p.name, type: p.type, vlan: p.vlan))
                }
                // Anti-spoofing addresses, through the same command as `set-port`.
                if (cp?.addresses ?? nil) != p.addresses {
                    let a = p.addresses ?? PortAddressInfo()
                    _ = try execute(.setPort(bridge: t.name, port: p.name, macs: a.macs, ips: a.ips, antiSpoofing: a.antiSpoofing,
                                             maxMACs: a.maxMACs ?? 0,
                                             storm: StormLimits(broadcast: a.storm?.broadcast ?? 0, multicast: a.storm?.multicast ?? 0,
                                                                unknown: a.storm?.unknown ?? 0)))
                }
            }
        }
        // 4. Static FDB entries (removals first: an address may move to another port) and filters.
        let now = snapshot()
        for t in target.bridges {
            let current = now.bridge(named: t.name)!
            let have = Set(current.staticFDB), want = Set(t.staticFDB)
            for e in have.subtracting(want) { _ = try execute(.fdbDel(bridge: t.name, mac: e.mac, vlan: e.vlan)) }
            for e in want.subtracting(have).sorted(by: { ($0.port, $0.vlan, $0.mac) < ($1.port, $1.vlan, $1.mac) }) {
                _ = try execute(.fdbAdd(bridge: t.name, mac: e.mac, vlan: e.vlan, port: e.port))
            }
            if (current.filterRules ?? "") != (t.filterRules ?? "") {
                try restoreFilterRules(bridge: t.name, text: t.filterRules ?? "")
            }
        }
        // 5. Routers, their ports and routes.
        try convergeRoutersAdding(to: target)
        // 6. Guests.
        var guests: [String: GuestInfo] = [:]
        for b in target.bridges { for p in b.ports { if let g = p.guest { guests[p.name] = g } } }
        portGuests = guests
    }

    private func setMode(bridge: String, port: String, _ mode: VLANMode) throws {
        let r = bridges[bridge]!
        let ok: Bool = r.sync { runner in
            guard let i = runner.engine.portIndex(named: port) else { return false }
            return (try? runner.engine.setMode(i, mode)) != nil
        }
        guard ok else { throw CommandError("cannot change the VLAN mode of port '\(port)' on '\(bridge)'") }
        logger.info("port \(port) on \(bridge) now \(mode.summary)")
    }

    // MARK: filter rules — through the filtering commands (filter-save / filter-restore)

    /// The bridge's rule set as `filter-save` prints it, nil when it is the empty default (three
    /// empty chains accepting), so an unfiltered bridge saves no text.
    func filterRules(bridge: String) -> String? {
        guard case .filterText(let text)? = try? execute(.filterSave(bridge: bridge, counters: false)) else { return nil }
        return text == FilterRuleSet().saveText(counters: false) ? nil : text
    }

    /// Replaces the bridge's rule set with `text` (ebtables-save syntax; empty: no rules), through
    /// the same code path as `filter-restore`.
    func restoreFilterRules(bridge: String, text: String) throws {
        _ = try execute(.filterRestore(bridge: bridge, text: text.isEmpty ? FilterRuleSet().saveText(counters: false) : text))
    }
}
