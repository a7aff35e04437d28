// The real userswitchctl binary against a ControlServer with a fake handler: what it sends,
// what it prints, and its exit status. Skipped when the binary was not built next to the tests.

import Foundation
import XCTest
@testable import SwitchControl
import SwitchCore

final class UserSwitchCtlTests: XCTestCase {
    var directory = ""
    var socketPath: String { directory + "/ctl.sock" }
    var handler: FakeHandler!
    var server: ControlServer!

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: URL? {
        let dir = Bundle.main.bundleURL
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("userswitchctl")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }

    override func setUpWithError() throws {
        guard Self.binary != nil else { throw XCTSkip("userswitchctl binary not built next to the test bundle") }
        directory = makeTemporaryDirectory()
        handler = FakeHandler { request in
            switch request.command {
            case .show: return .success(.show(Samples.bridges))
            case .fdb(let b): return b == "xenbr0" ? .success(.fdb(Samples.fdb)) : .failure("no such bridge '\(b)'")
            case .stats: return .success(.stats(Samples.stats))
            case .delBridge(let b): return .failure("no such bridge '\(b)'")
            default: return .success()
            }
        }
        server = try ControlServer(path: socketPath, handler: handler)
    }

    override func tearDown() {
        server?.stop()
        removeDirectory(directory)
    }

    func ctl(_ arguments: [String], socket: Bool = true, environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = try XCTUnwrap(Self.binary)
        process.arguments = arguments + (socket ? ["--socket", socketPath] : [])
        var env = ProcessInfo.processInfo.environment
        env["USERSWITCH_SOCKET"] = nil
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: e, as: UTF8.self))
    }

    func testShowPrintsTheTable() throws {
        let run = try ctl(["show"])
        XCTAssertEqual(run.status, 0)
        XCTAssertEqual(run.stdout, Format.show(Samples.bridges))
        XCTAssertEqual(run.stderr, "")
        // The bridges, then the routers (none here: the daemon's answer is not a router list).
        XCTAssertEqual(handler.requests, [ControlRequest(.show), ControlRequest(.showRouters)])
    }

    func testListingsAsJSON() throws {
        XCTAssertEqual(try ctl(["show", "--json"]).stdout, try Format.json(Samples.bridges))
        XCTAssertEqual(try ctl(["fdb", "xenbr0", "--json"]).stdout, try Format.json(Samples.fdb))
        XCTAssertEqual(try ctl(["stats", "--json"]).stdout, try Format.json(Samples.stats))
    }

    func testFDBAndStatsText() throws {
        XCTAssertEqual(try ctl(["fdb", "xenbr0"]).stdout, Format.fdb(Samples.fdb))
        let run = try ctl(["stats", "vif1.0", "--bridge", "xenbr0", "--all-drops"])
        XCTAssertEqual(run.stdout, Format.stats(Samples.stats, allDrops: true))
        XCTAssertEqual(handler.requests.last?.command, .stats(bridge: "xenbr0", port: "vif1.0"))
    }

    func testMutatingCommandsSendTheRightRequestAndPrintNothing() throws {
        let mac = MACAddress(0x00, 0x16, 0x3e, 0x12, 0x34, 0x56)
        let cases: [([String], ControlCommand)] = [
            (["add-br", "xenbr0"], .addBridge(name: "xenbr0", ageingSeconds: nil, fdbCapacity: nil)),
            (["add-br", "xenbr1", "--ageing", "60", "--fdb-capacity", "1024"],
             .addBridge(name: "xenbr1", ageingSeconds: 60, fdbCapacity: 1024)),
            (["add-port", "xenbr0", "peth0", "trunks=10,20", "native=5"],
             .addPort(bridge: "xenbr0", port: "peth0", type: .system, vlan: .trunk(allowed: [10, 20], native: 5))),
            (["add-port", "xenbr0.102", "vif3.0"], .addPort(bridge: "xenbr0", port: "vif3.0", type: .system, vlan: .access(102))),
            (["add-port", "xenbr0", "xenbr0", "type=tap"], .addPort(bridge: "xenbr0", port: "xenbr0", type: .tap, vlan: .access(1))),
            (["del-port", "xenbr0", "vif3.0"], .delPort(bridge: "xenbr0", port: "vif3.0")),
            (["fdb-add", "xenbr0", "00:16:3e:12:34:56", "peth0"], .fdbAdd(bridge: "xenbr0", mac: mac, vlan: 1, port: "peth0")),
            (["fdb-add", "xenbr0", "00:16:3e:12:34:56", "peth0", "vlan=10"], .fdbAdd(bridge: "xenbr0", mac: mac, vlan: 10, port: "peth0")),
            (["fdb-del", "xenbr0", "00:16:3e:12:34:56", "vlan=10"], .fdbDel(bridge: "xenbr0", mac: mac, vlan: 10)),
            (["set-ageing", "xenbr0", "30"], .setAgeing(bridge: "xenbr0", seconds: 30)),
        ]
        for (arguments, command) in cases {
            let run = try ctl(arguments)
            XCTAssertEqual(run.status, 0, "\(arguments): \(run.stderr)")
            XCTAssertEqual(run.stdout, "", "\(arguments)")
            XCTAssertEqual(run.stderr, "", "\(arguments)")
            XCTAssertEqual(handler.requests.last?.command, command, "\(arguments)")
        }
    }

    func testDaemonErrorGoesToStderrWithStatus1() throws {
        let run = try ctl(["del-br", "nope"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stdout, "")
        XCTAssertEqual(run.stderr, "userswitchctl: error: no such bridge 'nope'\n")
    }

    func testUsageErrorsSendNothing() throws {
        let bad: [[String]] = [
            ["add-port", "xenbr0.10", "vif1.0", "tag=20"],
            ["add-port", "xenbr0", "vif1.0", "colour=blue"],
            ["add-port", "xenbr0", "vif1.0", "tag=5000"],
            ["add-port", "xenbr0"],
            ["fdb-add", "xenbr0", "not-a-mac", "peth0"],
            ["fdb-del", "xenbr0", "00:16:3e:12:34:56", "vlan=9999"],
            ["set-ageing", "xenbr0", "-5"],
            ["add-br", "b", "--fdb-capacity", "0"],
            ["frobnicate"],
        ]
        for arguments in bad {
            let run = try ctl(arguments)
            XCTAssertEqual(run.status, 64, "\(arguments): \(run.stderr)")
            XCTAssertTrue(run.stderr.hasPrefix("Error: "), "\(arguments): \(run.stderr)")
        }
        XCTAssertTrue(handler.requests.isEmpty, "\(handler.requests)")
        XCTAssertEqual(try ctl(["add-port", "xenbr0.10", "vif1.0", "tag=20"]).stderr.components(separatedBy: "\n").first,
                       "Error: the bridge spec 'xenbr0.10' already sets the VLANs; do not combine it with tag=, trunks= or native=")
    }

    func testSocketFromEnvironmentAndMissingDaemon() throws {
        let viaEnv = try ctl(["show"], socket: false, environment: ["USERSWITCH_SOCKET": socketPath])
        XCTAssertEqual(viaEnv.status, 0)
        XCTAssertEqual(viaEnv.stdout, Format.show(Samples.bridges))

        let missing = directory + "/none.sock"
        let run = try ctl(["show"], socket: false, environment: ["USERSWITCH_SOCKET": missing])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr,
                       "userswitchctl: error: cannot connect to userswitchd at \(missing): No such file or directory (is userswitchd running?)\n")
        // --socket wins over the environment.
        XCTAssertEqual(try ctl(["show"], environment: ["USERSWITCH_SOCKET": missing]).status, 0)
    }
}
