// Daemon+Router: routers (routed mode, Xen's vif-route done in the switch).
//
// A router runs on a dataplane thread of its own (RouterRunner) like a bridge; its engine is
// SwitchRouting's RouterEngine. Bridges and routers share one namespace of names, so `add-port`
// and `del-port` on a router's name add or remove a routed port: `ip=` gives the guest's
// addresses, IPv4 and IPv6 (host routes and anti-spoofing), `mac=` its MAC (used without asking,
// enforced as its source), `ra=on` router advertisements to it. A port named `...-emu` (an HVM guest's emulated tap) or of type tap gets host routes of
// metric 1, a vif metric 2, as vif-route sets them, so the tap wins while both exist. The router's
// MAC defaults to a locally administered address derived from its name, stable across restarts.
// Each port's MTU is read from the interface when it attaches and once a second after that.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SwitchControl
import SwitchCore
import SwitchIO
import SwitchRouting

extension Daemon {
    func runner(router name: String) throws -> RouterRunner {
        guard let r = routers[name] else { throw CommandError("no such router '\(name)'") }
        return r
    }

    /// A stable, locally administered unicast MAC for router `name` (FNV-1a of the name).
    static func routerMAC(_ name: String) -> MACAddress {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return MACAddress(rawValue: 0x0200_0000_0000 | (h & 0x00FF_FFFF_FFFF))
    }

