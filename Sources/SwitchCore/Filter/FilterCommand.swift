// FilterCommand: the ebtables commands the parser produces and the filter applies, their list
// options, and the error a rule or command that cannot be parsed or applied raises.

/// A rule or command that cannot be parsed or applied: where, and why.
public struct FilterError: Error, Equatable, CustomStringConvertible {
    /// 1-based line in ebtables-save text; nil for a single command.
    public var line: Int?
    /// 1-based column of the offending word; nil when the error is about the whole command.
    public var column: Int?
    public var message: String
    public init(_ message: String, column: Int? = nil, line: Int? = nil) {
        self.message = message; self.column = column; self.line = line
    }
    public var description: String {
        var s = ""
        if let l = line { s += "line \(l), " }
        if let c = column { s += "column \(c): " } else if !s.isEmpty { s = String(s.dropLast(2)) + ": " }
        return s + message
    }
}

public struct FilterListOptions: Equatable, Sendable {
    /// --Ln: rule numbers.
    public var numbers = false
    /// --Lc: packet and byte counters.
    public var counters = false
    /// --Lx: as commands that recreate the rules.
    public var commands = false
    /// -L -Z: list, then zero the counters listed.
    public var zero = false
    public init(numbers: Bool = false, counters: Bool = false, commands: Bool = false, zero: Bool = false) {
        self.numbers = numbers; self.counters = counters; self.commands = commands; self.zero = zero
    }
}

/// A counter value of `-C`: set (`N`), add (`+N`) or subtract (`-N`).
public enum CounterChange: Equatable, Sendable {
    case set(UInt64), add(UInt64), subtract(UInt64)
    func applied(to v: UInt64) -> UInt64 {
        switch self {
        case .set(let n): return n
        case .add(let n): return v &+ n
        case .subtract(let n): return v >= n ? v - n : 0
        }
    }
}

public enum FilterCommand: Equatable, Sendable {
    case append(chain: String, rule: FilterRule, counter: FilterCounter?)
    /// `position` is 1-based; negative counts from the end (-1: before the last... as ebtables).
    case insert(chain: String, position: Int, rule: FilterRule, counter: FilterCounter?)
    case delete(chain: String, rule: FilterRule)
    case deleteNumbers(chain: String, from: Int, to: Int)
    case replace(chain: String, position: Int, rule: FilterRule, counter: FilterCounter?)
    case list(chain: String?, options: FilterListOptions)
    case flush(chain: String?)
    case zero(chain: String?)
    case policy(chain: String, policy: FilterPolicy)
    case newChain(name: String, policy: FilterPolicy?)
    case deleteChain(name: String?)
    case renameChain(from: String, to: String)
    case changeCounters(chain: String, from: Int, to: Int, packets: CounterChange, bytes: CounterChange)

    /// Whether the command changes the rule set (everything but -L).
    public var isChange: Bool { if case .list = self { return false } else { return true } }
}
