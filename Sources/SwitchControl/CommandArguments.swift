// The words of userswitchctl commands that argument-parser does not understand by itself:
// `key=value` port options (`tag=10 trunks=10,20 native=5 type=tap`), the Xen bridge spec
// (`xenbr0.10:20:30`) in place of the bridge name, and `vlan=N` of the FDB commands.
//
// They live here rather than in the executable so that every accepted form and every error is
// unit tested. Every error is found before anything is sent: a wrong command changes nothing.
// The forms follow Open vSwitch's `ovs-vsctl add-port br0 p1 tag=10` and Xen's vif `bridge=` key.

import SwitchCore

/// A command line that cannot be turned into a request; `message` says exactly what is wrong.
public struct CommandLineError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The bridge, type and VLAN mode of an `add-port`.
public struct PortArguments: Equatable, Sendable {
    public var bridge: String
    public var type: PortType
    public var vlan: VLANMode

    public init(bridge: String, type: PortType, vlan: VLANMode) {
        self.bridge = bridge
        self.type = type
        self.vlan = vlan
    }

    public static let keys = ["tag", "trunks", "native", "type", "mac", "ip", "anti-spoofing", "ra", "dhcp", "max-macs",
                              "storm-broadcast", "storm-multicast", "storm-unknown"]

    /// The guest's addresses (`mac=M[,M]`, `ip="A B"`, `anti-spoofing=on|off`), nil when none given.
    public var addresses: PortAddressInfo? = nil

    /// Parses `add-port BRIDGE-OR-SPEC IFACE [WORDS...]`' first and last parts. `bridgeOrSpec` is a
    /// bridge name or a Xen spec `BRIDGE[.VLAN][:TRUNK[:TRUNK...]]`; `words` are `key=value`
    /// options (`tag=N`, `trunks=A,B-C`, `native=N`, `type=tap|system`), each at most once.
    /// A spec with VLAN parts and VLAN keys together is an error (which one should win?).
    public static func parse(bridge bridgeOrSpec: String, words: [String]) throws(CommandLineError) -> PortArguments {
        let spec: BridgeSpec
        do {
            spec = try BridgeSpec.parse(bridgeOrSpec)
        } catch {
            throw CommandLineError(error.description)
        }
        let options = try KeyValueWords.parse(words, allowed: keys, what: "port option")
        var type = PortType.system
        if let t = options["type"] {
            guard let parsed = PortType(rawValue: t) else {
                throw CommandLineError("invalid port type '\(t)': expected tap or system")
            }
            type = parsed
        }
        let specHasVLAN = spec.vlan != nil || !spec.trunks.isEmpty
        let keysHaveVLAN = options["tag"] != nil || options["trunks"] != nil || options["native"] != nil
        if specHasVLAN && keysHaveVLAN {
            throw CommandLineError(
                "the bridge spec '\(bridgeOrSpec)' already sets the VLANs; do not combine it with tag=, trunks= or native=")
        }
        let vlan: VLANMode
        if specHasVLAN {
            vlan = spec.mode
        } else {
            do {
                vlan = try VLANMode.from(tag: options["tag"], trunks: options["trunks"], native: options["native"])
            } catch {
                throw CommandLineError(error.description)
            }
        }
        var p = PortArguments(bridge: spec.bridge, type: type, vlan: vlan)
        if options["mac"] != nil || options["ip"] != nil || options["anti-spoofing"] != nil || options["ra"] != nil
            || options["dhcp"] != nil || options["max-macs"] != nil || CommandArguments.stormKeys.contains(where: { options[$0] != nil }) {
            p.addresses = try CommandArguments.portAddresses(mac: options["mac"], ip: options["ip"], antiSpoofing: options["anti-spoofing"])
            if let ra = options["ra"] {
                switch ra {
                case "on", "yes", "true": p.addresses?.routerAdvertisements = true
                case "off", "no", "false": p.addresses?.routerAdvertisements = false
                default: throw CommandLineError("invalid ra '\(ra)': expected on or off")
                }
            }
            if let m = options["max-macs"] { p.addresses?.maxMACs = try CommandArguments.parseMaxMACs(m) }
            p.addresses?.storm = try CommandArguments.parseStorm(options)
            if let dhcp = options["dhcp"] {
                switch dhcp {
                case "on", "yes", "true": p.addresses?.dhcp = true
                case "off", "no", "false": p.addresses?.dhcp = false
                default: throw CommandLineError("invalid dhcp '\(dhcp)': expected on or off")
                }
            }
        }
        return p
    }
}

