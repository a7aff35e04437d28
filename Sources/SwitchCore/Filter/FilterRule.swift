// FilterRule: the rule model of the ebtables-compatible filter (table `filter`).
//
// A rule set has the three built-in chains of ebtables' filter table and any number of user
// chains. The meaning of every field follows the Linux kernel's ebtables (net/bridge/netfilter/
// ebtables.c and the ebt_ip, ebt_ip6, ebt_arp, ebt_vlan, ebt_among matches), so that a rule set
// written for a Xen host's kernel bridge behaves the same here:
//   - INPUT sees frames going to the bridge's own port (here: a TAP port), FORWARD bridged frames
//     between two other ports, OUTPUT frames the bridge's own port sends. FORWARD and OUTPUT are
//     evaluated once per (frame, egress port), as the kernel does for each copy of a flood.
//   - The first rule whose matches all hold takes its target; CONTINUE goes on with the next rule,
//     RETURN goes back to the rule after the jump, a jump enters a user chain. Falling off the end
//     of a chain applies its policy; a user chain's default policy is RETURN.
//   - A matching rule counts one packet and the frame's length without its Ethernet header (and
//     without an 802.1Q tag), as the kernel counts skb->len at the bridge hooks.
//   - ARP, IPv4 and IPv6 fields are only looked at when the frame's ethertype says so (a rule
//     with such a match must carry `-p ARP|RARP`, `-p IPv4` or `-p IPv6`), and a frame too short
//     to hold the header does not match.
// The model is plain values; FilterProgram compiles it into the form the dataplane runs.

/// A match value with ebtables' `!` inversion.
public struct Negatable<Value: Equatable & Sendable>: Equatable, Sendable {
    public var value: Value
    public var inverted: Bool
    public init(_ value: Value, inverted: Bool = false) { self.value = value; self.inverted = inverted }
}

/// An interface name as `-i`/`-o`/`--logical-in`/`--logical-out` take it: a trailing `+` matches
/// every name that starts with the part before it.
public struct InterfacePattern: Equatable, Sendable {
    public var prefix: String
    public var wildcard: Bool
    public init(_ text: String) {
        if text.hasSuffix("+") { prefix = String(text.dropLast()); wildcard = true } else { prefix = text; wildcard = false }
    }
    public func matches(_ name: String) -> Bool { wildcard ? name.hasPrefix(prefix) : name == prefix }
    public var text: String { wildcard ? prefix + "+" : prefix }
}

/// A MAC address with a mask (all ones when none was given).
public struct MACPattern: Equatable, Sendable {
    public var address: MACAddress
    public var mask: MACAddress
    public init(address: MACAddress, mask: MACAddress = .broadcast) {
        self.address = MACAddress(rawValue: address.rawValue & mask.rawValue)
        self.mask = mask
    }
    @inlinable public func matches(_ mac: UInt64) -> Bool { (mac ^ address.rawValue) & mask.rawValue == 0 }

    public static let unicast = MACPattern(address: .zero, mask: MACAddress(rawValue: 0x0100_0000_0000))
    public static let multicast = MACPattern(address: MACAddress(rawValue: 0x0100_0000_0000), mask: MACAddress(rawValue: 0x0100_0000_0000))
    public static let broadcast = MACPattern(address: .broadcast, mask: .broadcast)
    public static let bga = MACPattern(address: MACAddress(rawValue: 0x0180_C200_0000), mask: .broadcast)

    public var text: String {
        switch self {
        case .unicast: return "Unicast"
        case .multicast: return "Multicast"
        case .broadcast where mask == .broadcast: return "Broadcast"
        case .bga: return "BGA"
        default: return mask == .broadcast ? address.description : "\(address)/\(mask)"
        }
    }
}

/// An inclusive port range (`80`, `1024:65535`).
public struct PortRange: Equatable, Sendable, CustomStringConvertible {
    public var low: UInt16, high: UInt16
    public init(_ low: UInt16, _ high: UInt16) { self.low = low; self.high = high }
    public var description: String { low == high ? "\(low)" : "\(low):\(high)" }
}

/// One `--among-src`/`--among-dst` element: a MAC, optionally with the IPv4 address it must carry.
public struct AmongEntry: Hashable, Sendable {
    public var mac: MACAddress
    public var ip: UInt32?
    public init(mac: MACAddress, ip: UInt32? = nil) { self.mac = mac; self.ip = ip }
    public var text: String { ip.map { "\(mac)=\(IPv4Prefix.format($0))" } ?? mac.description }
}

/// The ethertype a rule's `-p` names.
public enum EtherTypeMatch: Equatable, Sendable {
    case type(UInt16)
    /// `LENGTH`: an 802.3 frame, whose type field is a length (< 0x0600).
    case length
}

public enum FilterTarget: Equatable, Sendable {
    case accept, drop, `continue`, `return`
    case jump(String)

