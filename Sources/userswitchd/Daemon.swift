// Daemon: the control plane of userswitchd.
//
// It owns the set of bridges (each a BridgeRunner with its own dataplane thread), validates every
// control command completely before changing anything, and carries changes to a bridge's
// dataplane as jobs that run between batches. Commands are serialised by one lock: the control
// socket serves one client at a time anyway, and the netlink watcher takes the same lock.
//
// Opening a port's backend (AF_PACKET socket and rings, or a TAP device) happens here, on the
// control thread, before the port is handed to its runner, so a failure leaves the bridge as it was.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SwitchControl
import SwitchCore
import SwitchIO

final class Daemon: ControlHandler, @unchecked Sendable {
    let logger: Logger
    let lock = NSLock()
    var bridges: [String: BridgeRunner] = [:]
    /// Routers (Daemon+Router.swift); their names share the bridges' namespace.
    var routers: [String: RouterRunner] = [:]
    /// Durable configuration (Daemon+Config.swift): saved after every successful change; nil in
    /// tests that run without a file.
    var configStore: ConfigStore?
    /// Port name -> the guest behind it (port names are unique across bridges).
    var portGuests: [String: GuestInfo] = [:]
    /// Restore and apply add ports whose interface does not exist yet (down until it appears);
    /// an interactive add-port refuses them, as a typo is more likely than a guest not yet there.
    var allowMissingInterfaces = false

    /// `userswitchd --spin-us`: how long a bridge's thread polls after the last frame.
    let spinMicroseconds: UInt64

    init(logger: Logger, spinMicroseconds: UInt64 = DataplaneTuning.defaultSpinMicroseconds) {
        self.logger = logger
        self.spinMicroseconds = spinMicroseconds
    }

    func handle(_ request: ControlRequest) -> ControlResponse {
        lock.lock()
        defer { lock.unlock() }
        do {
            var r = try execute(request.command)
            r = try afterCommand(request.command, r) // Daemon+Config.swift: guests in show, save
            return .success(r)
        } catch let e as CommandError {
            logger.debug("command refused: \(e.message)")
            return .failure(e.message)
        } catch {
            return .failure("\(error)")
        }
    }

    /// Stops every bridge: dataplane threads joined, rings unmapped, TAP devices removed.
    func shutdown() {
        lock.lock()
        defer { lock.unlock() }
        for (_, r) in bridges { r.stop() }
        bridges.removeAll()
        for (_, r) in routers { r.stop() }
        routers.removeAll()
    }

    /// A link appeared or vanished: let the bridges that have a port of that name look now rather
    /// than at their next once-a-second check.
    func linkChanged(name: String) {
        lock.lock()
        defer { lock.unlock() }
        for (_, r) in bridges {
            r.async { runner in
                if runner.engine.portIndex(named: name) != nil { runner.checkPorts() }
            }
        }
        for (_, r) in routers {
            r.async { runner in
                if runner.engine.portIndex(named: name) != nil { runner.checkPorts() }
            }
        }
    }

    struct CommandError: Error { let message: String; init(_ m: String) { message = m } }

    private func runner(_ name: String) throws -> BridgeRunner {
        guard let r = bridges[name] else { throw CommandError("no such bridge '\(name)'") }
        return r
    }

    /// Opens the backend of a new port: an AF_PACKET port on an existing interface, or a TAP device
    /// the switch creates. A missing interface is an error, except during restore and apply, where
    /// the port waits down (nil) and DataplaneRunner.checkPorts attaches it when it appears.
    func openDevice(_ port: String, type: PortType) throws -> SwitchPort? {
        switch type {
        case .system:
            if if_nametoindex(port) == 0 {
                guard allowMissingInterfaces else { throw CommandError("no such network interface '\(port)'") }
                return nil
            }
            do { return .packet(try PacketSocketPort(interface: port, options: DataplaneTuning.portOptions)) } catch {
                throw CommandError("cannot attach '\(port)': \(error)")
            }
        case .tap:
            guard if_nametoindex(port) == 0 else {
                throw CommandError("cannot create TAP device '\(port)': an interface of that name exists")
            }
            do { return .tap(try TapPort(name: port)) } catch { throw CommandError("cannot create TAP device '\(port)': \(error)") }
        }
    }