/// `key=value` words, each key at most once, only from an allowed set.
public enum KeyValueWords {
    public static func parse(_ words: [String], allowed: [String], what: String) throws(CommandLineError) -> [String: String] {
        var out: [String: String] = [:]
        let expected = allowed.map { $0 + "=" }.joined(separator: ", ")
        for word in words {
            guard let eq = word.firstIndex(of: "="), eq != word.startIndex else {
                throw CommandLineError("unexpected argument '\(word)': expected \(what)s of the form key=value (\(expected))")
            }
            let key = String(word[..<eq])
            let value = String(word[word.index(after: eq)...])
            guard allowed.contains(key) else {
                throw CommandLineError("unknown \(what) '\(key)' in '\(word)': expected one of \(expected)")
            }
            guard out[key] == nil else {
                throw CommandLineError("\(what) '\(key)=' given more than once")
            }
            guard !value.isEmpty else {
                throw CommandLineError("\(what) '\(key)=' needs a value")
            }
            out[key] = value
        }
        return out
    }
}

/// Turns command-line words into `ControlCommand`s for the commands with free-form words.
public enum CommandArguments {
    /// `add-port BRIDGE-OR-SPEC IFACE [key=value...]`.
    public static func addPort(bridge: String, port: String, words: [String]) throws(CommandLineError) -> ControlCommand {
        try checkInterfaceName(port)
        let p = try PortArguments.parse(bridge: bridge, words: words)
        if let a = p.addresses {
            return .addPortWithAddresses(bridge: p.bridge, port: port, type: p.type, vlan: p.vlan, addresses: a)
        }
        return .addPort(bridge: p.bridge, port: port, type: p.type, vlan: p.vlan)
    }

    /// `set-port BRIDGE PORT [mac=M[,M...]] [ip="A B ..."] [anti-spoofing=on|off] [max-macs=N]`.
    public static func setPort(bridge: String, port: String, words: [String]) throws(CommandLineError) -> ControlCommand {
        let o = try KeyValueWords.parse(words, allowed: ["mac", "ip", "anti-spoofing", "max-macs"] + stormKeys, what: "port property")
        guard !o.isEmpty else { throw CommandLineError("set-port needs mac=, ip=, anti-spoofing=, max-macs= or storm-...=") }
        let a = try portAddresses(mac: o["mac"], ip: o["ip"], antiSpoofing: o["anti-spoofing"])
        return .setPort(bridge: bridge, port: port, macs: o["mac"] == nil ? nil : a.macs,
                        ips: o["ip"] == nil ? nil : a.ips, antiSpoofing: a.antiSpoofing,
                        maxMACs: try o["max-macs"].map { m throws(CommandLineError) in try parseMaxMACs(m) },
                        storm: try parseStorm(o))
    }

    public static let stormKeys = ["storm-broadcast", "storm-multicast", "storm-unknown"]

    /// `storm-broadcast=`, `storm-multicast=`, `storm-unknown=` (frames/s, 0 off); nil when none given.
    public static func parseStorm(_ o: [String: String]) throws(CommandLineError) -> StormLimits? {
        func rate(_ key: String) throws(CommandLineError) -> Int? {
            guard let text = o[key] else { return nil }
            guard let n = Int(text), n >= 0, n <= StormLimits.maximum else {
                throw CommandLineError("invalid \(key) '\(text)': expected frames per second from 0 (off) to \(StormLimits.maximum)")
            }
            return n
        }
        let s = StormLimits(broadcast: try rate("storm-broadcast"), multicast: try rate("storm-multicast"), unknown: try rate("storm-unknown"))
        return s.isEmpty ? nil : s
    }

