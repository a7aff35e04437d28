// FilterRuleSet: the filter table of one bridge, as the user edits it, and its text forms.
//
// Every change is made on a copy and validated before it replaces the rule set in force (chain
// exists, jump target exists, no chain loop, no deleting a referenced chain, built-in policies
// ACCEPT or DROP only), so a refused command changes nothing. Counters belong to rules: a rule
// keeps its counters across later changes to other rules, and a new rule starts at zero unless
// `-c` gives it values (as ebtables does).
//
// Text forms: `listing` gives ebtables -L (with --Ln, --Lc, --Lx), `saveText` the ebtables-save
// format, `restore(text:)` parses ebtables-save (or ebtables-restore) input into a new rule set.

public struct FilterRuleSet: Equatable, Sendable {
    public static let builtinChains = ["INPUT", "FORWARD", "OUTPUT"]
    /// Nested user-chain calls deeper than this are refused (the evaluator's stack size).
    public static let maxChains = 4096

    /// INPUT, FORWARD, OUTPUT first, then user chains in creation order.
    public private(set) var chains: [FilterChain]

    public init() {
        chains = FilterRuleSet.builtinChains.map { FilterChain(name: $0, policy: .accept) }
    }

    public var isEmpty: Bool { chains.count == 3 && chains.allSatisfy { $0.rules.isEmpty && $0.policy == .accept } }
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }

    public func chainIndex(_ name: String) -> Int? { chains.firstIndex { $0.name == name } }
    public func chain(_ name: String) -> FilterChain? { chainIndex(name).map { chains[$0] } }

    /// Counters of every rule, in chain order then rule order (the layout FilterProgram uses).
    public var flatCounters: [FilterCounter] { chains.flatMap(\.counters) }

    /// Replaces every counter, in `flatCounters` order (taken back from the dataplane).
    public mutating func setFlatCounters(_ values: [FilterCounter]) {
        precondition(values.count == ruleCount)
        var k = 0
        for c in chains.indices {
            for r in chains[c].counters.indices { chains[c].counters[r] = values[k]; k += 1 }
        }
    }

    // MARK: commands

    /// Applies a parsed command. Returns the listing for -L (nil for changes).
    /// Throws, leaving the rule set as it was, when the command cannot be applied.
    @discardableResult
    public mutating func apply(_ command: FilterCommand) throws(FilterError) -> FilterListing? {
        var s = self
        let listing = try s.applyInPlace(command)
        try s.checkReferences()
        self = s
        return listing
    }

    private func existing(_ name: String) throws(FilterError) -> Int {
        guard let i = chainIndex(name) else { throw FilterError("chain '\(name)' does not exist") }
        return i
    }

    private func checkTarget(_ rule: FilterRule, in chain: String) throws(FilterError) {
        if case .jump(let target) = rule.target {
            guard chainIndex(target) != nil else { throw FilterError("chain '\(target)' (the target) does not exist") }
            guard !FilterRuleSet.builtinChains.contains(target) else {
                throw FilterError("cannot jump to the built-in chain \(target)")
            }
        }
        if FilterRuleSet.builtinChains.contains(chain) {
            if rule.target == .return { throw FilterError("the RETURN target is only for user-defined chains") }
            if rule.inInterface != nil && chain == "OUTPUT" { throw FilterError("use -i only in the INPUT and FORWARD chains") }
            if rule.outInterface != nil && chain == "INPUT" { throw FilterError("use -o only in the OUTPUT and FORWARD chains") }
        }
    }

    /// 1-based rule number (negative: from the end, -1 the last) to an index, for -D/-R/-C.
    private func ruleIndex(_ n: Int, count: Int) throws(FilterError) -> Int {
        let i = n > 0 ? n - 1 : count + n
        guard i >= 0 && i < count else { throw FilterError("rule number \(n) is out of range: the chain has \(count) rules") }
        return i
    }

    private mutating func applyInPlace(_ command: FilterCommand) throws(FilterError) -> FilterListing? {
        switch command {
        case .append(let name, let rule, let counter):
            let c = try existing(name)
            try checkTarget(rule, in: name)
            chains[c].rules.append(rule)
            chains[c].counters.append(counter ?? FilterCounter())
        case .insert(let name, let position, let rule, let counter):
            let c = try existing(name)
            try checkTarget(rule, in: name)
            let n = chains[c].rules.count
            let i = position > 0 ? position - 1 : n + position
            guard i >= 0 && i <= n else { throw FilterError("rule number \(position) is out of range: the chain has \(n) rules") }
            chains[c].rules.insert(rule, at: i)
            chains[c].counters.insert(counter ?? FilterCounter(), at: i)
        case .delete(let name, let rule):
            let c = try existing(name)
            guard let i = chains[c].rules.firstIndex(of: rule) else {
                throw FilterError("no such rule in chain \(name): \(rule.text)")
            }
            chains[c].rules.remove(at: i)
            chains[c].counters.remove(at: i)
        case .deleteNumbers(let name, let from, let to):
            let c = try existing(name)
            let n = chains[c].rules.count
            let a = try ruleIndex(from, count: n), b = try ruleIndex(to, count: n)
            guard a <= b else { throw FilterError("rule range \(from):\(to) is reversed") }
            chains[c].rules.removeSubrange(a...b)
            chains[c].counters.removeSubrange(a...b)
        case .replace(let name, let position, let rule, let counter):
            let c = try existing(name)
            try checkTarget(rule, in: name)
            let i = try ruleIndex(position, count: chains[c].rules.count)
            chains[c].rules[i] = rule
            chains[c].counters[i] = counter ?? FilterCounter()
        case .list(let name, let options):
            if let name { _ = try existing(name) }
            let l = listing(chain: name, options: options)
            if options.zero { try zero(name) }
            return l
        case .flush(let name):
            if let name {
                let c = try existing(name)
                chains[c].rules = []
                chains[c].counters = []
            } else {
                for c in chains.indices { chains[c].rules = []; chains[c].counters = [] }
            }
        case .zero(let name):
            try zero(name)
        case .policy(let name, let policy):
            let c = try existing(name)
            if chains[c].isBuiltin && policy == .return {
                throw FilterError("policy RETURN is only for user-defined chains: \(name) takes ACCEPT or DROP")
            }
            chains[c].policy = policy
        case .newChain(let name, let policy):
            guard chainIndex(name) == nil else { throw FilterError("chain '\(name)' already exists") }
            guard chains.count < FilterRuleSet.maxChains else { throw FilterError("too many chains (at most \(FilterRuleSet.maxChains))") }
            chains.append(FilterChain(name: name, policy: policy ?? .return))
        case .deleteChain(let name):
            if let name {
                let c = try existing(name)
                guard !chains[c].isBuiltin else { throw FilterError("cannot delete the built-in chain \(name)") }
                if let (by, rule) = reference(to: name, ignoring: [name]) {
                    throw FilterError("cannot delete chain '\(name)': rule \(rule) of chain \(by) jumps to it")
                }
                chains.remove(at: c)
            } else {
                let user = chains.filter { !$0.isBuiltin }.map(\.name)
                for u in user {
                    if let (by, rule) = reference(to: u, ignoring: user) {
                        throw FilterError("cannot delete chain '\(u)': rule \(rule) of chain \(by) jumps to it")
                    }
                }
                chains.removeAll { !$0.isBuiltin }
            }
        case .renameChain(let from, let to):
            let c = try existing(from)
            guard !chains[c].isBuiltin else { throw FilterError("cannot rename the built-in chain \(from)") }
            guard chainIndex(to) == nil else { throw FilterError("chain '\(to)' already exists") }
            chains[c].name = to
            for k in chains.indices {
                for r in chains[k].rules.indices where chains[k].rules[r].target == .jump(from) {
                    chains[k].rules[r].target = .jump(to)
                }
            }
        case .changeCounters(let name, let from, let to, let packets, let bytes):
            let c = try existing(name)
            let n = chains[c].rules.count
            let a = try ruleIndex(from, count: n), b = try ruleIndex(to, count: n)
            guard a <= b else { throw FilterError("rule range \(from):\(to) is reversed") }
            for i in a...b {
                chains[c].counters[i].packets = packets.applied(to: chains[c].counters[i].packets)
                chains[c].counters[i].bytes = bytes.applied(to: chains[c].counters[i].bytes)
            }
        }
        return nil
    }

    private mutating func zero(_ name: String?) throws(FilterError) {
        if let name {
            let c = try existing(name)
            chains[c].counters = Array(repeating: FilterCounter(), count: chains[c].rules.count)
        } else {
            for c in chains.indices { chains[c].counters = Array(repeating: FilterCounter(), count: chains[c].rules.count) }
        }
    }

    /// The first rule (chain name, 1-based number) that jumps to `name`, outside `ignoring`.
    private func reference(to name: String, ignoring: [String]) -> (String, Int)? {
        for c in chains where !ignoring.contains(c.name) {
            if let i = c.rules.firstIndex(where: { $0.target == .jump(name) }) { return (c.name, i + 1) }
        }
        return nil
    }

    /// Every jump lands on an existing user chain, and no chain can reach itself.
    func checkReferences() throws(FilterError) {
        var index: [String: Int] = [:]
        for (i, c) in chains.enumerated() { index[c.name] = i }
        var edges = Array(repeating: [Int](), count: chains.count)
        for (i, c) in chains.enumerated() {
            for (r, rule) in c.rules.enumerated() {
                guard case .jump(let t) = rule.target else { continue }
                guard let j = index[t] else { throw FilterError("rule \(r + 1) of chain \(c.name) jumps to '\(t)', which does not exist") }
                edges[i].append(j)
            }
        }
        // Iterative DFS with colours: 0 new, 1 on the stack, 2 done.
        var colour = Array(repeating: 0, count: chains.count)
        for start in chains.indices where colour[start] == 0 {
            var stack: [(Int, Int)] = [(start, 0)]
            colour[start] = 1
            while let (node, next) = stack.last {
                if next < edges[node].count {
                    stack[stack.count - 1].1 += 1
                    let m = edges[node][next]
                    if colour[m] == 1 {
                        throw FilterError("chain loop: \(chains[node].name) jumps to \(chains[m].name), which leads back to it")
                    }
                    if colour[m] == 0 { colour[m] = 1; stack.append((m, 0)) }
                } else {
                    colour[node] = 2
                    stack.removeLast()
                }
            }
        }
    }

    // MARK: text forms

    /// ebtables -L as structured data (the CLI prints it with `FilterListing.text`).
    public func listing(chain: String? = nil, options: FilterListOptions = FilterListOptions()) -> FilterListing {
        let selected = chains.filter { chain == nil || $0.name == chain }
        return FilterListing(chains: selected.map { c in
            FilterListing.Chain(name: c.name, policy: c.policy.rawValue, rules: zip(c.rules, c.counters).map {
                FilterListing.Rule(text: $0.0.text, packets: $0.1.packets, bytes: $0.1.bytes)
            })
        }, options: options)
    }

    /// ebtables-save text: `*filter`, one `:CHAIN POLICY` line per chain, one `-A` line per rule
    /// (with `-c PACKETS BYTES` when `counters`).
    public func saveText(counters: Bool = false) -> String {
        var out = "*filter\n"
        for c in chains { out += ":\(c.name) \(c.policy.rawValue)\n" }
        for c in chains {
            for (r, k) in zip(c.rules, c.counters) {
                out += "-A \(c.name) \(r.text)"
                if counters { out += " -c \(k.packets) \(k.bytes)" }
                out += "\n"
            }
        }
        return out
    }

    /// Parses ebtables-save text into a complete rule set. Lines: `*filter` (other tables are
    /// refused), `:CHAIN POLICY`, `-A CHAIN RULE [-c P B]`, `COMMIT`, blank lines and `#` comments.
    /// Errors name the line and column.
    public static func restore(text: String) throws(FilterError) -> FilterRuleSet {
        var set = FilterRuleSet()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
        }
        // Chains first, so that a rule may jump to a chain declared further down.
        var table: String? = nil
        var declared: Set<String> = []
        for (n, line) in lines.enumerated() {
            let t = line.trimmingLeadingBlanks
            if t.hasPrefix("*") {
                let name = String(t.dropFirst()).trimmingTrailingBlanks
                guard name == "filter" else {
                    throw FilterError("table '\(name)' is not supported: only the filter table exists here", column: 2, line: n + 1)
                }
                table = name
            } else if t.hasPrefix(":") {
                let tokens = FilterParser.tokenize(line)
                let name = String(tokens[0].text.dropFirst())
                guard tokens.count == 2 || (tokens.count == 3 && tokens[2].text.hasPrefix("[")) else {
                    throw FilterError("expected ':CHAIN POLICY'", column: tokens[0].column, line: n + 1)
                }
                guard let policy = FilterPolicy(rawValue: tokens[1].text) else {
                    throw FilterError("invalid policy '\(tokens[1].text)': expected ACCEPT, DROP or RETURN", column: tokens[1].column, line: n + 1)
                }
                guard declared.insert(name).inserted else {
                    throw FilterError("chain '\(name)' declared twice", column: tokens[0].column + 1, line: n + 1)
                }
                do throws(FilterError) {
                    if let c = set.chainIndex(name) {
                        if policy == .return { throw FilterError("policy RETURN is only for user-defined chains: \(name) takes ACCEPT or DROP") }
                        set.chains[c].policy = policy
                    } else {
                        try FilterParser.checkChainName(name, column: nil)
                        set.chains.append(FilterChain(name: name, policy: policy))
                    }
                } catch {
                    throw FilterError(error.message, column: tokens[0].column + 1, line: n + 1)
                }
            }
        }
        _ = table
        for (n, line) in lines.enumerated() {
            let t = line.trimmingLeadingBlanks
            if t.isEmpty || t.hasPrefix("#") || t.hasPrefix("*") || t.hasPrefix(":") || t.trimmingTrailingBlanks == "COMMIT" { continue }
            let command: FilterCommand
            do {
                command = try FilterParser.parseCommand(line: line)
            } catch {
                throw FilterError(error.message, column: error.column, line: n + 1)
            }
            guard case .append(let chain, let rule, let counter) = command else {
                throw FilterError("only -A lines may appear in ebtables-save text", column: FilterParser.tokenize(line).first?.column, line: n + 1)
            }
            guard let c = set.chainIndex(chain) else {
                throw FilterError("chain '\(chain)' is not declared (add ':\(chain) RETURN')", column: FilterParser.tokenize(line).dropFirst().first?.column, line: n + 1)
            }
            do {
                try set.checkTarget(rule, in: chain)
            } catch {
                let col = FilterParser.tokenize(line).first { $0.text == "-j" || $0.text == "--jump" }?.column
                throw FilterError(error.message, column: col, line: n + 1)
            }
            set.chains[c].rules.append(rule)
            set.chains[c].counters.append(counter ?? FilterCounter())
        }
        try set.checkReferences()
        return set
    }
}