    /// Removes port `port` (never index `keeping`, a router's uplink) from a runner's engine and
    /// closes its backend; false when the engine has no such port.
    func removePort<E: RunnerEngine>(_ port: String, from r: DataplaneRunner<E>, keeping: Int? = nil) -> Bool {
        r.sync { runner in
            guard let i = runner.engine.portIndex(named: port), i != keeping else { return false }
            let d = try? runner.engine.removePort(i)
            runner.portTypes[i] = nil
            if let d = d ?? nil { runner.retire(d) }
            return true
        }
    }

    /// The bridge that has a port of this name, if any.
    func bridgeHolding(port: String) -> String? {
        for (b, r) in bridges where r.sync({ $0.engine.portIndex(named: port) != nil }) { return b }
        return nil
    }

    func execute(_ command: ControlCommand) throws -> ControlResult {
        // Arguments no state could make valid are refused by the rules the loader uses too.
        do throws(ConfigurationError) { try command.validate() } catch { throw CommandError(error.message) }
        switch command {
        case .setPortGuest, .apply, .configuration:
            return try executeConfigCommand(command) // Daemon+Config.swift
        case .addRouter, .delRouter, .routeAdd, .routeDel, .routes, .neighbours, .neighbourAdd, .neighbourDel,
             .neighbourFlush, .showRouters:
            return try executeRouterCommand(command) // Daemon+Router.swift
        case .addPortWithAddresses(let name, let port, let type, _, let addresses) where routers[name] != nil:
            try addRouterPort(routers[name]!, router: name, port: port, type: type, addresses: addresses)
            return .done
        case .addPort(let name, _, _, _) where routers[name] != nil:
            throw CommandError("a routed port needs the guest's addresses: ip=\"A [B ...]\"")
        case .delPort(let name, let port) where routers[name] != nil:
            guard removePort(port, from: routers[name]!, keeping: 0) else { throw CommandError("router '\(name)' has no guest port '\(port)'") }
            logger.info("port \(port) removed from router \(name)")
            return .done
        case .filter, .filterSave, .filterRestore, .setPort, .addPortWithAddresses:
            return try executeFilterCommand(command) // Daemon+Filter.swift

        case .addBridge(let name, let ageing, let capacity):
            guard bridges[name] == nil else { throw CommandError("bridge '\(name)' already exists") }
            guard routers[name] == nil else { throw CommandError("a router named '\(name)' already exists") }
            var settings = BridgeSettings()
            if let a = ageing { settings.ageingMilliseconds = a * 1000 }
            if let c = capacity { settings.fdbCapacity = c }
            let r = BridgeRunner(name: name, engine: BridgeEngine(settings: settings), logger: logger, spinMicroseconds: spinMicroseconds)
            r.start()
            bridges[name] = r
            logger.info("bridge \(name) added")
            return .done

        case .delBridge(let name):
            let r = try runner(name)
            bridges[name] = nil
            r.stop()
            logger.info("bridge \(name) deleted")
            return .done

        case .addPort(let bridge, let port, let type, let vlan):
            let r = try runner(bridge)
            if let b = bridgeHolding(port: port) { throw CommandError("port '\(port)' is already on bridge '\(b)'") }
            let device = try openDevice(port, type: type)
            let result: Result<Int, BridgeError> = r.sync { runner in
                do throws(BridgeError) {
                    runner.adopt(device)
                    let i = try runner.engine.addPort(name: port, mode: vlan, device: device)
                    runner.portTypes[i] = type
                    runner.engine.setLocal(i, type == .tap) // the bridge's own port for INPUT/OUTPUT
                    // dom0's MAC on its TAP port: a local FDB entry no guest can take over.
                    if case .tap(let t)? = device { runner.engine.setLocalMAC(i, t.macAddress) }
                    return .success(i)
                } catch { return .failure(error) }
            }
            if case .failure(let e) = result {
                device?.close()
                throw CommandError("cannot add port '\(port)' to '\(bridge)': \(e)")
            }
            logger.info("port \(port) added to \(bridge) (\(type.rawValue), \(vlan.summary))")
            return .done

        case .delPort(let bridge, let port):
            guard removePort(port, from: try runner(bridge)) else { throw CommandError("bridge '\(bridge)' has no port '\(port)'") }
            logger.info("port \(port) removed from \(bridge)")
            return .done

        case .show:
            return .show(bridges.keys.sorted().map { name in
                bridges[name]!.sync { runner -> BridgeInfo in
                    let e = runner.engine
                    let ports = e.portIndices.map { i in
                        Daemon.withAddresses(PortInfo(name: e.portNames[i]!, number: i + 1, type: runner.portTypes[i] ?? .system,
                                 vlan: e.portModes[i]!, state: e.isUp(i) ? "up" : "down"), e, i) // Daemon+Filter.swift
                    }
                    return BridgeInfo(name: name, ageingSeconds: e.settings.ageingMilliseconds / 1000,
                                      fdbCapacity: e.settings.fdbCapacity, ports: ports)
                }
            })

        case .fdb(let bridge):
            let r = try runner(bridge)
            let now = MonotonicClock.milliseconds()
            return .fdb(r.sync { runner in
                let e = runner.engine
                return e.fdb.entries(now: now)
                    .sorted { ($0.port, $0.vlan, $0.mac) < ($1.port, $1.vlan, $1.mac) }
                    .map { x in
                        FDBEntryInfo(port: e.portNames[Int(x.port)] ?? "?", portNumber: Int(x.port) + 1, vlan: x.vlan,
                                     mac: x.mac, isStatic: x.isStatic, ageSeconds: Double(x.ageMilliseconds) / 1000)
                    }
            })

        case .fdbAdd(let bridge, let mac, let vlan, let port):
            let r = try runner(bridge)
            let err: String? = r.sync { runner in
                let e = runner.engine
                guard let i = e.portIndex(named: port) else { return "bridge '\(bridge)' has no port '\(port)'" }
                guard e.portModes[i]!.members.contains(vlan) else { return "port '\(port)' is not a member of VLAN \(vlan)" }
                return e.fdb.addStatic(vlan: vlan, mac: mac, port: UInt16(i)) ? nil : "forwarding database of '\(bridge)' is full"
            }
            if let err { throw CommandError(err) }
            return .done

        case .fdbDel(let bridge, let mac, let vlan):
            let r = try runner(bridge)
            let ok = r.sync { $0.engine.fdb.remove(vlan: vlan, mac: mac) }
            guard ok else { throw CommandError("bridge '\(bridge)' has no FDB entry for \(mac) in VLAN \(vlan)") }
            return .done

        case .setAgeing(let bridge, let seconds):
            let r = try runner(bridge)
            r.sync { $0.engine.setAgeing(milliseconds: seconds * 1000) }
            return .done

        case .stats(let bridge, let port):
            var names = bridges.keys.sorted()
            if let b = bridge {
                if routers[b] != nil { names = [] } else {
                    _ = try runner(b)
                    names = [b]
                }
            }
            var out: [BridgeStats] = names.map { name in
                bridges[name]!.sync { runner -> BridgeStats in
                    let e = runner.engine
                    e.updatePortEvents()
                    let drops = e.dropCounters
                    let ports = e.portIndices.map { i in
                        PortStats(name: e.portNames[i]!, up: e.isUp(i), counters: e.portCounters(i), events: e.portEvents(i))
                    }
                    return BridgeStats(name: name, ports: ports, drops: drops.byName, fdbEntries: e.fdb.count)
                }
            }
            if bridge == nil || routers[bridge!] != nil {
                for name in routers.keys.sorted() where bridge == nil || bridge == name {
                    out.append(routers[name]!.sync { runner -> BridgeStats in
                        let e = runner.engine
                        e.updatePortEvents()
                        let ports = e.portIndices.map { i in
                            PortStats(name: e.portNames[i]!, up: e.isUp(i), counters: e.portCounters(i), events: e.portEvents(i))
                        }
                        return BridgeStats(name: name, ports: ports, drops: e.dropCounters, fdbEntries: e.neighbours.count,
                                           kind: "router", routerEvents: e.events.byName)
                    })
                }
            }
            if let p = port {
                out = out.compactMap { b in
                    let ps = b.ports.filter { $0.name == p }
                    return ps.isEmpty ? nil : BridgeStats(name: b.name, ports: ps, drops: b.drops, fdbEntries: b.fdbEntries,
                                                         kind: b.kind, routerEvents: b.routerEvents)
                }
                guard !out.isEmpty else { throw CommandError("no port '\(p)' on \(bridge.map { "bridge '\($0)'" } ?? "any bridge")") }
            }
            return .stats(out)
        }
    }
}
