// The declarative configuration of the whole switch, as saved by userswitchd and as written by an
// operator for `userswitchctl apply FILE` (docs/configuration.md).
//
// One JSON document: bridges with their ageing and FDB capacity, each with its ports (type, VLAN
// mode, the guest behind it), its static FDB entries and its filter rule set as ebtables-save text.
// The daemon's running state and this model convert both ways: the daemon snapshots itself into a
// `SwitchConfiguration` after every change, and brings itself to one at start and on `apply`.
//
// A file written by hand must never be half understood: every object refuses keys it does not
// know (a typo like `ageing` for `ageingSeconds` would otherwise be silently ignored), and
// `validate()` checks everything the daemon would refuse (names, VLAN ranges, a port on two
// bridges, a static entry on a port that is not in its VLAN, filter rules that do not parse...)
// with a message naming the place in the file, so `apply` and a restart either take the whole file
// or nothing. Its rules are ConfigurationRules (ConfigurationRules.swift), the same the daemon's
// commands are checked with.

#if canImport(Glibc)
import Glibc
#endif
import SwitchCore

public struct SwitchConfiguration: Equatable, Sendable {
    public static let currentVersion = 1
    /// Format version of the file, so that a later format can refuse or convert an older one.
    public var version: Int
    public var bridges: [BridgeConfiguration]
    /// Routers (RouterConfiguration.swift); absent from the file when there are none.
    public var routers: [RouterConfiguration]

    public init(version: Int = SwitchConfiguration.currentVersion, bridges: [BridgeConfiguration] = [],
                routers: [RouterConfiguration] = []) {
        self.version = version
        self.bridges = bridges
        self.routers = routers
    }

    public func bridge(named name: String) -> BridgeConfiguration? { bridges.first { $0.name == name } }
    public func router(named name: String) -> RouterConfiguration? { routers.first { $0.name == name } }
}

public struct BridgeConfiguration: Equatable, Sendable {
    public var name: String
    /// nil: the default (300 s).
    public var ageingSeconds: UInt32?
    /// nil: the default (65536 entries).
    public var fdbCapacity: Int?
    public var ports: [PortConfiguration]
    public var staticFDB: [StaticFDBEntry]
    /// The bridge's filter rule set in `ebtables-save` syntax (what `userswitchctl filter-save`
    /// prints and `filter-restore` reads); nil when the bridge has no rules.
    public var filterRules: String?

    public init(name: String, ageingSeconds: UInt32? = nil, fdbCapacity: Int? = nil,
                ports: [PortConfiguration] = [], staticFDB: [StaticFDBEntry] = [], filterRules: String? = nil) {
        self.name = name
        self.ageingSeconds = ageingSeconds
        self.fdbCapacity = fdbCapacity
        self.ports = ports
        self.staticFDB = staticFDB
        self.filterRules = filterRules
    }

    public var effectiveAgeingSeconds: UInt32 { ageingSeconds ?? BridgeSettings.defaultAgeingSeconds }
    public var effectiveFDBCapacity: Int { fdbCapacity ?? BridgeSettings.defaultFDBCapacity }
}

public struct PortConfiguration: Equatable, Sendable {
    public var name: String
    public var type: PortType
    public var vlan: VLANMode
    /// The guest behind the port (set by vif-userswitch), nil for other ports.
    public var guest: GuestInfo?
    /// The addresses the port may send from and whether anti-spoofing enforces them (add-port
    /// mac=/ip=/anti-spoofing=, set-port); nil: none.
    public var addresses: PortAddressInfo?

    public init(name: String, type: PortType = .system, vlan: VLANMode = .defaultAccess, guest: GuestInfo? = nil,
                addresses: PortAddressInfo? = nil) {
        self.name = name
        self.type = type
        self.vlan = vlan
        self.guest = guest
        self.addresses = addresses
    }
}

public struct StaticFDBEntry: Equatable, Hashable, Sendable {
    public var mac: MACAddress
    public var vlan: UInt16
    public var port: String

    public init(mac: MACAddress, vlan: UInt16 = VLANID.default, port: String) {
        self.mac = mac
        self.vlan = vlan
        self.port = port
    }
}

// MARK: - JSON form

/// Any key, for finding the keys an object has that its type does not know.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

