// add-port's key=value words and Xen bridge specs, and the FDB commands' words: every accepted
// form and every error, exactly as userswitchctl reports it.

import XCTest
@testable import SwitchControl
import SwitchCore

final class CommandArgumentsTests: XCTestCase {
    private func port(_ bridge: String, _ words: String...) throws -> PortArguments {
        try PortArguments.parse(bridge: bridge, words: words)
    }

    private func portError(_ bridge: String, _ words: String...) -> String? {
        do {
            let p = try PortArguments.parse(bridge: bridge, words: words)
            return "accepted: \(p)"
        } catch {
            return error.message
        }
    }

    func testKeyValueForms() throws {
        XCTAssertEqual(try port("br0"), PortArguments(bridge: "br0", type: .system, vlan: .access(1)))
        XCTAssertEqual(try port("br0", "tag=10"), PortArguments(bridge: "br0", type: .system, vlan: .access(10)))
        XCTAssertEqual(try port("br0", "trunks=10,20"), PortArguments(bridge: "br0", type: .system, vlan: .trunk(allowed: [10, 20], native: nil)))
        XCTAssertEqual(try port("br0", "trunks=30-32,10", "native=5"),
                       PortArguments(bridge: "br0", type: .system, vlan: .trunk(allowed: [10, 30, 31, 32], native: 5)))
        XCTAssertEqual(try port("br0", "native=5", "trunks=10"),
                       PortArguments(bridge: "br0", type: .system, vlan: .trunk(allowed: [10], native: 5)), "order does not matter")
        XCTAssertEqual(try port("br0", "type=tap"), PortArguments(bridge: "br0", type: .tap, vlan: .access(1)))
        XCTAssertEqual(try port("br0", "type=system", "tag=4094"), PortArguments(bridge: "br0", type: .system, vlan: .access(4094)))
        XCTAssertEqual(try port("br0", "tag=1"), PortArguments(bridge: "br0", type: .system, vlan: .access(1)))
    }

    func testXenSpecForms() throws {
        XCTAssertEqual(try port("xenbr0"), PortArguments(bridge: "xenbr0", type: .system, vlan: .access(1)))
        XCTAssertEqual(try port("xenbr0.102"), PortArguments(bridge: "xenbr0", type: .system, vlan: .access(102)))
        XCTAssertEqual(try port("xenbr1:101:202"),
                       PortArguments(bridge: "xenbr1", type: .system, vlan: .trunk(allowed: [101, 202], native: nil)))
        XCTAssertEqual(try port("xenbr0.5:20:10"),
                       PortArguments(bridge: "xenbr0", type: .system, vlan: .trunk(allowed: [10, 20], native: 5)))
        XCTAssertEqual(try port("xenbr0.7", "type=tap"), PortArguments(bridge: "xenbr0", type: .tap, vlan: .access(7)),
                       "type= combines with a spec")
    }

