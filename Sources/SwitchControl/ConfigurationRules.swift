// ConfigurationRules: the one set of rules for what a configuration may say.
//
// The daemon's commands (`ControlCommand.validate()`, below, before anything is changed), `apply`
// and the configuration loader at start (`SwitchConfiguration.validate()`) all judge names, ranges,
// addresses and rule sets here, so a value the daemon takes over the socket is one its own saved
// file is taken with at the next start, and the other way round (ConfigurationRulesTests feeds
// every refusal of one through the other). What depends on the running state (a bridge that
// exists, a port already on another bridge) is the daemon's to check; the loader checks the same
// within the file.

import SwitchCore

public enum ConfigurationRules {
    public static let ageingRange: ClosedRange<UInt32> = 1...1_000_000
    public static let fdbCapacityRange: ClosedRange<Int> = 1...(1 << 24)

    /// Bridge names: 1-15 letters, digits, '-' or '_' (the bridge's own TAP port may carry its name).
    public static func isValidBridgeName(_ n: String) -> Bool {
        !n.isEmpty && n.utf8.count <= 15
            && n.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    /// The kernel's dev_valid_name: 1-15 bytes, not `.` or `..`, no '/', ':' or whitespace (and,
    /// stricter than the kernel, no control characters, so a name prints on one line).
    public static func isValidInterfaceName(_ n: String) -> Bool {
        let bytes = Array(n.utf8)
        let bad = bytes.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7f }
        return !bytes.isEmpty && bytes.count <= 15 && n != "." && n != ".." && !bad
    }

    /// An IPv4 or IPv6 address with an optional prefix (`10.0.0.5`, `10.0.1.0/24`,
    /// `2001:db8::5/64`), as anti-spoofing parses it (`PortAddresses.parseIPs`).
    public static func isValidAddress(_ text: String) -> Bool {
        guard !text.isEmpty, !text.contains(where: { $0 == " " || $0 == "," || $0 == "\t" }) else { return false }
        let parsed = PortAddresses.parseIPs([text])
        return parsed.bad == nil && parsed.v4.count + parsed.v6.count == 1
    }

    /// A MAC a port, a guest or a static FDB entry may have: unicast and not all zeros.
    public static func isValidStationMAC(_ m: MACAddress) -> Bool { !m.isMulticast && !m.isZero }

    /// The problem with a VLAN mode, nil when it is valid.
    public static func problem(with mode: VLANMode) -> String? {
        switch mode {
        case .access(let v):
            return VLANID.valid.contains(v) ? nil : "invalid VLAN \(v): expected 1 to 4094"
        case .trunk(let allowed, let native):
            if allowed.isEmpty { return "a trunk needs at least one VLAN in trunks" }
            for v in allowed + (native.map { [$0] } ?? []) where !VLANID.valid.contains(v) {
                return "invalid VLAN \(v): expected 1 to 4094"
            }
            return nil
        }
    }

    /// A router's `A.B.C.D/N`: its own address and the mask of the uplink's prefix (nil when
    /// malformed, or when the address is the prefix's network or broadcast address).
    public static func routerAddress(_ text: String) -> (address: UInt32, mask: UInt32)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPv4Prefix.parseAddress(parts[0]), let n = Int(parts[1]), (1...32).contains(n),
              parts[1].allSatisfy(\.isNumber) else { return nil }
        let mask: UInt32 = ~UInt32(0) << UInt32(32 - n)
        if n <= 30 && (a & ~mask == 0 || a & ~mask == ~mask) { return nil }
        return (a, mask)
    }

    /// A router's IPv6 `ADDR/N`: its own address and the uplink's prefix length (nil when
    /// malformed, multicast, link-local, unspecified or loopback, or N is not 1 to 128).
    public static func routerAddress6(_ text: String) -> (address: IPv6Prefix, length: Int)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].allSatisfy(\.isNumber), let n = Int(parts[1]), (1...128).contains(n),
              let (h, l) = IPv6Prefix.parseAddress(String(parts[0])), isUnicastIPv6(high: h, low: l), h >> 54 != 0x3FA
        else { return nil }
        return (IPv6Prefix(high: h, low: l), n)
    }

    /// A unicast IPv6 address: not multicast, unspecified or loopback.
    public static func isUnicastIPv6(high h: UInt64, low l: UInt64) -> Bool {
        h >> 56 != 0xFF && !(h == 0 && (l == 0 || l == 1))
    }

    /// An IPv4 or IPv6 unicast address (a next hop, a neighbour), as text.
    public static func isUnicastAddress(_ text: String) -> Bool {
        if let a = IPv4Prefix.parseAddress(text) { return a != 0 && a >> 28 < 0xE }
        guard let (h, l) = IPv6Prefix.parseAddress(text) else { return false }
        return isUnicastIPv6(high: h, low: l)
    }

    /// The problem with a rule set in ebtables-save text, nil when it parses.
    public static func problem(withFilterRules text: String) -> String? {
        do throws(FilterError) { _ = try FilterRuleSet.restore(text: text); return nil } catch { return error.description }
    }
}