    /// The interface's MTU from sysfs, 1500 when it cannot be read.
    static func interfaceMTU(_ name: String) -> Int {
        guard let text = try? String(contentsOfFile: "/sys/class/net/\(name)/mtu", encoding: .utf8),
              let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return 1500 }
        return n
    }

    func executeRouterCommand(_ command: ControlCommand) throws -> ControlResult {
        switch command {
        case .addRouter(let name, let uplink, let address, let gateway, let mac, let address6, let gateway6, let dns):
            guard bridges[name] == nil, routers[name] == nil else { throw CommandError("a bridge or router named '\(name)' already exists") }
            if let b = bridgeHolding(port: uplink) { throw CommandError("interface '\(uplink)' is already a port of bridge '\(b)'") }
            if let r = routerHolding(port: uplink) { throw CommandError("interface '\(uplink)' is already a port of router '\(r)'") }
            let (a, mask) = ConfigurationRules.routerAddress(address)!
            let device = try openDevice(uplink, type: .system)
            let engine = RouterEngine<SwitchPort>(mac: mac ?? Daemon.routerMAC(name))
            let r = RouterRunner(name: name, engine: engine, logger: logger, spinMicroseconds: spinMicroseconds)
            r.adopt(device)
            do {
                _ = try engine.addPort(name: uplink, device: device, mtu: Daemon.interfaceMTU(uplink))
            } catch {
                device?.close()
                throw CommandError("cannot add the uplink: \(error)")
            }
            r.portTypes[0] = .system
            engine.setAddress(a, mask: mask, gateway: gateway.flatMap { IPv4Prefix.parseAddress($0) })
            if let address6, let (a6, n6) = ConfigurationRules.routerAddress6(address6) {
                engine.setAddress6(IPAddress(high: a6.high, low: a6.low), prefixLength: n6, gateway: gateway6.flatMap { IPAddress($0) })
            } else if let gateway6 {
                engine.setAddress6(nil, gateway: IPAddress(gateway6))
            }
            engine.setDHCPSettings(DHCPSettings(dns: dns.compactMap { IPv4Prefix.parseAddress($0) }))
            r.start()
            routers[name] = r
            logger.info("router \(name) added on \(uplink) (\(address)\(address6.map { " " + $0 } ?? ""))")
            return .done

        case .delRouter(let name):
            let r = try runner(router: name)
            routers[name] = nil
            r.stop()
            logger.info("router \(name) deleted")
            return .done

        case .routeAdd(let router, let prefix, let via, let dev) where IPv4Prefix(prefix) == nil:
            let r = try runner(router: router)
            let p = IPv6Prefix(prefix)!
            let err: String? = r.sync { runner in
                let e = runner.engine
                if let dev {
                    guard let i = e.portIndex(named: dev) else { return "router '\(router)' has no port '\(dev)'" }
                    e.addRoute6(IPv6Route(prefix: p, port: i, kind: .static))
                } else {
                    let g = IPAddress(via!)!
                    if g.high >> 54 == 0x3FA {
                        // A link-local next hop is on the uplink (as `via fe80::1 dev eth0`).
                        e.addRoute6(IPv6Route(prefix: p, port: 0, gateway: g, kind: .static))
                        return nil
                    }
                    let through = e.routes6.lookup(high: g.high, low: g.low)
                    guard through >= 0, e.routes6.gateway(through) == nil else {
                        return "next hop \(via!) is not on a connected network or guest port of '\(router)'"
                    }
                    e.addRoute6(IPv6Route(prefix: p, port: e.routes6.port(through), gateway: g, kind: .static))
                }
                return nil
            }
            if let err { throw CommandError(err) }
            return .done

        case .routeAdd(let router, let prefix, let via, let dev):
            let r = try runner(router: router)
            let p = IPv4Prefix(prefix)!
            let err: String? = r.sync { runner in
                let e = runner.engine
                if let dev {
                    guard let i = e.portIndex(named: dev) else { return "router '\(router)' has no port '\(dev)'" }
                    e.addRoute(IPv4Route(prefix: p, port: i, kind: .static))
                } else {
                    let g = IPv4Prefix.parseAddress(via!)!
                    let through = e.routes.lookup(g)
                    guard through >= 0, e.routes.routes[through].gateway == 0 else {
                        return "next hop \(via!) is not on a connected network or guest port of '\(router)'"
                    }
                    e.addRoute(IPv4Route(prefix: p, port: e.routes.routes[through].port, gateway: g, kind: .static))
                }
                return nil
            }
            if let err { throw CommandError(err) }
            return .done

        case .routeDel(let router, let prefix):
            let r = try runner(router: router)
            let removed: Bool
            if let p = IPv4Prefix(prefix) {
                removed = r.sync { $0.engine.removeRoute(p) }
            } else {
                let p = IPv6Prefix(prefix)!
                removed = r.sync { $0.engine.removeRoute6(p) }
            }
            guard removed else { throw CommandError("router '\(router)' has no static route \(prefix)") }
            return .done

        case .routes(let router):
            let r = try runner(router: router)
            return .routes(r.sync { runner in
                let e = runner.engine
                return e.routes.routes.map { route in
                    RouteInfo(destination: route.kind == .default ? "default" : route.prefix.description,
                              via: route.gateway == 0 ? nil : IPv4Prefix.format(route.gateway),
                              dev: e.portNames[route.port] ?? "?", kind: route.kind.rawValue, metric: route.metric)
                } + e.routes6.routes.map { route in
                    // As `ip -6 route`: a /128 without its length (as a /32 in IPv4), ::/0 as default.
                    let p = route.prefix
                    return RouteInfo(destination: route.kind == .default ? "default" : p.description,
                              via: route.gateway?.description, dev: e.portNames[route.port] ?? "?", kind: route.kind.rawValue,
                              metric: route.metric, family: "ipv6")
                }
            })

        case .neighbours(let router):
            let r = try runner(router: router)
            return .neighbours(r.sync { runner in
                let e = runner.engine
                return e.neighbours.entries().sorted { ($0.port, $0.address) < ($1.port, $1.address) }.map { n in
                    NeighbourInfo(address: n.address.description, mac: n.mac, port: e.portNames[n.port] ?? "?",
                                  state: n.state.name, queued: n.queued)
                }
            })

        case .neighbourAdd(let router, let address, let mac, let port):
            let r = try runner(router: router)
            let a = IPAddress(address)!
            let err: String? = r.sync { runner in
                guard let i = runner.engine.portIndex(named: port) else { return "router '\(router)' has no port '\(port)'" }
                return runner.engine.addNeighbour(a, mac: mac, port: i) ? nil : "the neighbour table of '\(router)' is full"
            }
            if let err { throw CommandError(err) }
            return .done

        case .neighbourDel(let router, let address):
            let r = try runner(router: router)
            let a = IPAddress(address)!
            let found: Bool = r.sync { runner in
                var any = false
                for i in runner.engine.portIndices {
                    if let slots = runner.engine.neighbours.remove(a, port: i) { runner.engine.neighbours.release(slots); any = true }
                }
                return any
            }
            guard found else { throw CommandError("router '\(router)' has no neighbour \(address)") }
            return .done

        case .neighbourFlush(let router, let port):
            let r = try runner(router: router)
            let err: String? = r.sync { runner in
                var index: Int? = nil
                if let port {
                    guard let i = runner.engine.portIndex(named: port) else { return "router '\(router)' has no port '\(port)'" }
                    index = i
                }
                runner.engine.neighbours.release(runner.engine.neighbours.flush(port: index))
                return nil
            }
            if let err { throw CommandError(err) }
            return .done

        case .showRouters:
            return .routers(routers.keys.sorted().map { name in
                routers[name]!.sync { runner -> RouterInfo in
                    let e = runner.engine
                    let ports = e.portIndices.map { i -> RouterPortInfo in
                        let c = e.portConfigurations[i]
                        return RouterPortInfo(name: e.portNames[i] ?? "?", number: i + 1, role: i == 0 ? "uplink" : "guest",
                                              type: runner.portTypes[i] ?? .system, state: e.isUp(i) ? "up" : "down",
                                              addresses: Daemon.ipWords(c), mac: c?.guestMAC,
                                              metric: c?.metric ?? 0, mtu: e.portMTU(i),
                                              routerAdvertisements: c?.routerAdvertisements == true ? true : nil,
                                              dhcp: c?.dhcp == true ? true : nil)
                    }
                    let prefix = e.address.map { a in "\(IPv4Prefix.format(a))/\(e.addressMask.nonzeroBitCount)" }
                    return RouterInfo(name: name, mode: "route", mac: e.mac, address: prefix,
                                      gateway: e.gateway.map(IPv4Prefix.format), ports: ports, address6: Daemon.address6Text(e),
                                      gateway6: e.gateway6?.description, linkLocal: e.linkLocal.description,
                                      dns: Daemon.dnsWords(e))
                }
            })

        default:
            throw CommandError("internal: not a router command")
        }
    }

    /// add-port on a router: a routed guest port.
    func addRouterPort(_ r: RouterRunner, router: String, port: String, type: PortType, addresses: PortAddressInfo) throws {
        if let b = bridgeHolding(port: port) { throw CommandError("port '\(port)' is already on bridge '\(b)'") }
        if let other = routerHolding(port: port) { throw CommandError("port '\(port)' is already on router '\(other)'") }
        let parsed = PortAddresses.parseIPs(addresses.ips)
        guard parsed.bad == nil else { throw CommandError("invalid IP address '\(parsed.bad!)'") }
        guard !parsed.v4.isEmpty || !parsed.v6.isEmpty else {
            throw CommandError("a routed port needs the guest's addresses: ip=\"A [B ...]\"")
        }
        if addresses.maxMACs != nil {
            throw CommandError("max-macs= is an option of a bridge port: a routed port carries its one guest's MAC (mac=)")
        }
        if addresses.storm != nil {
            throw CommandError("storm-...= are options of a bridge port: a router floods nothing")
        }
        if addresses.dhcp == true && parsed.v4.isEmpty {
            throw CommandError("dhcp=on needs an IPv4 address in ip= to hand out")
        }
        if let bad = parsed.v6.first(where: { !ConfigurationRules.isUnicastIPv6(high: $0.high, low: $0.low) || $0.high >> 54 == 0x3FA }) {
            throw CommandError("invalid guest IPv6 address '\(bad)' on a routed port: give global or unique-local unicast addresses (link-local ones need no listing)")
        }
        let device = try openDevice(port, type: type)
        let metric = type == .tap || port.hasSuffix("-emu") ? 1 : 2
        let config = RouterPortConfiguration(addresses: parsed.v4, guestMAC: addresses.macs.first, metric: metric,
                                             antiSpoofing: addresses.antiSpoofing, addresses6: parsed.v6,
                                             routerAdvertisements: addresses.routerAdvertisements ?? false,
                                             dhcp: addresses.dhcp ?? false)
        let mtu = Daemon.interfaceMTU(port)
        let result: Result<Int, RouterError> = r.sync { runner in
            do throws(RouterError) {
                runner.adopt(device)
                let i = try runner.engine.addPort(name: port, configuration: config, device: device, mtu: mtu)
                runner.portTypes[i] = type
                if device != nil { runner.engine.announce(port: i) }
                return .success(i)
            } catch { return .failure(error) }
        }
        if case .failure(let e) = result {
            device?.close()
            throw CommandError("cannot add port '\(port)' to router '\(router)': \(e)")
        }
        logger.info("port \(port) added to router \(router) (\(addresses.ips.joined(separator: " ")))")
    }

    /// A routed port's addresses as `ip=` words: IPv4, then IPv6.
    static func ipWords(_ c: RouterPortConfiguration?) -> [String] {
        (c?.addresses ?? []).map(\.description) + (c?.addresses6 ?? []).map(\.description)
    }

    /// The DHCP server's DNS servers as words, nil when there are none.
    static func dnsWords(_ e: RouterEngine<SwitchPort>) -> [String]? {
        e.dhcpSettings.dns.isEmpty ? nil : e.dhcpSettings.dns.map(IPv4Prefix.format)
    }

    /// The router's IPv6 address as `A6/P6`, nil when it has none.
    static func address6Text(_ e: RouterEngine<SwitchPort>) -> String? {
        e.hasAddress6 ? "\(e.address6)/\(e.prefixLength6)" : nil
    }

    /// The router that has a port of this name, if any.
    func routerHolding(port: String) -> String? {
        for (n, r) in routers where r.sync({ $0.engine.portIndex(named: port) != nil }) { return n }
        return nil
    }

    // MARK: durable configuration (Daemon+Config.swift's snapshot and converge)

    /// The running routers as configuration.
    func routerSnapshot() -> [RouterConfiguration] {
        routers.keys.sorted().map { name in
            routers[name]!.sync { runner -> RouterConfiguration in
                let e = runner.engine
                let address = e.address.map { "\(IPv4Prefix.format($0))/\(e.addressMask.nonzeroBitCount)" } ?? ""
                let ports = e.portIndices.filter { $0 != 0 }.map { i -> RoutedPortConfiguration in
                    let c = e.portConfigurations[i]
                    return RoutedPortConfiguration(name: e.portNames[i] ?? "?", type: runner.portTypes[i] ?? .system,
                                                   ips: Daemon.ipWords(c), mac: c?.guestMAC, antiSpoofing: c?.antiSpoofing,
                                                   routerAdvertisements: c?.routerAdvertisements == true ? true : nil,
                                                   dhcp: c?.dhcp == true ? true : nil)
                }
                let routes = e.staticRoutes.map { r in
                    RouteConfiguration(prefix: r.prefix.description, via: r.gateway == 0 ? nil : IPv4Prefix.format(r.gateway),
                                       dev: r.gateway == 0 ? e.portNames[r.port] : nil)
                } + e.staticRoutes6.map { r in
                    RouteConfiguration(prefix: r.prefix.length == 128 ? r.prefix.description + "/128" : r.prefix.description,
                                       via: r.gateway?.description, dev: r.gateway == nil ? e.portNames[r.port] : nil)
                }
                let rules = e.currentFilterRules.saveText(counters: false)
                return RouterConfiguration(name: name, uplink: e.portNames[0] ?? "", address: address,
                                           gateway: e.gateway.map(IPv4Prefix.format),
                                           mac: e.mac == Daemon.routerMAC(name) ? nil : e.mac, ports: ports, routes: routes,
                                           filterRules: rules == FilterRuleSet().saveText(counters: false) ? nil : rules,
                                           address6: Daemon.address6Text(e), gateway6: e.gateway6?.description,
                                           dns: Daemon.dnsWords(e))
            }
        }
    }

    /// Removes the routers the target does not have (or has with another uplink, address, gateway
    /// or MAC: made again later), and the routed ports it does not have or has otherwise.
    func convergeRoutersRemoving(to target: SwitchConfiguration) throws {
        for r in routerSnapshot() {
            guard let t = target.router(named: r.name), t.uplink == r.uplink, t.address == r.address, t.gateway == r.gateway,
                  Daemon.sameAddress6(t.address6, r.address6), Daemon.sameAddress6(t.gateway6, r.gateway6),
                  (t.dns ?? []).compactMap(IPv4Prefix.parseAddress) == (r.dns ?? []).compactMap(IPv4Prefix.parseAddress),
                  (t.mac ?? Daemon.routerMAC(t.name)) == (r.mac ?? Daemon.routerMAC(r.name)) else {
                _ = try execute(.delRouter(name: r.name))
                continue
            }
            for p in r.ports where !t.ports.contains(p) {
                _ = try execute(.delPort(bridge: r.name, port: p.name))
            }
        }
    }

    /// Two IPv6 addresses (with or without /N) as text are the same, however they are written.
    static func sameAddress6(_ a: String?, _ b: String?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (let x?, let y?): return IPv6Prefix(x.split(separator: "/").first ?? "") == IPv6Prefix(y.split(separator: "/").first ?? "")
                && x.split(separator: "/").dropFirst().first == y.split(separator: "/").dropFirst().first
        default: return false
        }
    }

    /// Makes the routers, routed ports and static routes of the target that are missing.
    func convergeRoutersAdding(to target: SwitchConfiguration) throws {
        for t in target.routers {
            if routers[t.name] == nil {
                _ = try execute(.addRouter(name: t.name, uplink: t.uplink, address: t.address, gateway: t.gateway, mac: t.mac,
                                           address6: t.address6, gateway6: t.gateway6, dns: t.dns ?? []))
            }
            let current = routerSnapshot().first { $0.name == t.name }
            for p in t.ports where !(current?.ports.contains(p) ?? false) {
                _ = try execute(.addPortWithAddresses(bridge: t.name, port: p.name, type: p.type, vlan: .defaultAccess,
                                                      addresses: p.addressInfo))
            }
            let have = Set(current?.routes ?? []), want = Set(t.routes)
            for r in have.subtracting(want) { _ = try execute(.routeDel(router: t.name, prefix: r.prefix)) }
            for r in t.routes where !have.contains(r) {
                _ = try execute(.routeAdd(router: t.name, prefix: r.prefix, via: r.via, dev: r.dev))
            }
            if (current?.filterRules ?? "") != (t.filterRules ?? "") {
                try restoreFilterRules(bridge: t.name, text: t.filterRules ?? "")
            }
        }
    }
}