/// Throws for a key of the decoder's object that is not in `allowed`.
func rejectUnknownKeys(_ decoder: any Decoder, allowed: [String], in what: String) throws {
    let c = try decoder.container(keyedBy: AnyCodingKey.self)
    for key in c.allKeys where !allowed.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(
            codingPath: decoder.codingPath + [key],
            debugDescription: "unknown key '\(key.stringValue)' in \(what) (expected \(allowed.joined(separator: ", ")))"))
    }
}

extension SwitchConfiguration: Codable {
    private enum CodingKeys: String, CodingKey, CaseIterable { case version, bridges, routers }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "the configuration")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? SwitchConfiguration.currentVersion
        bridges = try c.decodeIfPresent([BridgeConfiguration].self, forKey: .bridges) ?? []
        routers = try c.decodeIfPresent([RouterConfiguration].self, forKey: .routers) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version)
        try c.encode(bridges, forKey: .bridges)
        if !routers.isEmpty { try c.encode(routers, forKey: .routers) }
    }
}

extension BridgeConfiguration: Codable {
    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name, ageingSeconds, fdbCapacity, ports, staticFDB, filterRules
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a bridge")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        ageingSeconds = try c.decodeIfPresent(UInt32.self, forKey: .ageingSeconds)
        fdbCapacity = try c.decodeIfPresent(Int.self, forKey: .fdbCapacity)
        ports = try c.decodeIfPresent([PortConfiguration].self, forKey: .ports) ?? []
        staticFDB = try c.decodeIfPresent([StaticFDBEntry].self, forKey: .staticFDB) ?? []
        filterRules = try c.decodeIfPresent(String.self, forKey: .filterRules)
    }
}

extension PortConfiguration: Codable {
    private enum CodingKeys: String, CodingKey, CaseIterable { case name, type, vlan, guest, addresses }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a port")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        if let t = try c.decodeIfPresent(String.self, forKey: .type) {
            guard let parsed = PortType(rawValue: t) else {
                throw DecodingError.dataCorruptedError(forKey: .type, in: c,
                    debugDescription: "unknown port type '\(t)' (expected system or tap)")
            }
            type = parsed
        } else {
            type = .system
        }
        vlan = try c.decodeIfPresent(VLANMode.self, forKey: .vlan) ?? .defaultAccess
        guest = try c.decodeIfPresent(GuestInfo.self, forKey: .guest)
        addresses = try c.decodeIfPresent(PortAddressInfo.self, forKey: .addresses)
    }
}

extension StaticFDBEntry: Codable {
    private enum CodingKeys: String, CodingKey, CaseIterable { case mac, vlan, port }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a static FDB entry")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mac = try c.decode(MACAddress.self, forKey: .mac)
        vlan = try c.decodeIfPresent(UInt16.self, forKey: .vlan) ?? VLANID.default
        port = try c.decode(String.self, forKey: .port)
    }
}

// MARK: - validation