extension ControlCommand {
    /// Refuses arguments no running state could make valid, by ConfigurationRules. The daemon calls
    /// it before it changes anything.
    public func validate() throws(ConfigurationError) {
        switch self {
        case .addBridge(let name, let ageing, let capacity):
            guard ConfigurationRules.isValidBridgeName(name) else {
                throw ConfigurationError("invalid bridge name '\(name)': use 1-15 letters, digits, '-' or '_'")
            }
            if let a = ageing { try Self.checkAgeing(a) }
            if let c = capacity, !ConfigurationRules.fdbCapacityRange.contains(c) {
                throw ConfigurationError("invalid FDB capacity \(c): expected 1 to 16777216 entries")
            }
        case .addPort(_, let port, _, let vlan):
            try Self.checkPort(port, vlan)
        case .addPortWithAddresses(_, let port, _, let vlan, let addresses):
            try Self.checkPort(port, vlan)
            try Self.checkAddresses(macs: addresses.macs, ips: addresses.ips)
            if let m = addresses.maxMACs, m < 0 || m > 65535 {
                throw ConfigurationError("invalid max-macs \(m): expected a number from 0 (no limit) to 65535")
            }
            try Self.checkStorm(addresses.storm)
        case .setPort(_, _, let macs, let ips, _, let maxMACs, let storm):
            if let m = maxMACs, m < 0 || m > 65535 {
                throw ConfigurationError("invalid max-macs \(m): expected a number from 0 (no limit) to 65535")
            }
            try Self.checkStorm(storm)
            try Self.checkAddresses(macs: macs ?? [], ips: ips ?? [])
        case .fdbAdd(_, let mac, let vlan, _):
            try Self.checkVLAN(vlan)
            guard ConfigurationRules.isValidStationMAC(mac) else {
                throw ConfigurationError("invalid static address \(mac): must be a unicast, non-zero MAC")
            }
        case .fdbDel(_, _, let vlan):
            try Self.checkVLAN(vlan)
        case .setAgeing(_, let seconds):
            try Self.checkAgeing(seconds)
        case .setPortGuest(_, _, let guest):
            try guest?.validate()
        case .apply(let configuration):
            try configuration.validate()
        case .filterRestore(_, let text):
            if let problem = ConfigurationRules.problem(withFilterRules: text) {
                throw ConfigurationError("ebtables-save text: \(problem)")
            }
        case .addRouter(let name, let uplink, let address, let gateway, let mac, let address6, let gateway6, let dns):
            guard ConfigurationRules.isValidBridgeName(name) else {
                throw ConfigurationError("invalid router name '\(name)': use 1-15 letters, digits, '-' or '_'")
            }
            guard ConfigurationRules.isValidInterfaceName(uplink) else {
                throw ConfigurationError("invalid uplink interface name '\(uplink)': 1 to 15 characters, no '/', ':' or whitespace")
            }
            guard ConfigurationRules.routerAddress(address) != nil else {
                throw ConfigurationError("invalid router address '\(address)': expected A.B.C.D/N (the router's own IPv4 address and the uplink's prefix length)")
            }
            if let g = gateway, IPv4Prefix.parseAddress(g) == nil {
                throw ConfigurationError("invalid gateway '\(g)': expected an IPv4 address A.B.C.D")
            }
            if let m = mac, !ConfigurationRules.isValidStationMAC(m) {
                throw ConfigurationError("invalid router MAC \(m): must be a unicast, non-zero MAC")
            }
            if let a6 = address6, ConfigurationRules.routerAddress6(a6) == nil {
                throw ConfigurationError("invalid router IPv6 address '\(a6)': expected ADDR/N, a global or unique-local unicast address (the router's own, on the uplink)")
            }
            if let g = gateway6 {
                guard let (h, l) = IPv6Prefix.parseAddress(g), ConfigurationRules.isUnicastIPv6(high: h, low: l) else {
                    throw ConfigurationError("invalid IPv6 gateway '\(g)': expected a unicast IPv6 address")
                }
                guard address6 != nil || h >> 54 == 0x3FA else {
                    throw ConfigurationError("an IPv6 gateway that is not link-local needs the router's address6=A6/P6")
                }
            }
            if let bad = dns.first(where: { IPv4Prefix.parseAddress($0) == nil }) {
                throw ConfigurationError("invalid DNS server '\(bad)': expected IPv4 addresses A.B.C.D, space-separated")
            }
            guard dns.count <= 4 else { throw ConfigurationError("at most 4 DNS servers (dns=\"A [B ...]\")") }
        case .routeAdd(_, let prefix, let via, let dev):
            let v4 = IPv4Prefix(prefix) != nil
            guard v4 || IPv6Prefix(prefix) != nil, !prefix.contains(where: { $0 == " " }) else {
                throw ConfigurationError("invalid route prefix '\(prefix)': expected A.B.C.D/N or an IPv6 ADDR/N")
            }
            guard (via == nil) != (dev == nil) else {
                throw ConfigurationError("a route needs exactly one of via GATEWAY or dev PORT")
            }
            if let v = via {
                if v4 {
                    guard IPv4Prefix.parseAddress(v) != nil else {
                        throw ConfigurationError("invalid next hop '\(v)': expected an IPv4 address A.B.C.D for an IPv4 route")
                    }
                } else {
                    guard let (h, l) = IPv6Prefix.parseAddress(v), ConfigurationRules.isUnicastIPv6(high: h, low: l) else {
                        throw ConfigurationError("invalid next hop '\(v)': expected a unicast IPv6 address for an IPv6 route")
                    }
                }
            }
        case .routeDel(_, let prefix):
            guard IPv4Prefix(prefix) != nil || IPv6Prefix(prefix) != nil else {
                throw ConfigurationError("invalid route prefix '\(prefix)': expected A.B.C.D/N or an IPv6 ADDR/N")
            }
        case .neighbourAdd(_, let address, let mac, _):
            guard ConfigurationRules.isUnicastAddress(address) else {
                throw ConfigurationError("invalid neighbour address '\(address)': expected a unicast IPv4 or IPv6 address")
            }
            guard ConfigurationRules.isValidStationMAC(mac) else {
                throw ConfigurationError("invalid neighbour MAC \(mac): must be a unicast, non-zero MAC")
            }
        case .neighbourDel(_, let address):
            guard ConfigurationRules.isUnicastAddress(address) else {
                throw ConfigurationError("invalid neighbour address '\(address)': expected a unicast IPv4 or IPv6 address")
            }
        case .delBridge, .delPort, .show, .fdb, .stats, .configuration, .filter, .filterSave, .delRouter, .routes,
             .neighbours, .neighbourFlush, .showRouters:
            break
        }
    }