    public var text: String {
        switch self {
        case .accept: return "ACCEPT"
        case .drop: return "DROP"
        case .continue: return "CONTINUE"
        case .return: return "RETURN"
        case .jump(let c): return c
        }
    }
}

/// A chain's policy: what happens to a frame that falls off its end.
public enum FilterPolicy: String, Sendable, CaseIterable {
    case accept = "ACCEPT", drop = "DROP", `return` = "RETURN"
}

public struct FilterRule: Equatable, Sendable {
    public var inInterface: Negatable<InterfacePattern>?
    public var outInterface: Negatable<InterfacePattern>?
    public var logicalIn: Negatable<InterfacePattern>?
    public var logicalOut: Negatable<InterfacePattern>?
    public var source: Negatable<MACPattern>?
    public var destination: Negatable<MACPattern>?
    public var proto: Negatable<EtherTypeMatch>?
    // 802.1Q (needs -p 802_1Q)
    public var vlanID: Negatable<UInt16>?
    public var vlanPriority: Negatable<UInt8>?
    public var vlanEncapsulation: Negatable<UInt16>?
    // ARP (needs -p ARP or RARP)
    public var arpOpcode: Negatable<UInt16>?
    public var arpHardwareType: Negatable<UInt16>?
    public var arpProtocolType: Negatable<UInt16>?
    public var arpIPSource: Negatable<IPv4Prefix>?
    public var arpIPDestination: Negatable<IPv4Prefix>?
    public var arpMACSource: Negatable<MACPattern>?
    public var arpMACDestination: Negatable<MACPattern>?
    /// `--arp-gratuitous`: sender IP == target IP.
    public var arpGratuitous: Negatable<Bool>?
    // IPv4 (needs -p IPv4)
    public var ipSource: Negatable<IPv4Prefix>?
    public var ipDestination: Negatable<IPv4Prefix>?
    public var ipTOS: Negatable<UInt8>?
    public var ipProtocol: Negatable<UInt8>?
    public var ipSourcePort: Negatable<PortRange>?
    public var ipDestinationPort: Negatable<PortRange>?
    // IPv6 (needs -p IPv6)
    public var ip6Source: Negatable<IPv6Prefix>?
    public var ip6Destination: Negatable<IPv6Prefix>?
    public var ip6TrafficClass: Negatable<UInt8>?
    public var ip6Protocol: Negatable<UInt8>?
    public var ip6SourcePort: Negatable<PortRange>?
    public var ip6DestinationPort: Negatable<PortRange>?
    // among
    public var amongSource: Negatable<[AmongEntry]>?
    public var amongDestination: Negatable<[AmongEntry]>?

    public var target: FilterTarget = .continue

    public init(target: FilterTarget = .continue) { self.target = target }

    /// The rule as ebtables-save writes it (without `-A CHAIN`).
    public var text: String {
        var w: [String] = []
        func add(_ option: String, _ value: String, _ inverted: Bool) {
            w.append(option)
            if inverted { w.append("!") }
            w.append(value)
        }
        if let p = proto {
            let name: String
            switch p.value {
            case .length: name = "LENGTH"
            case .type(let t): name = EtherTypeNames.name(of: t) ?? "0x" + String(t, radix: 16)
            }
            add("-p", name, p.inverted)
        }
        if let s = source { add("-s", s.value.text, s.inverted) }
        if let d = destination { add("-d", d.value.text, d.inverted) }
        if let i = inInterface { add("-i", i.value.text, i.inverted) }
        if let i = logicalIn { add("--logical-in", i.value.text, i.inverted) }
        if let o = outInterface { add("-o", o.value.text, o.inverted) }
        if let o = logicalOut { add("--logical-out", o.value.text, o.inverted) }
        if let v = arpOpcode { add("--arp-op", ARPNames.opcodeName(v.value), v.inverted) }
        if let v = arpHardwareType { add("--arp-htype", String(v.value), v.inverted) }
        if let v = arpProtocolType { add("--arp-ptype", EtherTypeNames.name(of: v.value) ?? "0x" + String(v.value, radix: 16), v.inverted) }
        if let v = arpIPSource { add("--arp-ip-src", v.value.description, v.inverted) }
        if let v = arpIPDestination { add("--arp-ip-dst", v.value.description, v.inverted) }
        if let v = arpMACSource { add("--arp-mac-src", v.value.text, v.inverted) }
        if let v = arpMACDestination { add("--arp-mac-dst", v.value.text, v.inverted) }
        if let v = arpGratuitous { if v.inverted { w += ["!", "--arp-gratuitous"] } else { w.append("--arp-gratuitous") } }
        if let v = ipSource { add("--ip-src", v.value.description, v.inverted) }
        if let v = ipDestination { add("--ip-dst", v.value.description, v.inverted) }
        if let v = ipTOS { add("--ip-tos", "0x" + String(v.value, radix: 16), v.inverted) }
        if let v = ipProtocol { add("--ip-proto", IPProtocolNames.name(of: v.value), v.inverted) }
        if let v = ipSourcePort { add("--ip-sport", v.value.description, v.inverted) }
        if let v = ipDestinationPort { add("--ip-dport", v.value.description, v.inverted) }
        if let v = ip6Source { add("--ip6-src", v.value.description, v.inverted) }
        if let v = ip6Destination { add("--ip6-dst", v.value.description, v.inverted) }
        if let v = ip6TrafficClass { add("--ip6-tclass", "0x" + String(v.value, radix: 16), v.inverted) }
        if let v = ip6Protocol { add("--ip6-proto", IPProtocolNames.name(of: v.value), v.inverted) }
        if let v = ip6SourcePort { add("--ip6-sport", v.value.description, v.inverted) }
        if let v = ip6DestinationPort { add("--ip6-dport", v.value.description, v.inverted) }
        if let v = vlanID { add("--vlan-id", String(v.value), v.inverted) }
        if let v = vlanPriority { add("--vlan-prio", String(v.value), v.inverted) }
        if let v = vlanEncapsulation { add("--vlan-encap", EtherTypeNames.name(of: v.value) ?? "0x" + String(v.value, radix: 16), v.inverted) }
        if let v = amongSource { add("--among-src", v.value.map(\.text).joined(separator: ","), v.inverted) }
        if let v = amongDestination { add("--among-dst", v.value.map(\.text).joined(separator: ","), v.inverted) }
        w += ["-j", target.text]
        return w.joined(separator: " ")
    }
}

