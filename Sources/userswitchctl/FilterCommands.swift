// userswitchctl filter, filter-save, filter-restore, set-port: the ebtables-compatible filter and
// the port properties that drive anti-spoofing (docs/filtering.md).
//
// `filter` passes its words through untouched, so `userswitchctl filter -A FORWARD -i vif+ -j DROP`
// reads like the ebtables command it replaces. ebtables has no bridge argument (its table is per
// host); here rules belong to a bridge: `--bridge BR` (before the ebtables words) names it, and
// without it the daemon uses the only bridge there is. `--json` and `--bridge` may
// also follow the ebtables words. The words are parsed here first, so a
// mistake is reported with its column before anything is sent.

import ArgumentParser
import Foundation
import SwitchControl
import SwitchCore

struct Filter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter",
        abstract: "Edit or list a bridge's filter rules with ebtables syntax.",
        discussion: """
        Examples: filter -A FORWARD -i vif1.0 -s ! 00:16:3e:00:00:01 -j DROP; filter -L --Ln --Lc; \
        filter -P FORWARD DROP; filter -N guests; filter -F. Only the filter table exists \
        (-t filter may be given). --bridge BR and --json may come before or after the ebtables words; without \
        --bridge the only bridge is used.
        """)
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("The bridge whose rules to change (default: the only bridge).", valueName: "bridge"))
    var bridge: String?
    @Flag(help: "Print the listing as JSON.") var json = false
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("ebtables command words.", valueName: "ebtables-args"))
    var words: [String] = []

    /// `--json` and `--bridge BR` may also follow the ebtables words (`filter -L --json`): ebtables
    /// has no option of either name, so taking them out of the passthrough words is unambiguous.
    mutating func validate() throws {
        var rest: [String] = []
        var k = 0
        while k < words.count {
            switch words[k] {
            case "--json": json = true
            case "--bridge" where k + 1 < words.count:
                bridge = words[k + 1]
                k += 1
            default: rest.append(words[k])
            }
            k += 1
        }
        words = rest
        do throws(FilterError) { _ = try FilterParser.parseCommand(words) } catch {
            throw ValidationError("ebtables syntax: \(error.description)\n  \(words.joined(separator: " "))"
                                  + (error.column.map { "\n  " + String(repeating: " ", count: $0 - 1) + "^" } ?? ""))
        }
    }

    func run() throws {
        let result = try perform(.filter(bridge: bridge, arguments: words), global)
        if case .filterListing(let listing) = result {
            emit(json ? try Format.json(listing) : listing.text)
        }
    }
}

struct FilterSave: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter-save", abstract: "Print a bridge's filter rules in ebtables-save format.")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("The bridge (default: the only bridge).", valueName: "bridge")) var bridge: String?
    @Flag(name: [.customShort("c"), .long], help: "Include packet and byte counters (-c P B).") var counters = false

    func run() throws {
        guard case .filterText(let text) = try perform(.filterSave(bridge: bridge, counters: counters), global) else {
            throw fail("userswitchd sent no rules")
        }
        emit(text)
    }
}

struct FilterRestore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter-restore",
        abstract: "Replace a bridge's filter rules with ebtables-save text, atomically.",
        discussion: "Reads FILE, or stdin when FILE is - or absent. The text is checked first (line and column of any mistake).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("The bridge (default: the only bridge).", valueName: "bridge")) var bridge: String?
    @Argument(help: ArgumentHelp("ebtables-save file, or - for stdin.", valueName: "file")) var file: String?

    func run() throws {
        let data: Data
        if file == nil || file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: file!) else { throw fail("cannot read \(file!)") }
            data = d
        }
        let text = String(decoding: data, as: UTF8.self)
        do throws(FilterError) { _ = try FilterRuleSet.restore(text: text) } catch {
            throw fail("\(file ?? "stdin"): \(error.description)")
        }
        _ = try perform(.filterRestore(bridge: bridge, text: text), global)
    }
}

struct SetPort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-port",
        abstract: "Set a port's guest addresses and anti-spoofing.",
        discussion: """
        PROPERTIES: mac=M[,M...] (allowed source MACs), ip="A B ..." (IPv4/IPv6 addresses or \
        prefixes), anti-spoofing=on|off (default: on when the port has an address). mac=none or \
        ip=none clears a list. Properties not given stay as they are.
        """)
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp(valueName: "iface")) var port: String
    @Argument(help: ArgumentHelp("mac=, ip=, anti-spoofing=", valueName: "properties")) var properties: [String] = []

    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        try usage { () throws(CommandLineError) in try CommandArguments.setPort(bridge: bridge, port: port, words: properties) }
    }

    func run() throws {
        _ = try perform(try request(), global)
    }
}