    private static func checkAgeing(_ seconds: UInt32) throws(ConfigurationError) {
        guard ConfigurationRules.ageingRange.contains(seconds) else {
            throw ConfigurationError("invalid ageing time \(seconds): expected 1 to 1000000 seconds")
        }
    }

    private static func checkVLAN(_ vlan: UInt16) throws(ConfigurationError) {
        guard VLANID.valid.contains(vlan) else { throw ConfigurationError("invalid VLAN \(vlan): expected 1 to 4094") }
    }

    private static func checkPort(_ port: String, _ vlan: VLANMode) throws(ConfigurationError) {
        guard ConfigurationRules.isValidInterfaceName(port) else {
            throw ConfigurationError("invalid interface name '\(port)': 1 to 15 characters, no '/', ':' or whitespace")
        }
        if let problem = ConfigurationRules.problem(with: vlan) { throw ConfigurationError(problem) }
    }

    private static func checkStorm(_ storm: StormLimits?) throws(ConfigurationError) {
        for (name, v) in [("storm-broadcast", storm?.broadcast), ("storm-multicast", storm?.multicast), ("storm-unknown", storm?.unknown)] {
            if let v, v < 0 || v > StormLimits.maximum {
                throw ConfigurationError("invalid \(name) \(v): expected frames per second from 0 (off) to \(StormLimits.maximum)")
            }
        }
    }

    private static func checkAddresses(macs: [MACAddress], ips: [String]) throws(ConfigurationError) {
        for m in macs where !ConfigurationRules.isValidStationMAC(m) {
            throw ConfigurationError("invalid guest MAC \(m): must be a unicast, non-zero address")
        }
        for ip in ips where !ConfigurationRules.isValidAddress(ip) {
            throw ConfigurationError("invalid IP address '\(ip)': expected A.B.C.D[/N] or an IPv6 address[/N]")
        }
    }
}
