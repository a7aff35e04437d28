// RouterConfiguration: the saved form of a router (routed mode): its uplink, IPv4 and IPv6
// addresses and gateways, MAC, its guest ports with their addresses, and its static routes. Part of SwitchConfiguration
// (`routers`), checked by the same rules as the commands that make a router
// (ConfigurationRules), and brought into the running switch by the daemon's converge, as bridges.

import SwitchCore

public struct RouterConfiguration: Equatable, Sendable, Codable {
    public var name: String
    /// `route` (the only mode so far).
    public var mode: String
    public var uplink: String
    /// The router's own address and the uplink's prefix length, `A.B.C.D/N`.
    public var address: String
    public var gateway: String?
    /// The router's IPv6 address on the uplink `A6/P6` and the IPv6 default gateway; nil: none.
    public var address6: String?
    public var gateway6: String?
    /// nil: derived from the name.
    public var mac: MACAddress?
    /// DNS servers the DHCP server hands out; nil: none.
    public var dns: [String]?
    public var ports: [RoutedPortConfiguration]
    public var routes: [RouteConfiguration]
    /// The router's filter rules in ebtables-save syntax (its FORWARD chain judges routed frames);
    /// nil when it has none.
    public var filterRules: String?

    public init(name: String, mode: String = "route", uplink: String, address: String, gateway: String? = nil,
                mac: MACAddress? = nil, ports: [RoutedPortConfiguration] = [], routes: [RouteConfiguration] = [],
                filterRules: String? = nil, address6: String? = nil, gateway6: String? = nil, dns: [String]? = nil) {
        self.name = name; self.mode = mode; self.uplink = uplink; self.address = address; self.gateway = gateway
        self.mac = mac; self.ports = ports; self.routes = routes; self.filterRules = filterRules
        self.address6 = address6; self.gateway6 = gateway6; self.dns = dns
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name, mode, uplink, address, gateway, address6, gateway6, mac, dns, ports, routes, filterRules
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a router")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        mode = try c.decodeIfPresent(String.self, forKey: .mode) ?? "route"
        uplink = try c.decode(String.self, forKey: .uplink)
        address = try c.decode(String.self, forKey: .address)
        gateway = try c.decodeIfPresent(String.self, forKey: .gateway)
        address6 = try c.decodeIfPresent(String.self, forKey: .address6)
        gateway6 = try c.decodeIfPresent(String.self, forKey: .gateway6)
        mac = try c.decodeIfPresent(MACAddress.self, forKey: .mac)
        dns = try c.decodeIfPresent([String].self, forKey: .dns)
        ports = try c.decodeIfPresent([RoutedPortConfiguration].self, forKey: .ports) ?? []
        routes = try c.decodeIfPresent([RouteConfiguration].self, forKey: .routes) ?? []
        filterRules = try c.decodeIfPresent(String.self, forKey: .filterRules)
    }
}

/// A routed guest port: its interface, type, the guest's addresses and MAC, router advertisements.
public struct RoutedPortConfiguration: Equatable, Sendable, Codable {
    public var name: String
    public var type: PortType
    public var ips: [String]
    public var mac: MACAddress?
    public var antiSpoofing: Bool?
    /// `ra=on`; nil: off.
    public var routerAdvertisements: Bool?
    /// `dhcp=on`; nil: off.
    public var dhcp: Bool?

    public init(name: String, type: PortType = .system, ips: [String], mac: MACAddress? = nil, antiSpoofing: Bool? = nil,
                routerAdvertisements: Bool? = nil, dhcp: Bool? = nil) {
        self.name = name; self.type = type; self.ips = ips; self.mac = mac; self.antiSpoofing = antiSpoofing
        self.routerAdvertisements = routerAdvertisements; self.dhcp = dhcp
    }

