// FilterParser: ebtables command words and ebtables-save text into FilterCommands and rules.
//
// The syntax is ebtables(8)'s, table `filter` only: commands -A -I -D -R -L -F -Z -P -N -X -E -C,
// matches -i -o --logical-in --logical-out (trailing `+` wildcard), -s -d (MAC[/MASK] or Unicast,
// Multicast, Broadcast, BGA), -p (name from /etc/ethertypes, hex number, LENGTH), the 802_1Q, ARP,
// IP, IP6 and among extensions, targets ACCEPT DROP CONTINUE RETURN or a chain. `!` may stand
// before an option (`! -s MAC`) or before its value (`-s ! MAC`, what ebtables-save writes).
// Numbers follow ebtables: ethertypes are hexadecimal; --ip-tos/--ip6-tclass decimal or 0x hex (as
// the nft-based ebtables on current distributions); the rest decimal.
//
// Every error carries the 1-based column of the offending word (and the line, for ebtables-save
// text), so that a mistake in a 1000-rule restore file is found at once. Parsing changes nothing;
// FilterRuleSet.apply validates against the rule set in force and changes it only on success.

struct FilterToken {
    var text: String
    var column: Int
}

public enum FilterParser {
    /// Parses one ebtables command given as words (`["-A", "FORWARD", "-i", "vif1.0", ...]`).
    /// Columns count in the words joined by single spaces.
    public static func parseCommand(_ words: [String]) throws(FilterError) -> FilterCommand {
        var tokens: [FilterToken] = []
        var column = 1
        for w in words {
            tokens.append(FilterToken(text: w, column: column))
            column += w.count + 1
        }
        return try parse(tokens, fullText: words.joined(separator: " "))
    }

    /// Parses one command line (split on blanks).
    public static func parseCommand(line: String) throws(FilterError) -> FilterCommand {
        try parse(tokenize(line), fullText: line)
    }

    static func tokenize(_ line: String) -> [FilterToken] {
        var out: [FilterToken] = []
        var current = ""
        var start = 0
        for (k, ch) in line.enumerated() {
            if ch == " " || ch == "\t" {
                if !current.isEmpty { out.append(FilterToken(text: current, column: start + 1)); current = "" }
            } else {
                if current.isEmpty { start = k }
                current.append(ch)
            }
        }
        if !current.isEmpty { out.append(FilterToken(text: current, column: start + 1)) }
        return out
    }