/// What `-L` shows: chains with their rules and counters. Codable for the control protocol.
public struct FilterListing: Codable, Equatable, Sendable {
    public struct Rule: Codable, Equatable, Sendable {
        public var text: String
        public var packets: UInt64
        public var bytes: UInt64
        public init(text: String, packets: UInt64, bytes: UInt64) { self.text = text; self.packets = packets; self.bytes = bytes }
    }
    public struct Chain: Codable, Equatable, Sendable {
        public var name: String
        public var policy: String
        public var rules: [Rule]
        public init(name: String, policy: String, rules: [Rule]) { self.name = name; self.policy = policy; self.rules = rules }
    }
    public var chains: [Chain]
    public var numbers: Bool
    public var counters: Bool
    public var commands: Bool

    public init(chains: [Chain], options: FilterListOptions) {
        self.chains = chains
        numbers = options.numbers; counters = options.counters; commands = options.commands
    }

    /// The text ebtables -L prints (rules in ebtables-save syntax, MACs zero-padded).
    public var text: String {
        var out = ""
        if commands {
            for c in chains where !FilterRuleSet.builtinChains.contains(c.name) { out += "-N \(c.name) -P \(c.policy)\n" }
            for c in chains where FilterRuleSet.builtinChains.contains(c.name) && c.policy != "ACCEPT" { out += "-P \(c.name) \(c.policy)\n" }
            for c in chains {
                for r in c.rules {
                    out += "-A \(c.name) \(r.text)" + (counters ? " -c \(r.packets) \(r.bytes)" : "") + "\n"
                }
            }
            return out
        }
        out = "Bridge table: filter\n"
        for c in chains {
            out += "\nBridge chain: \(c.name), entries: \(c.rules.count), policy: \(c.policy)\n"
            for (i, r) in c.rules.enumerated() {
                if numbers { out += "\(i + 1). " }
                out += r.text
                if counters { out += " , pcnt = \(r.packets) -- bcnt = \(r.bytes)" }
                out += "\n"
            }
        }
        return out
    }
}

extension StringProtocol {
    var trimmingLeadingBlanks: Substring {
        let s = self[...]
        return Substring(s.drop { $0 == " " || $0 == "\t" })
    }
    var trimmingTrailingBlanks: String {
        var s = String(self)
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return s
    }
}