    /// The addresses as add-port carries them.
    public var addressInfo: PortAddressInfo {
        PortAddressInfo(macs: mac.map { [$0] } ?? [], ips: ips, antiSpoofing: antiSpoofing, routerAdvertisements: routerAdvertisements,
                        dhcp: dhcp)
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case name, type, ips, mac, antiSpoofing, routerAdvertisements, dhcp }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a routed port")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        type = try c.decodeIfPresent(PortType.self, forKey: .type) ?? .system
        ips = try c.decodeIfPresent([String].self, forKey: .ips) ?? []
        mac = try c.decodeIfPresent(MACAddress.self, forKey: .mac)
        antiSpoofing = try c.decodeIfPresent(Bool.self, forKey: .antiSpoofing)
        routerAdvertisements = try c.decodeIfPresent(Bool.self, forKey: .routerAdvertisements)
        dhcp = try c.decodeIfPresent(Bool.self, forKey: .dhcp)
    }
}

/// A static route: `prefix` via a next hop or out of a port of the router.
public struct RouteConfiguration: Equatable, Hashable, Sendable, Codable {
    public var prefix: String
    public var via: String?
    public var dev: String?
    public init(prefix: String, via: String? = nil, dev: String? = nil) { self.prefix = prefix; self.via = via; self.dev = dev }

    private enum CodingKeys: String, CodingKey, CaseIterable { case prefix, via, dev }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a route")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prefix = try c.decode(String.self, forKey: .prefix)
        via = try c.decodeIfPresent(String.self, forKey: .via)
        dev = try c.decodeIfPresent(String.self, forKey: .dev)
    }
}

extension SwitchConfiguration {
    /// The routers' part of `validate()`: the rules of add-router, add-port on a router and
    /// route-add, and one namespace of names and ports across bridges and routers.
    func validateRouters(bridgeNames: Set<String>, portsOnBridges: [String: String]) throws(ConfigurationError) {
        var names = bridgeNames
        var owner = portsOnBridges
        for (ri, r) in routers.enumerated() {
            let at = "routers[\(ri)] '\(r.name)'"
            guard r.mode == "route" else { throw ConfigurationError("\(at): unknown mode '\(r.mode)' (expected route)") }
            let command = ControlCommand.addRouter(name: r.name, uplink: r.uplink, address: r.address, gateway: r.gateway, mac: r.mac,
                                                   address6: r.address6, gateway6: r.gateway6, dns: r.dns ?? [])
            do throws(ConfigurationError) { try command.validate() } catch { throw ConfigurationError("\(at): \(error.message)") }
            guard names.insert(r.name).inserted else { throw ConfigurationError("\(at): a bridge or router named '\(r.name)' is listed already") }
            var mine = Set<String>()
            func claim(_ port: String, _ pat: String) throws(ConfigurationError) {
                if let other = owner[port] {
                    throw ConfigurationError(other == r.name ? "\(pat): port listed twice" : "\(pat): port is also on '\(other)'")
                }
                owner[port] = r.name
                mine.insert(port)
            }
            try claim(r.uplink, "\(at): uplink '\(r.uplink)'")
            for (pi, p) in r.ports.enumerated() {
                let pat = "\(at): ports[\(pi)] '\(p.name)'"
                try claim(p.name, pat)
                let port = ControlCommand.addPortWithAddresses(bridge: r.name, port: p.name, type: p.type, vlan: .defaultAccess,
                                                                addresses: p.addressInfo)
                do throws(ConfigurationError) { try port.validate() } catch { throw ConfigurationError("\(pat): \(error.message)") }
                guard !p.ips.isEmpty else {
                    throw ConfigurationError("\(pat): a routed port needs the guest's addresses in ips")
                }
                if p.dhcp == true && !p.ips.contains(where: { IPv4Prefix.parseAddress($0) != nil || IPv4Prefix($0) != nil }) {
                    throw ConfigurationError("\(pat): dhcp needs an IPv4 address in ips to hand out")
                }
            }
            if let text = r.filterRules, let problem = ConfigurationRules.problem(withFilterRules: text) {
                throw ConfigurationError("\(at): filterRules: \(problem)")
            }
            for (ki, route) in r.routes.enumerated() {
                let rat = "\(at): routes[\(ki)] \(route.prefix)"
                let command = ControlCommand.routeAdd(router: r.name, prefix: route.prefix, via: route.via, dev: route.dev)
                do throws(ConfigurationError) { try command.validate() } catch { throw ConfigurationError("\(rat): \(error.message)") }
                if let d = route.dev, !mine.contains(d) { throw ConfigurationError("\(rat): router has no port '\(d)'") }
            }
        }
    }
}
