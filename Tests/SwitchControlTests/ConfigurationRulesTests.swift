// One validation: every value the daemon's commands refuse, the configuration loader refuses too,
// and the other way round, because both judge by ConfigurationRules. Each case below is one value
// put once into a command (as userswitchctl would send it) and once into a configuration file (as
// `apply` and a restart read it); both must agree, refusing or accepting.

import SwitchControl
import SwitchCore
import XCTest

final class ConfigurationRulesTests: XCTestCase {
    private static let mac = MACAddress("02:00:00:00:00:01")!

    /// A configuration with bridge `br0` and port `eth0`, then `change` applied.
    private func config(_ change: (inout BridgeConfiguration) -> Void) -> SwitchConfiguration {
        var b = BridgeConfiguration(name: "br0", ports: [PortConfiguration(name: "eth0")])
        change(&b)
        return SwitchConfiguration(bridges: [b])
    }

    private func commandProblem(_ c: ControlCommand) -> String? {
        do { try c.validate(); return nil } catch { return error.message }
    }

    private func loaderProblem(_ c: SwitchConfiguration) -> String? {
        // Through the JSON form, as a file is read.
        do {
            let data = try JSONEncoder().encode(c)
            let decoded = try ConfigStore.decode(data, source: "f.json")
            try decoded.validate()
            return nil
        } catch let e as ConfigurationError { return e.message } catch { return "\(error)" }
    }

    /// Both refuse (`refused`) or both accept.
    private func agree(_ what: String, _ command: ControlCommand, _ configuration: SwitchConfiguration,
                       refused: Bool, file: StaticString = #filePath, line: UInt = #line) {
        let c = commandProblem(command), l = loaderProblem(configuration)
        if refused {
            XCTAssertNotNil(c, "\(what): the command was accepted", file: file, line: line)
            XCTAssertNotNil(l, "\(what): the configuration was accepted", file: file, line: line)
        } else {
            XCTAssertNil(c, "\(what): the command was refused: \(c ?? "")", file: file, line: line)
            XCTAssertNil(l, "\(what): the configuration was refused: \(l ?? "")", file: file, line: line)
        }
    }

    func testBridgeNames() {
        for (name, bad) in [("a/b", true), ("abcdefghijklmnop", true), ("brü", true), ("", true), ("xen br", true),
                            ("xenbr0", false), ("br-lan_2", false), ("abcdefghijklmno", false)] {
            agree("bridge name '\(name)'", .addBridge(name: name, ageingSeconds: nil, fdbCapacity: nil),
                  SwitchConfiguration(bridges: [BridgeConfiguration(name: name)]), refused: bad)
        }
    }

    func testInterfaceNames() {
        // "x\u{1}y" is the name the daemon once took over the socket and its own loader refused.
        for (name, bad) in [("a b", true), ("x\u{1}y", true), ("x\u{7f}", true), (".", true), ("..", true), ("", true),
                            ("a/b", true), ("eth0:1", true), ("abcdefghijklmnop", true),
                            ("vif3.0", false), ("vif3.0-emu", false), ("abcdefghijklmno", false), ("pëth0", false)] {
            agree("interface name '\(name)'", .addPort(bridge: "br0", port: name, type: .system, vlan: .defaultAccess),
                  config { $0.ports = [PortConfiguration(name: name)] }, refused: bad)
        }
    }

    func testVLANModes() {
        let modes: [(VLANMode, Bool)] = [(.access(0), true), (.access(4095), true), (.trunk(allowed: [], native: nil), true),
                                         (.trunk(allowed: [10, 4095], native: nil), true), (.trunk(allowed: [10], native: 0), true),
                                         (.access(4094), false), (.trunk(allowed: [1, 4094], native: 5), false)]
        for (mode, bad) in modes {
            agree("VLAN mode \(mode)", .addPort(bridge: "br0", port: "eth1", type: .system, vlan: mode),
                  config { $0.ports = [PortConfiguration(name: "eth1", vlan: mode)] }, refused: bad)
        }
    }

