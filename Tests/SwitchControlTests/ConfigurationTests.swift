// The configuration model: JSON round trip, refusal of unknown keys and bad values with the place
// in the file, validation across bridges, and ConfigStore's atomic save and strict load.

import Foundation
import XCTest
@testable import SwitchControl
import SwitchCore
#if canImport(Glibc)
import Glibc
#endif

final class ConfigurationTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("usw-config-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
        super.tearDown()
    }

    private var sample: SwitchConfiguration {
        SwitchConfiguration(bridges: [
            BridgeConfiguration(name: "xenbr0", ageingSeconds: 120, fdbCapacity: 4096, ports: [
                PortConfiguration(name: "peth0", vlan: .trunk(allowed: [10, 20], native: 5)),
                PortConfiguration(name: "xenbr0", type: .tap, vlan: .access(5)),
                PortConfiguration(name: "vif3.0", vlan: .access(10),
                                  guest: GuestInfo(name: "web1", uuid: "0b1c2d3e-0000-4000-8000-123456789abc",
                                                   mac: MACAddress("00:16:3e:00:00:03"), ips: ["10.0.10.3", "10.0.11.0/24"])),
            ], staticFDB: [StaticFDBEntry(mac: MACAddress("00:16:3e:00:00:03")!, vlan: 10, port: "vif3.0")],
            filterRules: "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n"),
            BridgeConfiguration(name: "xenbr1"),
        ])
    }

    private func decodeError(_ text: String) -> String {
        do {
            _ = try ConfigStore.decode(Data(text.utf8), source: "f.json")
            return "(accepted)"
        } catch {
            return error.message
        }
    }

    func testRoundTripThroughJSON() throws {
        let data = ConfigStore.encode(sample)
        XCTAssertEqual(try ConfigStore.decode(data, source: "x"), sample)
        // Sorted keys and a final newline: the saved file diffs cleanly.
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.hasSuffix("}\n"))
        XCTAssertLessThan(text.range(of: "\"ageingSeconds\"")!.lowerBound, text.range(of: "\"name\"")!.lowerBound)
    }

    func testMinimalFileTakesDefaults() throws {
        let c = try ConfigStore.decode(Data(#"{"bridges":[{"name":"br0","ports":[{"name":"eth1"}]}]}"#.utf8), source: "f")
        XCTAssertEqual(c.version, 1)
        XCTAssertEqual(c.bridges[0].ports[0], PortConfiguration(name: "eth1", type: .system, vlan: .access(1)))
        XCTAssertEqual(c.bridges[0].effectiveAgeingSeconds, 300)
        XCTAssertEqual(c.bridges[0].effectiveFDBCapacity, BridgeSettings.defaultFDBCapacity)
        XCTAssertNil(c.bridges[0].filterRules)
    }

    func testUnknownKeysAreRefusedWithTheirPlace() {
        XCTAssertEqual(decodeError(#"{"bridges":[{"name":"br0","ageing":30}]}"#),
                       "f.json: bridges[0].ageing: unknown key 'ageing' in a bridge (expected name, ageingSeconds, fdbCapacity, ports, staticFDB, filterRules)")
        XCTAssertTrue(decodeError(#"{"bridges":[{"name":"b","ports":[{"name":"p","vlan":{"mode":"access","vlan":2},"tag":3}]}]}"#)
            .hasPrefix("f.json: bridges[0].ports[0].tag: unknown key 'tag' in a port"))
        XCTAssertTrue(decodeError(#"{"bridge":[]}"#).hasPrefix("f.json: bridge: unknown key 'bridge' in the configuration"))
        XCTAssertTrue(decodeError(#"{"bridges":[{"name":"b","ports":[{"name":"p","guest":{"nmae":"x"}}]}]}"#)
            .hasPrefix("f.json: bridges[0].ports[0].guest.nmae: unknown key 'nmae' in a guest"))
    }

    func testWrongValuesNameTheirPlace() {
        XCTAssertEqual(decodeError(#"{"bridges":[{"name":"b","ports":[{"name":"p","vlan":{"mode":"acess","vlan":3}}]}]}"#),
                       "f.json: bridges[0].ports[0].vlan.mode: unknown VLAN mode 'acess' (expected access or trunk)")
        XCTAssertEqual(decodeError(#"{"bridges":[{"name":"b","ageingSeconds":"60"}]}"#),
                       "f.json: bridges[0].ageingSeconds: expected a whole number")
        XCTAssertEqual(decodeError(#"{"bridges":[{"ports":[]}]}"#), "f.json: bridges[0]: missing key 'name'")
        XCTAssertEqual(decodeError(#"{"bridges":[{"name":"b","ports":[{"name":"p","type":"veth"}]}]}"#),
                       "f.json: bridges[0].ports[0].type: unknown port type 'veth' (expected system or tap)")
        XCTAssertTrue(decodeError(#"{"bridges":[{"name":"b","staticFDB":[{"mac":"00:16:3e","port":"p"}]}]}"#)
            .hasPrefix("f.json: bridges[0].staticFDB[0].mac: not a MAC address"))
    }

    func testSyntaxErrorsGiveLineAndColumn() {
        XCTAssertEqual(decodeError("{\"bridges\": [\n  {\"name\": \"b\",}\n]}"),
                       "f.json: not valid JSON: line 2, column 16: expected a key in quotes, found '}'")
        XCTAssertEqual(decodeError("{\"bridges\": []} x"), "f.json: not valid JSON: line 1, column 17: unexpected 'x' after the document")
        XCTAssertEqual(decodeError("{\"bridges\": [\n"), "f.json: not valid JSON: line 2, column 1: expected a value, found the end of the file")
        XCTAssertEqual(decodeError(""), "f.json: the file is empty")
        XCTAssertEqual(decodeError(" \n "), "f.json: the file is empty")
    }

    func testValidationAcrossTheWholeFile() {
        func problem(_ c: SwitchConfiguration) -> String? {
            do { try c.validate(); return nil } catch { return error.message }
        }
        XCTAssertNil(problem(sample))
        var c = sample
        c.bridges[1].ports = [PortConfiguration(name: "peth0")]
        XCTAssertEqual(problem(c), "bridges[1] 'xenbr1': ports[0] 'peth0': port is also on bridge 'xenbr0'")
        c = sample
        c.bridges[1].name = "xenbr0"
        XCTAssertEqual(problem(c), "bridges[1] 'xenbr0': bridge 'xenbr0' is listed twice")
        c = sample
        c.bridges[0].staticFDB.append(StaticFDBEntry(mac: MACAddress("02:00:00:00:00:01")!, vlan: 30, port: "peth0"))
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': staticFDB[1] 02:00:00:00:00:01: port 'peth0' is not a member of VLAN 30")
        c = sample
        c.bridges[0].staticFDB.append(StaticFDBEntry(mac: MACAddress("02:00:00:00:00:01")!, vlan: 10, port: "nope"))
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': staticFDB[1] 02:00:00:00:00:01: bridge has no port 'nope'")
        c = sample
        c.bridges[0].staticFDB.append(StaticFDBEntry(mac: .broadcast, vlan: 10, port: "vif3.0"))
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': staticFDB[1] ff:ff:ff:ff:ff:ff: must be a unicast, non-zero MAC")
        c = sample
        c.bridges[0].ports[0].vlan = .trunk(allowed: [10, 4095], native: nil)
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': ports[0] 'peth0': invalid VLAN 4095: expected 1 to 4094")
        c = sample
        c.bridges[0].ports[2].guest?.ips = ["10.0.0.300"]
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': ports[2] 'vif3.0': guest: invalid guest address '10.0.0.300': expected IPv4 or IPv6, optionally /PREFIX")
        c = sample
        c.bridges[0].ageingSeconds = 0
        XCTAssertEqual(problem(c), "bridges[0] 'xenbr0': invalid ageingSeconds 0: expected 1 to 1000000")
        c = sample
        c.bridges[0].name = "a/b"
        XCTAssertEqual(problem(c), "bridges[0]: invalid bridge name 'a/b': use 1-15 letters, digits, '-' or '_'")
        c = sample
        c.version = 2
        XCTAssertEqual(problem(c), "unsupported configuration version 2 (this userswitch reads version 1)")
    }

    func testGuestAddresses() {
        for ok in ["10.0.0.1", "10.0.0.0/24", "fd00::1", "fd00::/64", "0.0.0.0/0"] { XCTAssertTrue(GuestInfo.isValidAddress(ok), ok) }
        for bad in ["", "10.0.0", "10.0.0.1/33", "fd00::1/129", "10.0.0.1/", "10.0.0.1/2/3", "host", "10.0.0.1/+1"] {
            XCTAssertFalse(GuestInfo.isValidAddress(bad), bad)
        }
    }

    func testStoreSavesAtomicallyAndLoadsBack() throws {
        let path = directory.appendingPathComponent("state/config.json").path
        let store = ConfigStore(path: path)
        XCTAssertNil(try store.load(), "no file yet: a first start")
        // A temporary file left by a save that crashed before its rename.
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("{\"bro".utf8).write(to: URL(fileURLWithPath: path + ".tmp.99999"))
        try store.save(sample)
        XCTAssertEqual(try store.load(), sample)
        let names = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        XCTAssertEqual(names, ["config.json"], "the stale temporary file is gone and no new one is left")
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
        XCTAssertEqual(mode, 0o600)
        var changed = sample
        changed.bridges.removeLast()
        try store.save(changed)
        XCTAssertEqual(try store.load(), changed)
    }

    func testStoreRefusesACorruptFile() throws {
        let path = directory.appendingPathComponent("config.json").path
        let store = ConfigStore(path: path)
        try store.save(sample)
        // Torn in the middle, as a non-atomic writer would leave it.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try store.load()) { error in
            let message = (error as! ConfigurationError).message
            XCTAssertTrue(message.hasPrefix("\(path): not valid JSON: line "), message)
        }
    }

    func testConfigPathResolution() {
        XCTAssertEqual(resolveConfigPath(option: "/x", environment: ["USERSWITCH_CONFIG": "/y"]), "/x")
        XCTAssertEqual(resolveConfigPath(option: nil, environment: ["USERSWITCH_CONFIG": "/y"]), "/y")
        XCTAssertEqual(resolveConfigPath(option: nil, environment: ["USERSWITCH_CONFIG": ""]), defaultConfigPath)
    }

    func testReadOnlyCommandsAreNotSaved() {
        XCTAssertTrue(ControlCommand.show.isReadOnly)
        XCTAssertTrue(ControlCommand.stats(bridge: nil, port: nil).isReadOnly)
        XCTAssertTrue(ControlCommand.configuration.isReadOnly)
        XCTAssertFalse(ControlCommand.addBridge(name: "b", ageingSeconds: nil, fdbCapacity: nil).isReadOnly)
        XCTAssertFalse(ControlCommand.apply(sample).isReadOnly)
        XCTAssertFalse(ControlCommand.setPortGuest(bridge: "b", port: "p", guest: nil).isReadOnly)
    }

    func testApplyTravelsThroughTheControlCodec() throws {
        let request = ControlRequest(.apply(sample))
        let line = try ControlCodec.encode(request)
        XCTAssertEqual(try ControlCodec.decodeRequest(line), request)
    }
}