public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension SwitchConfiguration {
    /// Throws the first problem found, naming its place (`bridges[1] 'xenbr1': ports[0] 'vif3.0': ...`).
    public func validate() throws(ConfigurationError) {
        guard version == SwitchConfiguration.currentVersion else {
            throw ConfigurationError("unsupported configuration version \(version) (this userswitch reads version \(SwitchConfiguration.currentVersion))")
        }
        var bridgeOf: [String: String] = [:] // port -> bridge, across all bridges
        var bridgeNames = Set<String>()
        for (bi, b) in bridges.enumerated() {
            let at = "bridges[\(bi)] '\(b.name)'"
            guard ConfigurationRules.isValidBridgeName(b.name) else {
                throw ConfigurationError("bridges[\(bi)]: invalid bridge name '\(b.name)': use 1-15 letters, digits, '-' or '_'")
            }
            guard bridgeNames.insert(b.name).inserted else { throw ConfigurationError("\(at): bridge '\(b.name)' is listed twice") }
            if let a = b.ageingSeconds, !ConfigurationRules.ageingRange.contains(a) {
                throw ConfigurationError("\(at): invalid ageingSeconds \(a): expected 1 to 1000000")
            }
            if let c = b.fdbCapacity, !ConfigurationRules.fdbCapacityRange.contains(c) {
                throw ConfigurationError("\(at): invalid fdbCapacity \(c): expected 1 to 16777216")
            }
            var modes: [String: VLANMode] = [:]
            for (pi, p) in b.ports.enumerated() {
                let pat = "\(at): ports[\(pi)] '\(p.name)'"
                guard ConfigurationRules.isValidInterfaceName(p.name) else {
                    throw ConfigurationError("\(at): ports[\(pi)]: invalid interface name '\(p.name)': 1 to 15 characters, no '/', ':' or whitespace")
                }
                if let other = bridgeOf[p.name] {
                    throw ConfigurationError(other == b.name ? "\(pat): port listed twice"
                                                             : "\(pat): port is also on bridge '\(other)'")
                }
                bridgeOf[p.name] = b.name
                if let problem = ConfigurationRules.problem(with: p.vlan) { throw ConfigurationError("\(pat): \(problem)") }
                if let g = p.guest {
                    do throws(ConfigurationError) { try g.validate() } catch { throw ConfigurationError("\(pat): guest: \(error.message)") }
                }
                if let a = p.addresses {
                    for m in a.macs where !ConfigurationRules.isValidStationMAC(m) {
                        throw ConfigurationError("\(pat): addresses: invalid MAC \(m): must be a unicast, non-zero MAC")
                    }
                    for ip in a.ips where !ConfigurationRules.isValidAddress(ip) {
                        throw ConfigurationError("\(pat): addresses: invalid address '\(ip)': expected IPv4 or IPv6, optionally /PREFIX")
                    }
                }
                modes[p.name] = p.vlan
            }
            if let text = b.filterRules, let problem = ConfigurationRules.problem(withFilterRules: text) {
                throw ConfigurationError("\(at): filterRules: \(problem)")
            }
            guard b.staticFDB.count <= b.effectiveFDBCapacity else {
                throw ConfigurationError("\(at): \(b.staticFDB.count) static FDB entries exceed the fdbCapacity of \(b.effectiveFDBCapacity)")
            }
            var keys = Set<FDBKey>()
            for (ei, e) in b.staticFDB.enumerated() {
                let eat = "\(at): staticFDB[\(ei)] \(e.mac)"
                guard ConfigurationRules.isValidStationMAC(e.mac) else { throw ConfigurationError("\(eat): must be a unicast, non-zero MAC") }
                guard VLANID.valid.contains(e.vlan) else { throw ConfigurationError("\(eat): invalid VLAN \(e.vlan): expected 1 to 4094") }
                guard let mode = modes[e.port] else { throw ConfigurationError("\(eat): bridge has no port '\(e.port)'") }
                guard mode.members.contains(e.vlan) else {
                    throw ConfigurationError("\(eat): port '\(e.port)' is not a member of VLAN \(e.vlan)")
                }
                guard keys.insert(FDBKey(vlan: e.vlan, mac: e.mac)).inserted else {
                    throw ConfigurationError("\(eat): listed twice for VLAN \(e.vlan)")
                }
            }
        }
        try validateRouters(bridgeNames: bridgeNames, portsOnBridges: bridgeOf)
    }
}

extension GuestInfo {
    /// Names and UUIDs come from xenstore; bound them so a listing stays one line per port.
    public func validate() throws(ConfigurationError) {
        if let n = name {
            guard !n.isEmpty, n.utf8.count <= 256, !n.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw ConfigurationError("invalid guest name '\(n)': 1 to 256 characters, no control characters")
            }
        }
        if let u = uuid {
            guard !u.isEmpty, u.utf8.count <= 64, u.allSatisfy({ $0.isASCII && ($0.isHexDigit || $0 == "-") }) else {
                throw ConfigurationError("invalid guest UUID '\(u)': expected hex digits and '-'")
            }
        }
        if let m = mac, !ConfigurationRules.isValidStationMAC(m) {
            throw ConfigurationError("invalid guest MAC \(m): must be a unicast, non-zero MAC")
        }
        for ip in ips where !ConfigurationRules.isValidAddress(ip) {
            throw ConfigurationError("invalid guest address '\(ip)': expected IPv4 or IPv6, optionally /PREFIX")
        }
    }

    /// An IPv4 or IPv6 address, optionally with a prefix length (`10.0.0.5`, `10.0.0.0/24`,
    /// `fd00::1/64`): the rule of `ConfigurationRules.isValidAddress`.
    public static func isValidAddress(_ text: String) -> Bool { ConfigurationRules.isValidAddress(text) }
}

extension ControlCommand {
    /// Whether the command only reads. Every other command may change the configuration and makes
    /// the daemon save it when it succeeds (a command added later is saved after by default, which
    /// costs a write at worst, never a lost change).
    public var isReadOnly: Bool {
        switch self {
        case .show, .fdb, .stats, .configuration, .filterSave, .showRouters, .routes, .neighbours: return true
        default: return false
        }
    }
}
