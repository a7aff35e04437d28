// userswitchctl: configures and inspects a running userswitchd over its control socket.
//
// The tool is thin on purpose: argument-parser handles the fixed syntax, SwitchControl's
// CommandArguments the free-form words (key=value, Xen bridge specs), Format the output, and
// ControlClient the transport. All argument checks happen before connecting, so a wrong command
// changes nothing. Exit status: 0 success, 1 the daemon refused or could not be reached,
// 64 (EX_USAGE) a usage error found here.

import ArgumentParser
import Foundation
import SwitchControl
import SwitchCore

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Control socket of userswitchd.",
        discussion: "Default: $USERSWITCH_SOCKET if set, else \(defaultSocketPath).",
        valueName: "path"))
    var socket: String?

    var client: ControlClient { ControlClient(path: resolveSocketPath(option: socket)) }
}

/// Prints `userswitchctl: error: MESSAGE` to stderr and exits with status 1.
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("userswitchctl: error: \(message)\n".utf8))
    return ExitCode(1)
}

/// Sends `command`; returns the daemon's result or exits with status 1 on any failure.
func perform(_ command: ControlCommand, _ global: GlobalOptions) throws -> ControlResult {
    let response: ControlResponse
    do {
        response = try global.client.send(command)
    } catch {
        throw fail(error.description)
    }
    guard response.ok else { throw fail(response.error ?? "request failed without a message") }
    return response.result ?? .done
}

/// Turns a CommandArguments error into a usage error (exit 64, with the usage text).
func usage<T>(_ body: () throws(CommandLineError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw ValidationError(error.message)
    }
}

func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

struct UserSwitchCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "userswitchctl",
        abstract: "Configure and inspect the userswitch userspace Ethernet switch.",
        discussion: "Talks to userswitchd over its control socket (root only). See docs/usage.md.",
        subcommands: [AddBridge.self, DelBridge.self, AddPort.self, DelPort.self, Show.self, FDB.self,
                      FDBAdd.self, FDBDel.self, SetAgeing.self, Stats.self,
                      Apply.self, ShowConfig.self, SetPortGuest.self,
                      Filter.self, FilterSave.self, FilterRestore.self, SetPort.self, // FilterCommands.swift
                      AddRouter.self, DelRouter.self, RouteAdd.self, RouteDel.self, Routes.self, Neigh.self,
                      NeighAdd.self, NeighDel.self, NeighFlush.self]) // RouterCommands.swift
}

struct AddBridge: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add-br", abstract: "Create a bridge.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Name of the new bridge.") var bridge: String
    @Option(help: ArgumentHelp("Seconds a learned MAC address stays in the FDB unseen (default 300).", valueName: "seconds"))
    var ageing: UInt32?
    @Option(help: ArgumentHelp("Most FDB entries the bridge holds.", valueName: "n"))
    var fdbCapacity: Int?

    func validate() throws {
        if let n = fdbCapacity, n <= 0 { throw ValidationError("--fdb-capacity must be a positive number, not \(n)") }
    }

    func run() throws {
        _ = try perform(.addBridge(name: bridge, ageingSeconds: ageing, fdbCapacity: fdbCapacity), global)
    }
}

struct DelBridge: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del-br", abstract: "Delete a bridge and all its ports.")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String

    func run() throws {
        _ = try perform(.delBridge(name: bridge), global)
    }
}