    func testErrors() {
        XCTAssertEqual(portError("br0", "tag=0"), "invalid VLAN ID '0': expected a number from 1 to 4094")
        XCTAssertEqual(portError("br0", "tag=4095"), "invalid VLAN ID '4095': expected a number from 1 to 4094")
        XCTAssertEqual(portError("br0", "tag=ten"), "invalid VLAN ID 'ten': expected a number from 1 to 4094")
        XCTAssertEqual(portError("br0", "tag=10", "trunks=20"), "tag= cannot be combined with trunks= or native=")
        XCTAssertEqual(portError("br0", "tag=10", "native=20"), "tag= cannot be combined with trunks= or native=")
        XCTAssertEqual(portError("br0", "native=5"), "native= needs trunks=")
        XCTAssertEqual(portError("br0", "trunks=10,,20"),
                       "invalid VLAN list '10,,20': bad term '' (expected N or A-B, each 1-4094)")
        XCTAssertEqual(portError("br0", "trunks=20-10"),
                       "invalid VLAN list '20-10': bad term '20-10' (expected N or A-B, each 1-4094)")
        XCTAssertEqual(portError("br0", "trunks=10", "native=0"), "invalid VLAN ID '0': expected a number from 1 to 4094")
        XCTAssertEqual(portError("br0", "type=vhost"), "invalid port type 'vhost': expected tap or system")
        XCTAssertEqual(portError("br0", "mode=access"),
                       "unknown port option 'mode' in 'mode=access': expected one of tag=, trunks=, native=, type=, mac=, ip=, anti-spoofing=, ra=, dhcp=, max-macs=, storm-broadcast=, storm-multicast=, storm-unknown=")
        XCTAssertEqual(portError("br0", "tag"),
                       "unexpected argument 'tag': expected port options of the form key=value (tag=, trunks=, native=, type=, mac=, ip=, anti-spoofing=, ra=, dhcp=, max-macs=, storm-broadcast=, storm-multicast=, storm-unknown=)")
        XCTAssertEqual(portError("br0", "=10"),
                       "unexpected argument '=10': expected port options of the form key=value (tag=, trunks=, native=, type=, mac=, ip=, anti-spoofing=, ra=, dhcp=, max-macs=, storm-broadcast=, storm-multicast=, storm-unknown=)")
        XCTAssertEqual(portError("br0", "tag="), "port option 'tag=' needs a value")
        XCTAssertEqual(portError("br0", "tag=10", "tag=20"), "port option 'tag=' given more than once")
        XCTAssertEqual(portError("xenbr0.10", "tag=20"),
                       "the bridge spec 'xenbr0.10' already sets the VLANs; do not combine it with tag=, trunks= or native=")
        XCTAssertEqual(portError("xenbr0:10", "native=5"),
                       "the bridge spec 'xenbr0:10' already sets the VLANs; do not combine it with tag=, trunks= or native=")
        XCTAssertEqual(portError("xenbr0.0"), "no valid bridge in 'xenbr0.0': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        XCTAssertEqual(portError("xenbr0:"), "no valid bridge in 'xenbr0:': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        XCTAssertEqual(portError("a.b.c"), "no valid bridge in 'a.b.c': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        XCTAssertEqual(portError(".10"), "no valid bridge in '.10': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        XCTAssertEqual(portError("br0:5000"), "no valid bridge in 'br0:5000': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
    }

    func testMaxMACs() throws {
        XCTAssertEqual(try port("br0", "max-macs=16").addresses?.maxMACs, 16)
        XCTAssertEqual(try port("br0", "max-macs=0").addresses?.maxMACs, 0)
        XCTAssertEqual(portError("br0", "max-macs=-1"), "invalid max-macs '-1': expected a number from 0 (no limit) to 65535")
        XCTAssertEqual(portError("br0", "max-macs=many"), "invalid max-macs 'many': expected a number from 0 (no limit) to 65535")
        XCTAssertEqual(try CommandArguments.setPort(bridge: "br0", port: "vif1.0", words: ["max-macs=4"]),
                       .setPort(bridge: "br0", port: "vif1.0", macs: nil, ips: nil, antiSpoofing: nil, maxMACs: 4))
        XCTAssertThrowsError(try CommandArguments.setPort(bridge: "br0", port: "vif1.0", words: ["max-macs=70000"]))
    }

    func testStormLimits() throws {
        XCTAssertEqual(try port("br0", "storm-broadcast=100", "storm-unknown=0").addresses?.storm,
                       StormLimits(broadcast: 100, multicast: nil, unknown: 0))
        XCTAssertEqual(portError("br0", "storm-multicast=fast"),
                       "invalid storm-multicast 'fast': expected frames per second from 0 (off) to 100000000")
        XCTAssertEqual(try CommandArguments.setPort(bridge: "br0", port: "vif1.0", words: ["storm-broadcast=50"]),
                       .setPort(bridge: "br0", port: "vif1.0", macs: nil, ips: nil, antiSpoofing: nil, storm: StormLimits(broadcast: 50)))
    }

    func testRouterPortOptions() throws {
        let p = try port("rt0", "ip=10.0.0.5", "ra=on", "dhcp=on")
        XCTAssertEqual(p.addresses?.routerAdvertisements, true)
        XCTAssertEqual(p.addresses?.dhcp, true)
        XCTAssertEqual(try port("rt0", "dhcp=off").addresses?.dhcp, false)
        XCTAssertNil(try port("rt0", "ip=10.0.0.5").addresses?.dhcp)
        XCTAssertEqual(portError("rt0", "dhcp=maybe"), "invalid dhcp 'maybe': expected on or off")
    }

    func testAddPortCommand() throws {
        XCTAssertEqual(try CommandArguments.addPort(bridge: "xenbr0.10", port: "vif3.0", words: []),
                       .addPort(bridge: "xenbr0", port: "vif3.0", type: .system, vlan: .access(10)))
        XCTAssertEqual(try CommandArguments.addPort(bridge: "br0", port: "tap0", words: ["type=tap", "trunks=2,3"]),
                       .addPort(bridge: "br0", port: "tap0", type: .tap, vlan: .trunk(allowed: [2, 3], native: nil)))
        for bad in ["", "a/b", "a:b", "a b", ".", "..", "sixteen-chars-xx"] {
            XCTAssertThrowsError(try CommandArguments.addPort(bridge: "br0", port: bad, words: [])) { error in
                XCTAssertEqual((error as? CommandLineError)?.message,
                               "invalid interface name '\(bad)': 1 to 15 characters, no '/', ':' or whitespace")
            }
        }
        XCTAssertNoThrow(try CommandArguments.checkInterfaceName("vif12.0-emu"))
        XCTAssertNoThrow(try CommandArguments.checkInterfaceName("fifteen-chars-x"))
    }

    func testFDBCommands() throws {
        let mac = MACAddress(0x00, 0x16, 0x3e, 0x12, 0x34, 0x56)
        XCTAssertEqual(try CommandArguments.fdbAdd(bridge: "br0", mac: "00:16:3e:12:34:56", port: "p1", words: []),
                       .fdbAdd(bridge: "br0", mac: mac, vlan: 1, port: "p1"))
        XCTAssertEqual(try CommandArguments.fdbAdd(bridge: "br0", mac: "00-16-3E-12-34-56", port: "p1", words: ["vlan=20"]),
                       .fdbAdd(bridge: "br0", mac: mac, vlan: 20, port: "p1"))
        XCTAssertEqual(try CommandArguments.fdbDel(bridge: "br0", mac: "0:16:3e:12:34:56", words: []),
                       .fdbDel(bridge: "br0", mac: mac, vlan: 1))
        XCTAssertEqual(try CommandArguments.fdbDel(bridge: "br0", mac: "00:16:3e:12:34:56", words: ["vlan=4094"]),
                       .fdbDel(bridge: "br0", mac: mac, vlan: 4094))

        func message(_ body: () throws -> ControlCommand) -> String? {
            do { return "accepted: \(try body())" } catch { return (error as? CommandLineError)?.message }
        }
        XCTAssertEqual(message { try CommandArguments.fdbAdd(bridge: "b", mac: "00:16:3e:12:34", port: "p", words: []) },
                       "invalid MAC address '00:16:3e:12:34': expected six hex octets like 00:16:3e:12:34:56")
        XCTAssertEqual(message { try CommandArguments.fdbDel(bridge: "b", mac: "gg:16:3e:12:34:56", words: []) },
                       "invalid MAC address 'gg:16:3e:12:34:56': expected six hex octets like 00:16:3e:12:34:56")
        XCTAssertEqual(message { try CommandArguments.fdbAdd(bridge: "b", mac: "00:16:3e:12:34:56", port: "p", words: ["vlan=0"]) },
                       "invalid VLAN ID '0': expected a number from 1 to 4094")
        XCTAssertEqual(message { try CommandArguments.fdbDel(bridge: "b", mac: "00:16:3e:12:34:56", words: ["tag=3"]) },
                       "unknown option 'tag' in 'tag=3': expected one of vlan=")
        XCTAssertEqual(message { try CommandArguments.fdbDel(bridge: "b", mac: "00:16:3e:12:34:56", words: ["vlan=3", "vlan=4"]) },
                       "option 'vlan=' given more than once")
        XCTAssertEqual(message { try CommandArguments.fdbDel(bridge: "b", mac: "00:16:3e:12:34:56", words: ["20"]) },
                       "unexpected argument '20': expected options of the form key=value (vlan=)")
    }
}