    static let builtinChains = FilterRuleSet.builtinChains

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    static func parse(_ tokens: [FilterToken], fullText: String) throws(FilterError) -> FilterCommand {
        var k = 0
        var command: (name: String, column: Int)? = nil
        var chain: String? = nil
        var chainColumn: Int? = nil
        var positional: [FilterToken] = []
        var rule = FilterRule()
        var hasMatchOrTarget = false
        var targetGiven = false
        var counter: FilterCounter? = nil
        var list = FilterListOptions()
        var policyWord: FilterToken? = nil
        var pendingInvert: Int? = nil
        var seen: Set<String> = []
        // Columns of the first option of each extension, for the errors found after the loop.
        var firstColumn: [String: Int] = [:]
        var lastColumn = tokens.last.map { $0.column + $0.text.count } ?? 1

        func next(_ option: FilterToken) throws(FilterError) -> FilterToken {
            k += 1
            guard k < tokens.count else { throw FilterError("option \(option.text) needs a value", column: option.column) }
            return tokens[k]
        }
        /// The value of a match option, with `!` before the option or before the value.
        func value(_ option: FilterToken) throws(FilterError) -> (FilterToken, Bool) {
            var inv = pendingInvert != nil
            pendingInvert = nil
            var v = try next(option)
            if v.text == "!" {
                if inv { throw FilterError("double inversion", column: v.column) }
                inv = true
                v = try next(option)
            }
            return (v, inv)
        }
        /// Notes that an option of extension `ext` (arp, ip, ip6, ...) was used at `option`'s column.
        func uses(_ ext: String, _ option: FilterToken) {
            firstColumn[ext] = min(firstColumn[ext] ?? option.column, option.column)
        }
        func once(_ key: String, _ option: FilterToken) throws(FilterError) {
            guard seen.insert(key).inserted else { throw FilterError("option \(option.text) given more than once", column: option.column) }
            hasMatchOrTarget = true
        }
        func setCommand(_ t: FilterToken, _ name: String) throws(FilterError) {
            if command != nil { throw FilterError("more than one command given (\(command!.name) and \(t.text))", column: t.column) }
            command = (name, t.column)
        }
        func isOptionLike(_ s: String) -> Bool { s.hasPrefix("-") && Int(s) == nil }
        func takeChain(_ t: FilterToken, required: Bool) throws(FilterError) {
            if k + 1 < tokens.count, !isOptionLike(tokens[k + 1].text), tokens[k + 1].text != "!" {
                k += 1
                chain = tokens[k].text
                chainColumn = tokens[k].column
            } else if required {
                throw FilterError("option \(t.text) needs a chain name", column: t.column)
            }
        }
        func takePositional(max: Int) {
            while positional.count < max, k + 1 < tokens.count {
                let s = tokens[k + 1].text
                // Rule numbers (possibly negative or a range) and counter values.
                let first = s.first ?? " "
                guard first.isNumber || ((first == "-" || first == "+") && s.dropFirst().first?.isNumber == true) else { break }
                k += 1
                positional.append(tokens[k])
            }
        }

        while k < tokens.count {
            let t = tokens[k]
            let o = t.text
            switch o {
            case "!":
                if pendingInvert != nil { throw FilterError("double inversion", column: t.column) }
                pendingInvert = t.column
                k += 1
                continue
            case "-t", "--table":
                let v = try next(t)
                guard v.text == "filter" else {
                    throw FilterError("table '\(v.text)' is not supported: only the filter table exists here", column: v.column)
                }
            case "-A", "--append": try setCommand(t, "-A"); try takeChain(t, required: true)
            case "-I", "--insert": try setCommand(t, "-I"); try takeChain(t, required: true); takePositional(max: 1)
            case "-D", "--delete": try setCommand(t, "-D"); try takeChain(t, required: true); takePositional(max: 1)
            case "-R", "--replace": try setCommand(t, "-R"); try takeChain(t, required: true); takePositional(max: 1)
            case "-L", "--list": try setCommand(t, "-L"); try takeChain(t, required: false)
            case "-F", "--flush": try setCommand(t, "-F"); try takeChain(t, required: false)
            case "-Z", "--zero":
                // ebtables allows -Z together with -L (list, then zero).
                if command?.name == "-L" { list.zero = true } else {
                    try setCommand(t, "-Z"); try takeChain(t, required: false)
                }
            case "-P", "--policy":
                if command?.name == "-N" {
                    policyWord = try next(t)
                } else {
                    try setCommand(t, "-P"); try takeChain(t, required: true)
                    policyWord = try next(t)
                }
            case "-N", "--new-chain": try setCommand(t, "-N"); try takeChain(t, required: true)
            case "-X", "--delete-chain": try setCommand(t, "-X"); try takeChain(t, required: false)
            case "-E", "--rename-chain":
                try setCommand(t, "-E"); try takeChain(t, required: true)
                let n = try next(t)
                positional.append(n)
            case "-C", "--change-counters": try setCommand(t, "-C"); try takeChain(t, required: true); takePositional(max: 3)
            case "--Ln": list.numbers = true
            case "--Lc": list.counters = true
            case "--Lx": list.commands = true
            case "--Lmac2": break
            case "-c", "--set-counters":
                let p = try next(t), b = try next(t)
                guard let pn = UInt64(p.text) else { throw FilterError("invalid packet counter '\(p.text)'", column: p.column) }
                guard let bn = UInt64(b.text) else { throw FilterError("invalid byte counter '\(b.text)'", column: b.column) }
                counter = FilterCounter(packets: pn, bytes: bn)
            case "-j", "--jump":
                if pendingInvert != nil { throw FilterError("'!' cannot invert the target", column: pendingInvert) }
                guard !targetGiven else { throw FilterError("target given more than once", column: t.column) }
                targetGiven = true
                hasMatchOrTarget = true
                let v = try next(t)
                switch v.text {
                case "ACCEPT": rule.target = .accept
                case "DROP": rule.target = .drop
                case "CONTINUE": rule.target = .continue
                case "RETURN": rule.target = .return
                default:
                    if ["mark", "snat", "dnat", "redirect", "arpreply", "log", "nflog", "ulog"].contains(v.text.lowercased()) {
                        throw FilterError("target '\(v.text)' is not supported: use ACCEPT, DROP, CONTINUE, RETURN or a chain", column: v.column)
                    }
                    try checkChainName(v.text, column: v.column)
                    rule.target = .jump(v.text)
                }
            case "-i", "--in-interface", "--in-if":
                try once("-i", t); let (v, inv) = try value(t)
                rule.inInterface = Negatable(try interface(v), inverted: inv); firstColumn["-i"] = t.column
            case "-o", "--out-interface", "--out-if":
                try once("-o", t); let (v, inv) = try value(t)
                rule.outInterface = Negatable(try interface(v), inverted: inv); firstColumn["-o"] = t.column
            case "--logical-in":
                try once("--logical-in", t); let (v, inv) = try value(t)
                rule.logicalIn = Negatable(try interface(v), inverted: inv); firstColumn["--logical-in"] = t.column
            case "--logical-out":
                try once("--logical-out", t); let (v, inv) = try value(t)
                rule.logicalOut = Negatable(try interface(v), inverted: inv); firstColumn["--logical-out"] = t.column
            case "-s", "--source", "--src":
                try once("-s", t); let (v, inv) = try value(t)
                rule.source = Negatable(try macPattern(v, keywords: true), inverted: inv)
            case "-d", "--destination", "--dst":
                try once("-d", t); let (v, inv) = try value(t)
                rule.destination = Negatable(try macPattern(v, keywords: true), inverted: inv)
            case "-p", "--protocol", "--proto":
                try once("-p", t); let (v, inv) = try value(t)
                if v.text.uppercased() == "LENGTH" {
                    rule.proto = Negatable(.length, inverted: inv)
                } else {
                    let e = try etherType(v)
                    guard e >= 0x0600 else {
                        throw FilterError("protocol \(v.text) is below 0x0600: use LENGTH for 802.3 frames", column: v.column)
                    }
                    rule.proto = Negatable(.type(e), inverted: inv)
                }
            case "--vlan-id":
                try once(o, t); let (v, inv) = try value(t); firstColumn["vlan", default: t.column] = min(firstColumn["vlan"] ?? t.column, t.column)
                guard let n = UInt16(v.text), n <= 4094 else { throw FilterError("invalid VLAN ID '\(v.text)': expected 0 to 4094", column: v.column) }
                rule.vlanID = Negatable(n, inverted: inv)
            case "--vlan-prio":
                try once(o, t); let (v, inv) = try value(t); uses("vlan", t)
                guard let n = UInt8(v.text), n <= 7 else { throw FilterError("invalid VLAN priority '\(v.text)': expected 0 to 7", column: v.column) }
                rule.vlanPriority = Negatable(n, inverted: inv)
            case "--vlan-encap":
                try once(o, t); let (v, inv) = try value(t); uses("vlan", t)
                rule.vlanEncapsulation = Negatable(try etherType(v), inverted: inv)
            case "--arp-op", "--arp-opcode":
                try once("--arp-op", t); let (v, inv) = try value(t); uses("arp", t)
                guard let n = ARPNames.opcode(v.text) else { throw FilterError("invalid ARP opcode '\(v.text)'", column: v.column) }
                rule.arpOpcode = Negatable(n, inverted: inv)
            case "--arp-htype":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                let n: UInt16? = v.text.lowercased() == "ethernet" ? 1 : UInt16(v.text)
                guard let n else { throw FilterError("invalid ARP hardware type '\(v.text)'", column: v.column) }
                rule.arpHardwareType = Negatable(n, inverted: inv)
            case "--arp-ptype":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                rule.arpProtocolType = Negatable(try etherType(v), inverted: inv)
            case "--arp-ip-src":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                rule.arpIPSource = Negatable(try ipv4(v), inverted: inv)
            case "--arp-ip-dst":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                rule.arpIPDestination = Negatable(try ipv4(v), inverted: inv)
            case "--arp-mac-src":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                rule.arpMACSource = Negatable(try macPattern(v, keywords: false), inverted: inv)
            case "--arp-mac-dst":
                try once(o, t); let (v, inv) = try value(t); uses("arp", t)
                rule.arpMACDestination = Negatable(try macPattern(v, keywords: false), inverted: inv)
            case "--arp-gratuitous":
                try once(o, t); uses("arp", t)
                rule.arpGratuitous = Negatable(true, inverted: pendingInvert != nil)
                pendingInvert = nil
            case "--ip-src", "--ip-source":
                try once("--ip-src", t); let (v, inv) = try value(t); uses("ip", t)
                rule.ipSource = Negatable(try ipv4(v), inverted: inv)
            case "--ip-dst", "--ip-destination":
                try once("--ip-dst", t); let (v, inv) = try value(t); uses("ip", t)
                rule.ipDestination = Negatable(try ipv4(v), inverted: inv)
            case "--ip-tos":
                try once(o, t); let (v, inv) = try value(t); uses("ip", t)
                guard let n = byteNumber(v.text) else { throw FilterError("invalid TOS '\(v.text)': expected 0 to 255 or 0x00 to 0xff", column: v.column) }
                rule.ipTOS = Negatable(UInt8(n), inverted: inv)
            case "--ip-proto", "--ip-protocol":
                try once("--ip-proto", t); let (v, inv) = try value(t); uses("ip", t)
                guard let n = IPProtocolNames.value(of: v.text) else { throw FilterError("unknown IP protocol '\(v.text)'", column: v.column) }
                rule.ipProtocol = Negatable(n, inverted: inv)
            case "--ip-sport", "--ip-source-port":
                try once("--ip-sport", t); let (v, inv) = try value(t); uses("ip", t)
                firstColumn["ip-port"] = t.column
                rule.ipSourcePort = Negatable(try portRange(v), inverted: inv)
            case "--ip-dport", "--ip-destination-port":
                try once("--ip-dport", t); let (v, inv) = try value(t); uses("ip", t)
                firstColumn["ip-port"] = firstColumn["ip-port"] ?? t.column
                rule.ipDestinationPort = Negatable(try portRange(v), inverted: inv)
            case "--ip6-src", "--ip6-source":
                try once("--ip6-src", t); let (v, inv) = try value(t); uses("ip6", t)
                rule.ip6Source = Negatable(try ipv6(v), inverted: inv)
            case "--ip6-dst", "--ip6-destination":
                try once("--ip6-dst", t); let (v, inv) = try value(t); uses("ip6", t)
                rule.ip6Destination = Negatable(try ipv6(v), inverted: inv)
            case "--ip6-tclass":
                try once(o, t); let (v, inv) = try value(t); uses("ip6", t)
                guard let n = byteNumber(v.text) else { throw FilterError("invalid traffic class '\(v.text)': expected 0 to 255 or 0x00 to 0xff", column: v.column) }
                rule.ip6TrafficClass = Negatable(UInt8(n), inverted: inv)
            case "--ip6-proto", "--ip6-protocol":
                try once("--ip6-proto", t); let (v, inv) = try value(t); uses("ip6", t)
                guard let n = IPProtocolNames.value(of: v.text) else { throw FilterError("unknown IP protocol '\(v.text)'", column: v.column) }
                rule.ip6Protocol = Negatable(n, inverted: inv)
            case "--ip6-sport", "--ip6-source-port":
                try once("--ip6-sport", t); let (v, inv) = try value(t); uses("ip6", t)
                firstColumn["ip6-port"] = t.column
                rule.ip6SourcePort = Negatable(try portRange(v), inverted: inv)
            case "--ip6-dport", "--ip6-destination-port":
                try once("--ip6-dport", t); let (v, inv) = try value(t); uses("ip6", t)
                firstColumn["ip6-port"] = firstColumn["ip6-port"] ?? t.column
                rule.ip6DestinationPort = Negatable(try portRange(v), inverted: inv)
            case "--among-src", "--among-dst":
                try once(o, t); let (v, inv) = try value(t)
                let list = try amongList(v)
                if o == "--among-src" { rule.amongSource = Negatable(list, inverted: inv) } else { rule.amongDestination = Negatable(list, inverted: inv) }
            default:
                if command == nil, !o.hasPrefix("-") {
                    throw FilterError("unexpected word '\(o)': expected a command such as -A CHAIN", column: t.column)
                }
                if !o.hasPrefix("-") { throw FilterError("unexpected word '\(o)'", column: t.column) }
                if o.hasPrefix("--ip6-icmp") || o.hasPrefix("--ip-icmp") || o.hasPrefix("--ip-igmp") || o.hasPrefix("--mark")
                    || o.hasPrefix("--limit") || o.hasPrefix("--pkttype") || o.hasPrefix("--stp") || o.hasPrefix("--log") {
                    throw FilterError("option \(o) is not supported (see docs/filtering.md)", column: t.column)
                }
                throw FilterError("unknown option '\(o)'", column: t.column)
            }
            if pendingInvert != nil, !["-t", "--table", "-c", "--set-counters"].contains(o) {
                // A `!` consumed by a match is cleared in value(); one left means it stood before a
                // command or an option that cannot be inverted.
                throw FilterError("'!' cannot invert \(o)", column: pendingInvert)
            }
            k += 1
        }
        if let p = pendingInvert { throw FilterError("'!' at the end of the command", column: p) }
        lastColumn = max(lastColumn, 1)
        guard let cmd = command else { throw FilterError("no command given: expected -A, -I, -D, -R, -L, -F, -Z, -P, -N, -X, -E or -C", column: 1) }

        func chainName() throws(FilterError) -> String {
            guard let c = chain else { throw FilterError("\(cmd.name) needs a chain", column: cmd.column) }
            return c
        }
        func number(_ t: FilterToken) throws(FilterError) -> Int {
            guard let n = Int(t.text), n != 0 else { throw FilterError("invalid rule number '\(t.text)'", column: t.column) }
            return n
        }
        func noRule() throws(FilterError) {
            if hasMatchOrTarget || counter != nil {
                throw FilterError("\(cmd.name) takes no rule", column: cmd.column)
            }
        }
        let ruleCommands = ["-A", "-I", "-D", "-R"]
        if !ruleCommands.contains(cmd.name) { try noRule() }
        if cmd.name != "-L" && (list.numbers || list.counters || list.commands) {
            throw FilterError("--Ln, --Lc and --Lx go with -L only", column: cmd.column)
        }
        if ruleCommands.contains(cmd.name), !(cmd.name == "-D" && !positional.isEmpty) {
            if let c = chain { try checkChainName(c, column: chainColumn) }
            try validate(rule, chain: chain ?? "", firstColumn: firstColumn, end: lastColumn)
        }

        switch cmd.name {
        case "-A": return .append(chain: try chainName(), rule: rule, counter: counter)
        case "-I": return .insert(chain: try chainName(), position: try positional.first.map(number) ?? 1, rule: rule, counter: counter)
        case "-R":
            guard let p = positional.first else { throw FilterError("-R needs a rule number", column: cmd.column) }
            return .replace(chain: try chainName(), position: try number(p), rule: rule, counter: counter)
        case "-D":
            if let p = positional.first {
                if hasMatchOrTarget { throw FilterError("-D takes a rule number or a rule, not both", column: p.column) }
                let (a, b) = try range(p)
                return .deleteNumbers(chain: try chainName(), from: a, to: b)
            }
            guard hasMatchOrTarget else { throw FilterError("-D needs a rule number or a rule", column: cmd.column) }
            return .delete(chain: try chainName(), rule: rule)
        case "-L": return .list(chain: chain, options: list)
        case "-F": return .flush(chain: chain)
        case "-Z": return .zero(chain: chain)
        case "-P":
            guard let w = policyWord, let p = FilterPolicy(rawValue: w.text) else {
                throw FilterError("invalid policy '\(policyWord?.text ?? "")': expected ACCEPT, DROP or RETURN", column: policyWord?.column ?? cmd.column)
            }
            return .policy(chain: try chainName(), policy: p)
        case "-N":
            let c = try chainName()
            try checkChainName(c, column: chainColumn)
            var policy: FilterPolicy? = nil
            if let w = policyWord {
                guard let p = FilterPolicy(rawValue: w.text) else {
                    throw FilterError("invalid policy '\(w.text)': expected ACCEPT, DROP or RETURN", column: w.column)
                }
                policy = p
            }
            return .newChain(name: c, policy: policy)
        case "-X": return .deleteChain(name: chain)
        case "-E":
            let to = positional[0]
            try checkChainName(to.text, column: to.column)
            return .renameChain(from: try chainName(), to: to.text)
        case "-C":
            guard positional.count == 3 || positional.count == 2 else {
                throw FilterError("-C needs CHAIN RULE-NUMBER PACKETS BYTES", column: cmd.column)
            }
            var (a, b) = (1, 1)
            var rest = positional[...]
            if positional.count == 3 { (a, b) = try range(positional[0]); rest = positional[1...] }
            let pc = try counterChange(rest[rest.startIndex]), bc = try counterChange(rest[rest.startIndex + 1])
            return .changeCounters(chain: try chainName(), from: a, to: b, packets: pc, bytes: bc)
        default:
            throw FilterError("internal: unhandled command \(cmd.name)", column: cmd.column)
        }
    }
}