/// One chain: built-in (INPUT, FORWARD, OUTPUT) or user-defined.
public struct FilterChain: Equatable, Sendable {
    public var name: String
    public var policy: FilterPolicy
    public var rules: [FilterRule]
    /// Packet and byte counters per rule, parallel to `rules` (ebtables keeps them per rule).
    public var counters: [FilterCounter]
    public init(name: String, policy: FilterPolicy, rules: [FilterRule] = [], counters: [FilterCounter]? = nil) {
        self.name = name; self.policy = policy; self.rules = rules
        self.counters = counters ?? Array(repeating: FilterCounter(), count: rules.count)
    }
    public var isBuiltin: Bool { FilterRuleSet.builtinChains.contains(name) }
}

public struct FilterCounter: Equatable, Sendable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) { self.packets = packets; self.bytes = bytes }
}

/// Ethertype names of /etc/ethertypes that ebtables accepts for `-p` and `--vlan-encap`.
public enum EtherTypeNames {
    public static let table: [(String, UInt16)] = [
        ("IPv4", 0x0800), ("X25", 0x0805), ("ARP", 0x0806), ("FR_ARP", 0x0808), ("BPQ", 0x08FF),
        ("DEC", 0x6000), ("DNA_DL", 0x6001), ("DNA_RC", 0x6002), ("DNA_RT", 0x6003), ("LAT", 0x6004),
        ("DIAG", 0x6005), ("CUST", 0x6006), ("SCA", 0x6007), ("TEB", 0x6558), ("RAW_FR", 0x6559),
        ("RARP", 0x8035), ("AARP", 0x80F3), ("ATALK", 0x809B), ("802_1Q", 0x8100), ("IPX", 0x8137),
        ("NetBEUI", 0x8191), ("IPv6", 0x86DD), ("PPP", 0x880B), ("ATMMPOA", 0x884C),
        ("PPP_DISC", 0x8863), ("PPP_SES", 0x8864), ("ATMFATE", 0x8884), ("LOOP", 0x9000),
    ]
    public static func value(of name: String) -> UInt16? {
        table.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    public static func name(of value: UInt16) -> String? { table.first { $0.1 == value }?.0 }
}

public enum IPProtocolNames {
    public static let table: [(String, UInt8)] = [
        ("icmp", 1), ("igmp", 2), ("tcp", 6), ("udp", 17), ("dccp", 33), ("ipv6-icmp", 58), ("icmpv6", 58),
        ("gre", 47), ("esp", 50), ("ah", 51), ("sctp", 132), ("udplite", 136),
    ]
    public static func value(of name: String) -> UInt8? {
        if let n = UInt8(name) { return n }
        return table.first { $0.0 == name.lowercased() }?.1
    }
    public static func name(of value: UInt8) -> String { table.first { $0.1 == value }?.0 ?? String(value) }
}

public enum ARPNames {
    public static let opcodes = ["Request", "Reply", "Request_Reverse", "Reply_Reverse", "DRARP_Request",
                                 "DRARP_Reply", "DRARP_Error", "InARP_Request", "ARP_NAK"]
    public static func opcodeName(_ v: UInt16) -> String {
        (1...UInt16(opcodes.count)).contains(v) ? opcodes[Int(v) - 1] : String(v)
    }
    public static func opcode(_ name: String) -> UInt16? {
        if let i = opcodes.firstIndex(where: { $0.lowercased() == name.lowercased() }) { return UInt16(i + 1) }
        return UInt16(name)
    }
}