struct AddPort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-port",
        abstract: "Attach an interface to a bridge as a port.",
        discussion: """
        OPTIONS are key=value words: tag=N (access port in VLAN N), trunks=A,B,C-D (trunk of these \
        VLANs), native=N (untagged VLAN of a trunk), type=system|tap (system: an existing interface, \
        the default; tap: a TAP device the switch creates), mac=M[,M...] and ip="A B ..." (the \
        guest's addresses: anti-spoofing drops frames from other sources), anti-spoofing=on|off, \
        ra=on|off and dhcp=on|off (on a router's port only: router advertisements to the guest, \
        the router's DHCP server handing the guest its first IPv4 address). \
        Without VLAN options the port is an access port in VLAN 1. BRIDGE may also be a Xen bridge spec BRIDGE[.VLAN][:TRUNK[:TRUNK...]], \
        e.g. xenbr0.10 or xenbr0:10:20; then no VLAN options may be given.
        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Bridge name, or a Xen spec BRIDGE[.VLAN][:TRUNK...].", valueName: "bridge"))
    var bridge: String
    @Argument(help: ArgumentHelp("Interface name.", valueName: "iface")) var port: String
    @Argument(help: ArgumentHelp("tag=N, trunks=LIST, native=N, type=system|tap, mac=M, ip=A, anti-spoofing=on|off.",
                                 valueName: "options"))
    var options: [String] = []

    /// Checked in validate() so that a mistake prints this subcommand's usage.
    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        try usage { () throws(CommandLineError) in try CommandArguments.addPort(bridge: bridge, port: port, words: options) }
    }

    func run() throws {
        let command = try request()
        _ = try perform(command, global)
    }
}

struct DelPort: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del-port", abstract: "Detach a port from a bridge.")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp(valueName: "iface")) var port: String

    func run() throws {
        _ = try perform(.delPort(bridge: bridge, port: port), global)
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "List bridges and their ports (like brctl show).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        guard case .show(let bridges) = try perform(.show, global) else { throw fail("userswitchd sent no bridge list") }
        // Routers after the bridges; a daemon that predates routers has none to list.
        var routers: [RouterInfo] = []
        if let r = try? global.client.send(.showRouters), r.ok, case .routers(let list)? = r.result { routers = list }
        if json {
            // One array: the bridges, then the routers (a router's object has "mode"), so a script
            // that walks every switch's "ports" needs no second form.
            emit(try Format.json(bridges.map(ShowEntry.bridge) + routers.map(ShowEntry.router)))
        } else {
            emit(Format.show(bridges) + (routers.isEmpty ? "" : Format.routers(routers)))
        }
    }
}

/// One element of `show --json`: a bridge or a router, encoded as the object itself.
enum ShowEntry: Encodable {
    case bridge(BridgeInfo)
    case router(RouterInfo)

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .bridge(let b): try b.encode(to: encoder)
        case .router(let r): try r.encode(to: encoder)
        }
    }
}

struct FDB: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fdb", abstract: "List a bridge's forwarding database (like brctl showmacs).")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        guard case .fdb(let entries) = try perform(.fdb(bridge: bridge), global) else { throw fail("userswitchd sent no FDB listing") }
        emit(json ? try Format.json(entries) : Format.fdb(entries))
    }
}

struct FDBAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fdb-add", abstract: "Add a static FDB entry (never ages, never moves).",
        discussion: "The VLAN defaults to 1; give vlan=N for another.")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp("MAC address, e.g. 00:16:3e:12:34:56.", valueName: "mac")) var mac: String
    @Argument(help: ArgumentHelp("Port the address is reached through.", valueName: "port")) var port: String
    @Argument(help: ArgumentHelp("vlan=N", valueName: "vlan=N")) var options: [String] = []

    /// Checked in validate() so that a mistake prints this subcommand's usage.
    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        try usage { () throws(CommandLineError) in try CommandArguments.fdbAdd(bridge: bridge, mac: mac, port: port, words: options) }
    }

    func run() throws {
        let command = try request()
        _ = try perform(command, global)
    }
}

struct FDBDel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fdb-del", abstract: "Remove an FDB entry (static or learned).",
        discussion: "The VLAN defaults to 1; give vlan=N for another.")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp(valueName: "mac")) var mac: String
    @Argument(help: ArgumentHelp("vlan=N", valueName: "vlan=N")) var options: [String] = []

    /// Checked in validate() so that a mistake prints this subcommand's usage.
    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        try usage { () throws(CommandLineError) in try CommandArguments.fdbDel(bridge: bridge, mac: mac, words: options) }
    }

    func run() throws {
        let command = try request()
        _ = try perform(command, global)
    }
}

struct SetAgeing: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-ageing", abstract: "Set how long learned addresses stay in a bridge's FDB.")
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp("Seconds.", valueName: "seconds")) var seconds: UInt32

    func run() throws {
        _ = try perform(.setAgeing(bridge: bridge, seconds: seconds), global)
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show port counters and drop reasons.",
        discussion: "Without arguments, every bridge; with PORT, that port; with --bridge, one bridge.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Only this port.", valueName: "port")) var port: String?
    @Option(help: ArgumentHelp("Only this bridge.", valueName: "bridge")) var bridge: String?
    @Flag(help: "List drop reasons at zero too.") var allDrops = false
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        guard case .stats(let stats) = try perform(.stats(bridge: bridge, port: port), global) else {
            throw fail("userswitchd sent no statistics")
        }
        emit(json ? try Format.json(stats) : Format.stats(stats, allDrops: allDrops))
    }
}

// MARK: durable configuration (docs/configuration.md)

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Bring the running switch to a configuration file (all or nothing).",
        discussion: """
        FILE is a JSON configuration (docs/configuration.md; `userswitchctl show-config` prints the \
        running one). It is checked here first, with the place of any mistake; then the daemon \
        changes only what differs, and returns to the previous state if a step fails.
        """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Configuration file, or - for stdin.", valueName: "file")) var file: String

    func run() throws {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: file) else { throw fail("cannot read \(file)") }
            data = d
        }
        let config: SwitchConfiguration
        do throws(ConfigurationError) {
            config = try ConfigStore.decode(data, source: file == "-" ? "stdin" : file)
        } catch {
            throw fail(error.message)
        }
        _ = try perform(.apply(config), global)
    }
}

struct ShowConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show-config",
        abstract: "Print the running configuration as JSON (what the daemon saves; input for apply).")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        guard case .configuration(let config) = try perform(.configuration, global) else {
            throw fail("userswitchd sent no configuration")
        }
        FileHandle.standardOutput.write(ConfigStore.encode(config))
    }
}

struct SetPortGuest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-port-guest",
        abstract: "Record the guest behind a port (shown by show --json, saved).",
        discussion: """
        OPTIONS: name=GUEST uuid=UUID mac=MAC ip=A[,B...] (addresses may carry /PREFIX). Without \
        options the record is removed. vif-userswitch sets it from the guest's xenstore keys.
        """)
    @OptionGroup var global: GlobalOptions
    @Argument var bridge: String
    @Argument(help: ArgumentHelp(valueName: "iface")) var port: String
    @Argument(help: ArgumentHelp("name=, uuid=, mac=, ip=", valueName: "options")) var options: [String] = []

    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        let words = try usage { () throws(CommandLineError) in
            try KeyValueWords.parse(options, allowed: ["name", "uuid", "mac", "ip"], what: "guest option")
        }
        if words.isEmpty { return .setPortGuest(bridge: bridge, port: port, guest: nil) }
        var guest = GuestInfo(name: words["name"], uuid: words["uuid"])
        if let m = words["mac"] {
            guest.mac = try usage { () throws(CommandLineError) in try CommandArguments.parseMAC(m) }
        }
        if let ips = words["ip"] {
            guest.ips = ips.split(separator: ",").map(String.init)
        }
        do throws(ConfigurationError) { try guest.validate() } catch { throw ValidationError(error.message) }
        return .setPortGuest(bridge: bridge, port: port, guest: guest)
    }

    func run() throws {
        _ = try perform(try request(), global)
    }
}