    func testAgeingAndCapacity() {
        for (a, bad) in [(UInt32(0), true), (1_000_001, true), (1, false), (1_000_000, false)] {
            agree("ageing \(a)", .addBridge(name: "br0", ageingSeconds: a, fdbCapacity: nil),
                  config { $0.ageingSeconds = a }, refused: bad)
            agree("set-ageing \(a)", .setAgeing(bridge: "br0", seconds: a), config { $0.ageingSeconds = a }, refused: bad)
        }
        for (c, bad) in [(0, true), ((1 << 24) + 1, true), (-1, true), (1, false), (1 << 24, false)] {
            agree("capacity \(c)", .addBridge(name: "br0", ageingSeconds: nil, fdbCapacity: c),
                  config { $0.fdbCapacity = c }, refused: bad)
        }
    }

    func testStaticEntries() {
        let cases: [(MACAddress, UInt16, Bool)] = [(.broadcast, 1, true), (MACAddress("01:00:5e:00:00:01")!, 1, true),
                                                   (.zero, 1, true), (Self.mac, 0, true), (Self.mac, 4095, true),
                                                   (Self.mac, 1, false)]
        for (mac, vlan, bad) in cases {
            agree("static \(mac) vlan \(vlan)", .fdbAdd(bridge: "br0", mac: mac, vlan: vlan, port: "eth0"),
                  config { $0.staticFDB = [StaticFDBEntry(mac: mac, vlan: vlan, port: "eth0")] }, refused: bad)
        }
    }

    func testPortAddresses() {
        let ips: [(String, Bool)] = [("10.0.0.300", true), ("10.0.0.1/33", true), ("fd00::1/129", true), ("", true),
                                     ("10.0.0.1 10.0.0.2", true), ("nonsense", true), ("10.0.0.5", false),
                                     ("10.0.1.0/24", false), ("10.0.0.0/255.255.255.0", false), ("2001:db8::5", false),
                                     ("fd00::/64", false)]
        for (ip, bad) in ips {
            let a = PortAddressInfo(ips: [ip])
            agree("port address '\(ip)'", .setPort(bridge: "br0", port: "eth0", macs: nil, ips: [ip], antiSpoofing: nil),
                  config { $0.ports = [PortConfiguration(name: "eth0", addresses: a)] }, refused: bad)
            agree("add-port address '\(ip)'", .addPortWithAddresses(bridge: "br0", port: "eth0", type: .system,
                                                                   vlan: .defaultAccess, addresses: a),
                  config { $0.ports = [PortConfiguration(name: "eth0", addresses: a)] }, refused: bad)
        }
        for (mac, bad) in [(MACAddress.broadcast, true), (MACAddress.zero, true), (Self.mac, false)] {
            let a = PortAddressInfo(macs: [mac])
            agree("port MAC \(mac)", .setPort(bridge: "br0", port: "eth0", macs: [mac], ips: nil, antiSpoofing: nil),
                  config { $0.ports = [PortConfiguration(name: "eth0", addresses: a)] }, refused: bad)
        }
    }

    func testGuests() {
        let guests: [(GuestInfo, Bool)] = [(GuestInfo(name: "a\nb"), true), (GuestInfo(name: ""), true),
                                           (GuestInfo(uuid: "xyz!"), true), (GuestInfo(mac: .broadcast), true),
                                           (GuestInfo(ips: ["10.0.0.300"]), true),
                                           (GuestInfo(name: "web", uuid: "6f1c-00aa", mac: Self.mac, ips: ["10.0.0.5/24"]), false)]
        for (g, bad) in guests {
            agree("guest \(g)", .setPortGuest(bridge: "br0", port: "eth0", guest: g),
                  config { $0.ports = [PortConfiguration(name: "eth0", guest: g)] }, refused: bad)
        }
    }

    func testFilterRules() {
        let good = "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n-A FORWARD -i vif1.0 -j ACCEPT\n"
        for (text, bad) in [("*filter\n:FORWARD MAYBE\n", true), ("-A FORWARD --no-such-match -j DROP\n", true), (good, false)] {
            agree("filter rules \(text.debugDescription)", .filterRestore(bridge: "br0", text: text),
                  config { $0.filterRules = text }, refused: bad)
        }
    }

    /// `apply` carries a whole configuration: the command refuses exactly what the loader does.
    func testApplyRefusesWhatTheLoaderRefuses() {
        let bad = config { $0.ports = [PortConfiguration(name: "a b")] }
        let direct: String?
        do { try bad.validate(); direct = nil } catch { direct = error.message }
        XCTAssertNotNil(direct)
        XCTAssertEqual(commandProblem(.apply(bad)), direct)
        XCTAssertEqual(loaderProblem(bad), "f.json: " + (direct ?? ""), "the file's name, then the same problem")
        XCTAssertNil(commandProblem(.apply(config { _ in })))
    }

