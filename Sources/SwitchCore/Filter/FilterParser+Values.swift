// FilterParser+Values: the values of ebtables options (interfaces, MACs with masks, ethertypes,
// addresses, port ranges, among lists, counters) and the checks a whole rule must pass; the
// commands and options themselves are read in FilterParser.swift.

extension FilterParser {
    static func range(_ t: FilterToken) throws(FilterError) -> (Int, Int) {
        let parts = t.text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let a = Int(parts[0]), a != 0 else { throw FilterError("invalid rule number '\(t.text)'", column: t.column) }
        if parts.count == 1 { return (a, a) }
        guard let b = Int(parts[1]), b != 0 else { throw FilterError("invalid rule range '\(t.text)'", column: t.column) }
        return (a, b)
    }

    static func counterChange(_ t: FilterToken) throws(FilterError) -> CounterChange {
        var s = Substring(t.text)
        var kind = 0
        if s.hasPrefix("+") { kind = 1; s = s.dropFirst() } else if s.hasPrefix("-") { kind = 2; s = s.dropFirst() }
        guard let n = UInt64(s) else { throw FilterError("invalid counter '\(t.text)'", column: t.column) }
        return kind == 0 ? .set(n) : kind == 1 ? .add(n) : .subtract(n)
    }

    static func checkChainName(_ name: String, column: Int?) throws(FilterError) {
        guard !name.isEmpty, name.utf8.count <= 31 else {
            throw FilterError("chain name '\(name)' is too long: at most 31 characters", column: column)
        }
        guard !name.hasPrefix("-"), !name.hasPrefix("!"), !name.contains(" ") else {
            throw FilterError("invalid chain name '\(name)'", column: column)
        }
        guard !["ACCEPT", "DROP", "CONTINUE", "RETURN"].contains(name) else {
            throw FilterError("'\(name)' is a target, not a chain name", column: column)
        }
    }

    /// The checks ebtables makes on a whole rule, with the column of the first option concerned.
    static func validate(_ r: FilterRule, chain: String, firstColumn: [String: Int], end: Int) throws(FilterError) {
        let hasVLAN = r.vlanID != nil || r.vlanPriority != nil || r.vlanEncapsulation != nil
        let hasARP = r.arpOpcode != nil || r.arpHardwareType != nil || r.arpProtocolType != nil || r.arpIPSource != nil
            || r.arpIPDestination != nil || r.arpMACSource != nil || r.arpMACDestination != nil || r.arpGratuitous != nil
        let hasIP = r.ipSource != nil || r.ipDestination != nil || r.ipTOS != nil || r.ipProtocol != nil
            || r.ipSourcePort != nil || r.ipDestinationPort != nil
        let hasIP6 = r.ip6Source != nil || r.ip6Destination != nil || r.ip6TrafficClass != nil || r.ip6Protocol != nil
            || r.ip6SourcePort != nil || r.ip6DestinationPort != nil
        func proto(is types: [UInt16]) -> Bool {
            guard let p = r.proto, !p.inverted, case .type(let t) = p.value else { return false }
            return types.contains(t)
        }
        if hasVLAN && !proto(is: [0x8100]) {
            throw FilterError("for VLAN filtering the protocol must be specified as 802_1Q (-p 802_1Q)", column: firstColumn["vlan"])
        }
        if hasARP && !proto(is: [0x0806, 0x8035]) {
            throw FilterError("for (R)ARP filtering the protocol must be specified as ARP or RARP", column: firstColumn["arp"])
        }
        if hasIP && !proto(is: [0x0800]) {
            throw FilterError("for IP filtering the protocol must be specified as IPv4 (-p IPv4)", column: firstColumn["ip"])
        }
        if hasIP6 && !proto(is: [0x86DD]) {
            throw FilterError("for IPv6 filtering the protocol must be specified as IPv6 (-p IPv6)", column: firstColumn["ip6"])
        }
        let portProtocols: [UInt8] = [6, 17, 33, 132]
        if r.ipSourcePort != nil || r.ipDestinationPort != nil {
            guard let p = r.ipProtocol, !p.inverted, portProtocols.contains(p.value) else {
                throw FilterError("for port filtering the IP protocol must be tcp, udp, dccp or sctp (--ip-proto)", column: firstColumn["ip-port"])
            }
        }
        if r.ip6SourcePort != nil || r.ip6DestinationPort != nil {
            guard let p = r.ip6Protocol, !p.inverted, portProtocols.contains(p.value) else {
                throw FilterError("for port filtering the IPv6 protocol must be tcp, udp, dccp or sctp (--ip6-proto)", column: firstColumn["ip6-port"])
            }
        }
        if chain == "OUTPUT" {
            if r.inInterface != nil { throw FilterError("use -i only in the INPUT and FORWARD chains", column: firstColumn["-i"]) }
            if r.logicalIn != nil { throw FilterError("use --logical-in only in the INPUT and FORWARD chains", column: firstColumn["--logical-in"]) }
        }
        if chain == "INPUT" {
            if r.outInterface != nil { throw FilterError("use -o only in the OUTPUT and FORWARD chains", column: firstColumn["-o"]) }
            if r.logicalOut != nil { throw FilterError("use --logical-out only in the OUTPUT and FORWARD chains", column: firstColumn["--logical-out"]) }
        }
        if builtinChains.contains(chain), r.target == .return {
            throw FilterError("the RETURN target is only for user-defined chains", column: nil)
        }
    }

