// userswitchctl's router commands (routed mode): add-router, del-router, route-add, route-del,
// routes, neigh, neigh-add, neigh-del, neigh-flush. Routed guest ports are added with add-port on
// the router's name (`ip=` required). Listings follow iproute2's `ip route` and `ip neigh`.

import ArgumentParser
import Foundation
import SwitchControl
import SwitchCore

struct AddRouter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-router",
        abstract: "Create a router (routed mode: the guests' IPv4 and IPv6 router, Xen's vif-route).",
        discussion: """
        OPTIONS: uplink=IFACE (required: the interface towards the LAN), address=A/P (required: the \
        router's own address and the uplink's prefix), gateway=G (the default route), address6=A6/P6 \
        (its IPv6 address on the uplink), gateway6=G6 (the IPv6 default route; may be link-local), \
        mac=M (default: a stable address derived from the name), dns="A [B ...]" (the DNS servers \
        the DHCP server hands out, at most 4), mode=route. Guest ports: add-port NAME IFACE \
        ip="A [A6 ...]" [mac=M] [ra=on] [dhcp=on].
        """)
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp("uplink=, address=, gateway=, address6=, gateway6=, mac=, dns=, mode=route", valueName: "options"))
    var options: [String] = []

    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        let o = try usage { () throws(CommandLineError) in
            try KeyValueWords.parse(options, allowed: ["uplink", "address", "gateway", "address6", "gateway6", "mac", "dns", "mode"],
                                    what: "router option")
        }
        if let m = o["mode"], m != "route" {
            throw ValidationError(m == "nat" ? "mode=nat is not available yet: this userswitch routes (mode=route)"
                                             : "invalid mode '\(m)': expected route")
        }
        guard let uplink = o["uplink"] else { throw ValidationError("add-router needs uplink=IFACE") }
        guard let address = o["address"] else { throw ValidationError("add-router needs address=A/P") }
        let mac = try o["mac"].map { m in try usage { () throws(CommandLineError) in try CommandArguments.parseMAC(m) } }
        let command = ControlCommand.addRouter(name: router, uplink: uplink, address: address, gateway: o["gateway"], mac: mac,
                                               address6: o["address6"], gateway6: o["gateway6"],
                                               dns: (o["dns"] ?? "").split(separator: " ").map(String.init))
        do throws(ConfigurationError) { try command.validate() } catch { throw ValidationError(error.message) }
        return command
    }

    func run() throws { _ = try perform(try request(), global) }
}

struct DelRouter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del-router", abstract: "Delete a router and all its ports.")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    func run() throws { _ = try perform(.delRouter(name: router), global) }
}

struct RouteAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route-add", abstract: "Add a static route: route-add ROUTER PREFIX via GATEWAY | dev PORT.")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp("A.B.C.D/N or ADDR6/N", valueName: "prefix")) var prefix: String
    @Argument(help: ArgumentHelp("via GATEWAY, or dev PORT", valueName: "via|dev")) var words: [String] = []

    func validate() throws { _ = try request() }

    func request() throws -> ControlCommand {
        guard words.count == 2, words[0] == "via" || words[0] == "dev" else {
            throw ValidationError("expected 'via GATEWAY' or 'dev PORT' after the prefix")
        }
        let command = ControlCommand.routeAdd(router: router, prefix: prefix, via: words[0] == "via" ? words[1] : nil,
                                              dev: words[0] == "dev" ? words[1] : nil)
        do throws(ConfigurationError) { try command.validate() } catch { throw ValidationError(error.message) }
        return command
    }

    func run() throws { _ = try perform(try request(), global) }
}

struct RouteDel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route-del", abstract: "Remove a static route.")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp("A.B.C.D/N or ADDR6/N", valueName: "prefix")) var prefix: String
    func run() throws { _ = try perform(.routeDel(router: router, prefix: prefix), global) }
}

struct Routes: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routes", abstract: "List a router's routes (like ip route).")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Flag(help: "Print JSON instead of text.") var json = false
    func run() throws {
        guard case .routes(let r) = try perform(.routes(router: router), global) else { throw fail("userswitchd sent no routes") }
        emit(json ? try Format.json(r) : Format.routes(r))
    }
}

struct Neigh: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "neigh", abstract: "List a router's neighbours (like ip neigh).")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Flag(help: "Print JSON instead of text.") var json = false
    func run() throws {
        guard case .neighbours(let n) = try perform(.neighbours(router: router), global) else { throw fail("userswitchd sent no neighbours") }
        emit(json ? try Format.json(n) : Format.neighbours(n))
    }
}

struct NeighAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "neigh-add", abstract: "Add a permanent neighbour: neigh-add ROUTER A MAC PORT.")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp(valueName: "address")) var address: String
    @Argument(help: ArgumentHelp(valueName: "mac")) var mac: String
    @Argument(help: ArgumentHelp(valueName: "port")) var port: String
    func validate() throws { _ = try request() }
    func request() throws -> ControlCommand {
        let m = try usage { () throws(CommandLineError) in try CommandArguments.parseMAC(mac) }
        let command = ControlCommand.neighbourAdd(router: router, address: address, mac: m, port: port)
        do throws(ConfigurationError) { try command.validate() } catch { throw ValidationError(error.message) }
        return command
    }
    func run() throws { _ = try perform(try request(), global) }
}

struct NeighDel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "neigh-del", abstract: "Forget a neighbour.")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp(valueName: "address")) var address: String
    func run() throws { _ = try perform(.neighbourDel(router: router, address: address), global) }
}

struct NeighFlush: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "neigh-flush", abstract: "Forget the dynamic neighbours (of one port, or all).")
    @OptionGroup var global: GlobalOptions
    @Argument var router: String
    @Argument(help: ArgumentHelp(valueName: "port")) var port: String?
    func run() throws { _ = try perform(.neighbourFlush(router: router, port: port), global) }
}