    func testRouters() {
        func router(_ change: (inout RouterConfiguration) -> Void) -> SwitchConfiguration {
            var r = RouterConfiguration(name: "rt0", uplink: "eth9", address: "192.0.2.1/24")
            change(&r)
            return SwitchConfiguration(routers: [r])
        }
        let cases: [(String, String, String, String?, Bool)] = [
            ("rt/0", "eth9", "192.0.2.1/24", nil, true), ("rt0", "a b", "192.0.2.1/24", nil, true),
            ("rt0", "eth9", "192.0.2.1", nil, true), ("rt0", "eth9", "192.0.2.0/24", nil, true),
            ("rt0", "eth9", "192.0.2.1/33", nil, true), ("rt0", "eth9", "192.0.2.1/24", "192.0.2.300", true),
            ("rt0", "eth9", "192.0.2.1/24", "192.0.2.254", false), ("rt0", "eth9", "10.0.0.1/32", nil, false)]
        for (name, uplink, address, gateway, bad) in cases {
            agree("router \(name) \(uplink) \(address) \(gateway ?? "-")",
                  .addRouter(name: name, uplink: uplink, address: address, gateway: gateway, mac: nil),
                  router { $0.name = name; $0.uplink = uplink; $0.address = address; $0.gateway = gateway }, refused: bad)
        }
        let routes: [(String, String?, String?, Bool)] = [("10.0.0.0/8", "192.0.2.9", "eth9", true), ("10.0.0.0/8", nil, nil, true),
                                                          ("10.0.0.0/33", "192.0.2.9", nil, true), ("10.0.0.0/8", "x", nil, true),
                                                          ("10.0.0.0/8", "192.0.2.9", nil, false), ("10.0.0.0/8", nil, "eth9", false)]
        for (prefix, via, dev, bad) in routes {
            agree("route \(prefix) via \(via ?? "-") dev \(dev ?? "-")", .routeAdd(router: "rt0", prefix: prefix, via: via, dev: dev),
                  router { $0.routes = [RouteConfiguration(prefix: prefix, via: via, dev: dev)] }, refused: bad)
        }
        for (ips, bad) in [(["10.0.0.300"], true), (["2001:db8::5"], false), (["2001:db8::5::1"], true), (["10.0.0.5", "2001:db8::5"], false), (["10.0.0.5"], false)] {
            let port = RoutedPortConfiguration(name: "vif1.0", ips: ips)
            let c = router { $0.ports = [port] }
            XCTAssertEqual(loaderProblem(c) != nil, bad, "routed port \(ips): \(loaderProblem(c) ?? "accepted")")
        }
        // dns=: IPv4 addresses, at most 4, the same for add-router and the file.
        for (dns, bad) in [(["10.0.0.53"], false), (["10.0.0.53", "x"], true), (["2001:db8::53"], true),
                           (["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"], false), (["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9"], true)] {
            agree("dns \(dns)", .addRouter(name: "rt0", uplink: "eth9", address: "192.0.2.1/24", gateway: nil, mac: nil, dns: dns),
                  router { $0.dns = dns }, refused: bad)
        }
        // dhcp on a routed port needs an IPv4 address to hand out.
        for (ips, bad) in [(["2001:db8::5"], true), (["10.0.0.5"], false), (["2001:db8::5", "10.0.0.5/32"], false)] {
            let c = router { $0.ports = [RoutedPortConfiguration(name: "vif1.0", ips: ips, dhcp: true)] }
            XCTAssertEqual(loaderProblem(c) != nil, bad, "dhcp port \(ips): \(loaderProblem(c) ?? "accepted")")
        }
        // One namespace: a router cannot take a bridge's name or port.
        XCTAssertNotNil(loaderProblem(SwitchConfiguration(bridges: [BridgeConfiguration(name: "rt0")],
                                                          routers: [RouterConfiguration(name: "rt0", uplink: "eth9", address: "192.0.2.1/24")])))
        XCTAssertNotNil(loaderProblem(SwitchConfiguration(bridges: [BridgeConfiguration(name: "br0", ports: [PortConfiguration(name: "eth9")])],
                                                          routers: [RouterConfiguration(name: "rt0", uplink: "eth9", address: "192.0.2.1/24")])))
    }
}