    static func interface(_ t: FilterToken) throws(FilterError) -> InterfacePattern {
        let p = InterfacePattern(t.text)
        guard !p.prefix.isEmpty || p.wildcard, t.text.utf8.count <= 15, !p.prefix.contains("+") else {
            throw FilterError("invalid interface name '\(t.text)'", column: t.column)
        }
        return p
    }

    static func hexNumber(_ s: String) -> UInt32? {
        var h = Substring(s)
        if h.lowercased().hasPrefix("0x") { h = h.dropFirst(2) }
        guard !h.isEmpty else { return nil }
        return UInt32(h, radix: 16)
    }

    /// --ip-tos and --ip6-tclass: decimal, or hex with 0x, as the nft-based ebtables reads them
    /// (legacy ebtables read bare numbers as hex; write 0x.. to be read the same by both).
    static func byteNumber(_ s: String) -> UInt32? {
        let n: UInt32? = s.lowercased().hasPrefix("0x") ? hexNumber(s) : UInt32(s)
        guard let n, n <= 0xFF else { return nil }
        return n
    }

    static func etherType(_ t: FilterToken) throws(FilterError) -> UInt16 {
        if let v = EtherTypeNames.value(of: t.text) { return v }
        guard let n = hexNumber(t.text), n <= 0xFFFF else {
            throw FilterError("unknown protocol '\(t.text)': expected a name from /etc/ethertypes or a hex number", column: t.column)
        }
        return UInt16(n)
    }

    static func macPattern(_ t: FilterToken, keywords: Bool) throws(FilterError) -> MACPattern {
        if keywords {
            switch t.text.lowercased() {
            case "unicast": return .unicast
            case "multicast": return .multicast
            case "broadcast": return .broadcast
            case "bga": return .bga
            default: break
            }
        }
        let parts = t.text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let a = MACAddress(parts[0]) else {
            throw FilterError("invalid MAC address '\(parts[0])'\(keywords ? ": expected aa:bb:cc:dd:ee:ff[/mask], Unicast, Multicast, Broadcast or BGA" : "")", column: t.column)
        }
        if parts.count == 2 {
            if let m = MACAddress(parts[1]) { return MACPattern(address: a, mask: m) }
            if let n = Int(parts[1]), (0...48).contains(n) {
                return MACPattern(address: a, mask: MACAddress(rawValue: n == 0 ? 0 : ~UInt64(0) << UInt64(48 - n)))
            }
            throw FilterError("invalid MAC mask '\(parts[1])'", column: t.column + parts[0].count + 1)
        }
        return MACPattern(address: a)
    }

    static func ipv4(_ t: FilterToken) throws(FilterError) -> IPv4Prefix {
        guard let p = IPv4Prefix(t.text) else {
            throw FilterError("invalid IPv4 address '\(t.text)': expected A.B.C.D[/N]", column: t.column)
        }
        return p
    }

    static func ipv6(_ t: FilterToken) throws(FilterError) -> IPv6Prefix {
        guard let p = IPv6Prefix(t.text) else {
            throw FilterError("invalid IPv6 address '\(t.text)': expected ADDR[/N]", column: t.column)
        }
        return p
    }

    static func portRange(_ t: FilterToken) throws(FilterError) -> PortRange {
        let parts = t.text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        func port(_ s: Substring, _ dflt: UInt16) -> UInt16? { s.isEmpty ? dflt : UInt16(s) }
        let low = port(parts[0], 0), high = parts.count == 2 ? port(parts[1], 65535) : low
        guard let l = low, let h = high, l <= h, !(parts.count == 1 && parts[0].isEmpty) else {
            throw FilterError("invalid port or range '\(t.text)': expected N or N:M", column: t.column)
        }
        return PortRange(l, h)
    }

    static func amongList(_ t: FilterToken) throws(FilterError) -> [AmongEntry] {
        var out: [AmongEntry] = []
        var column = t.column
        for item in t.text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let mac = MACAddress(parts[0]) else {
                throw FilterError("invalid MAC address '\(parts[0])' in among list", column: column)
            }
            var ip: UInt32? = nil
            if parts.count == 2 {
                guard let a = IPv4Prefix.parseAddress(parts[1]) else {
                    throw FilterError("invalid IPv4 address '\(parts[1])' in among list", column: column + parts[0].count + 1)
                }
                ip = a
            }
            out.append(AmongEntry(mac: mac, ip: ip))
            column += item.count + 1
        }
        guard !out.isEmpty else { throw FilterError("empty among list", column: t.column) }
        return out
    }
}