    /// `max-macs=N`: 0 (no limit) to 65535.
    public static func parseMaxMACs(_ text: String) throws(CommandLineError) -> Int {
        guard let n = Int(text), n >= 0, n <= 65535 else {
            throw CommandLineError("invalid max-macs '\(text)': expected a number from 0 (no limit) to 65535")
        }
        return n
    }

    /// Guest addresses from `mac=`, `ip=` and `anti-spoofing=` values; `none` clears a list.
    public static func portAddresses(mac: String?, ip: String?, antiSpoofing: String?) throws(CommandLineError) -> PortAddressInfo {
        var a = PortAddressInfo()
        if let mac, mac != "none" {
            for m in mac.split(whereSeparator: { $0 == "," || $0 == " " }) {
                let parsed = try parseMAC(String(m))
                guard ConfigurationRules.isValidStationMAC(parsed) else {
                    throw CommandLineError("invalid guest MAC '\(m)': must be a unicast, non-zero address")
                }
                a.macs.append(parsed)
            }
        }
        if let ip, ip != "none" {
            let p = PortAddresses.parseIPs([ip])
            if let bad = p.bad { throw CommandLineError("invalid IP address '\(bad)': expected A.B.C.D[/N] or an IPv6 address[/N]") }
            a.ips = p.v4.map(\.description) + p.v6.map(\.description)
        }
        if let s = antiSpoofing {
            switch s {
            case "on", "yes", "true": a.antiSpoofing = true
            case "off", "no", "false": a.antiSpoofing = false
            default: throw CommandLineError("invalid anti-spoofing '\(s)': expected on or off")
            }
        }
        return a
    }

    /// `fdb-add BRIDGE MAC PORT [vlan=N]`; the VLAN defaults to 1.
    public static func fdbAdd(bridge: String, mac: String, port: String, words: [String]) throws(CommandLineError) -> ControlCommand {
        let address = try parseMAC(mac)
        let vlan = try parseVLANOption(words)
        return .fdbAdd(bridge: bridge, mac: address, vlan: vlan, port: port)
    }

    /// `fdb-del BRIDGE MAC [vlan=N]`; the VLAN defaults to 1.
    public static func fdbDel(bridge: String, mac: String, words: [String]) throws(CommandLineError) -> ControlCommand {
        let address = try parseMAC(mac)
        let vlan = try parseVLANOption(words)
        return .fdbDel(bridge: bridge, mac: address, vlan: vlan)
    }

    public static func parseMAC(_ text: String) throws(CommandLineError) -> MACAddress {
        guard let mac = MACAddress(text) else {
            throw CommandLineError("invalid MAC address '\(text)': expected six hex octets like 00:16:3e:12:34:56")
        }
        return mac
    }

    /// The optional `vlan=N` word of the FDB commands.
    public static func parseVLANOption(_ words: [String]) throws(CommandLineError) -> UInt16 {
        let options = try KeyValueWords.parse(words, allowed: ["vlan"], what: "option")
        guard let text = options["vlan"] else { return VLANID.default }
        guard let v = VLANID.parse(text) else { throw CommandLineError(VLANConfigError.badVLAN(text).description) }
        return v
    }

    /// The rule for interface names (ConfigurationRules.isValidInterfaceName), checked here too so
    /// a typo fails before the daemon is asked.
    public static func checkInterfaceName(_ name: String) throws(CommandLineError) {
        guard ConfigurationRules.isValidInterfaceName(name) else {
            throw CommandLineError("invalid interface name '\(name)': 1 to 15 characters, no '/', ':' or whitespace")
        }
    }
}
