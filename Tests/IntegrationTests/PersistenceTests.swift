// Durable configuration with a real daemon: what the CLI changes is saved and comes back after a
// SIGKILL under traffic; a corrupt file keeps the daemon from starting; `apply FILE` brings the
// running switch to a declarative file, and ports whose interface is missing wait for it.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class PersistenceTests: LabTestCase {
    /// `show --json` and the static FDB entries, in a form that compares across restarts.
    private func state(_ lab: Lab) throws -> String {
        var out = ""
        for b in (try lab.ctlJSON(["show"]) as? [[String: Any]]) ?? [] {
            out += "bridge \(b["name"]!) ageing \(b["ageingSeconds"]!) capacity \(b["fdbCapacity"]!)\n"
            for p in (b["ports"] as? [[String: Any]]) ?? [] {
                let vlan = (p["vlan"] as? [String: Any]).map { v in v.keys.sorted().map { "\($0)=\(v[$0]!)" }.joined(separator: " ") } ?? "?"
                out += "  port \(p["name"]!) \(p["type"]!) \(vlan) \(p["state"]!)"
                if let a = p["addresses"] as? [String: Any] {
                    out += " anti-spoofing \(p["antiSpoofing"] ?? "?") macs \(a["macs"] ?? "-") ips \(a["ips"] ?? "-")"
                }
                out += "\n"
            }
            out += try lab.mustCtl(["filter-save", "--bridge", b["name"] as! String])
            for e in (try lab.ctlJSON(["fdb", b["name"] as! String]) as? [[String: Any]]) ?? [] where e["isStatic"] as? Bool == true {
                out += "  static \(e["mac"]!) vlan \(e["vlan"]!) on \(e["port"]!)\n"
            }
        }
        return out
    }

    func testSIGKILLUnderTrafficAndRestartBringsEverythingBack() throws {
        let lab = try XCTUnwrap(lab)
        try lab.startDaemon()
        try lab.mustCtl(["add-br", lab.bridge, "--ageing", "120", "--fdb-capacity", "5000"])
        let second = lab.prefix + "b2"
        try lab.mustCtl(["add-br", second])
        try lab.addGuest("h1", ip: "10.84.0.1", macSuffix: 1)
        try lab.addGuest("h2", ip: "10.84.0.2", macSuffix: 2)
        try lab.addGuest("h3", ip: nil, macSuffix: 3)
        try lab.addPort("h1", ["tag=10"])
        try lab.addPort("h2", ["tag=10"])
        try lab.mustCtl(["add-port", second, lab.guest("h3").port, "trunks=10,20", "native=5"])
        try lab.mustCtl(["fdb-add", lab.bridge, "02:00:00:aa:bb:01", lab.guest("h2").port, "vlan=10"])
        try lab.mustCtl(["set-port-guest", lab.bridge, lab.guest("h1").port, "name=web", "uuid=abcd-ef01"])
        // Anti-spoofing on h2 (its own MAC and address), and a filter rule.
        try lab.mustCtl(["set-port", lab.bridge, lab.guest("h2").port, "mac=\(lab.guest("h2").mac)", "ip=10.84.0.2"])
        try lab.mustCtl(["filter", "--bridge", lab.bridge, "-A", "FORWARD", "-s", "02:00:00:00:99:99", "-j", "DROP"])
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"))
        let before = try state(lab)
        XCTAssertTrue(before.contains("-A FORWARD -s 2:0:0:0:99:99 -j DROP") || before.contains("02:00:00:00:99:99"), before)
        XCTAssertTrue(before.contains("anti-spoofing 1"), before)

        // Traffic runs while the daemon dies without any chance to clean up.
        let pinger = try lab.startInNamespace(lab.guest("h1"), ["ping", "-i", "0.05", "-q", lab.guest("h2").ip!],
                                             outputFile: lab.workDirectory.appendingPathComponent("ping.log"))
        usleep(500_000)
        let daemon = try XCTUnwrap(lab.daemon)
        kill(daemon.processIdentifier, SIGKILL)
        let stopped = lab.stopDaemon()
        XCTAssertEqual(stopped?.reason, .uncaughtSignal)
        XCTAssertTrue(pinger.isRunning)

        try lab.startDaemon()
        XCTAssertEqual(try state(lab), before)
        XCTAssertTrue(before.contains("static 02:00:00:aa:bb:01 vlan 10"), before)
        let guest = JSONSearch.objects(in: try lab.ctlJSON(["show"])).first { $0["name"] as? String == "web" }
        XCTAssertEqual(guest?["uuid"] as? String, "abcd-ef01", "the guest record came back")
        // Traffic resumes by itself.
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"))

        // A removal is saved too.
        try lab.mustCtl(["del-br", second])
        lab.stopDaemon()
        try lab.startDaemon()
        XCTAssertFalse(try state(lab).contains(second))
    }

    func testAWrongCommandLineExitsWithUsageStatus() throws {
        let lab = try XCTUnwrap(lab)
        for args in [["--no-such-option"], ["--spin-us", "many"], ["--socket"], ["--log-level", "loud"]] {
            let r = try Command.run(lab.binary("userswitchd"), args, timeout: 10)
            XCTAssertEqual(r.status, 64, "EX_USAGE for \(args): \(r.output)")
            XCTAssertTrue(r.output.contains("usage: userswitchd"), r.output)
        }
        let help = try Command.run(lab.binary("userswitchd"), ["--help"], timeout: 10)
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("--spin-us N"), help.output)
    }

    func testACorruptFileKeepsTheDaemonFromStarting() throws {
        let lab = try XCTUnwrap(lab)
        try "{\"bridges\": [{\"name\": \"\(lab.bridge)\", \"ports\": [\n".write(toFile: lab.configPath, atomically: true, encoding: .utf8)
        let r = try Command.run(lab.binary("userswitchd"), ["--socket", lab.socketPath, "--config", lab.configPath], timeout: 10)
        XCTAssertEqual(r.status, 78, "EX_CONFIG: systemd's RestartPreventExitStatus tells it from a crash")
        XCTAssertTrue(r.output.contains("refusing to start: \(lab.configPath): not valid JSON: line 2, column 1"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.socketPath), "the control socket was served")

        // Valid JSON that names a port on two bridges: refused as a whole, no bridge half made.
        let config = """
        {"bridges": [{"name": "\(lab.bridge)", "ports": [{"name": "\(lab.prefix)x1"}]},
                     {"name": "\(lab.prefix)b2", "ports": [{"name": "\(lab.prefix)x1"}]}]}
        """
        try config.write(toFile: lab.configPath, atomically: true, encoding: .utf8)
        let r2 = try Command.run(lab.binary("userswitchd"), ["--socket", lab.socketPath, "--config", lab.configPath], timeout: 10)
        XCTAssertEqual(r2.status, 78)
        XCTAssertTrue(r2.output.contains("bridges[1] '\(lab.prefix)b2': ports[0] '\(lab.prefix)x1': port is also on bridge '\(lab.bridge)'"), r2.output)
    }

    func testApplyConvergesAndMissingInterfacesWait() throws {
        let lab = try XCTUnwrap(lab)
        try lab.startDaemon()
        try lab.addBridge()
        try lab.addGuest("h1", ip: "10.85.0.1", macSuffix: 1)
        try lab.addGuest("h2", ip: "10.85.0.2", macSuffix: 2)
        try lab.addPort("h1", ["tag=10"])
        try lab.addPort("h2", ["tag=20"])
        XCTAssertFalse(try lab.canPing(from: "h1", to: "h2", timeout: 2), "different VLANs must not talk")

        // The file moves h2 into VLAN 10, adds a static entry, and a port for h3, not there yet.
        let h3 = "\(lab.prefix)h3"
        let file = lab.workDirectory.appendingPathComponent("desired.json")
        try """
        {"bridges": [{"name": "\(lab.bridge)", "ageingSeconds": 60,
          "ports": [{"name": "\(lab.guest("h1").port)", "vlan": {"mode": "access", "vlan": 10}},
                    {"name": "\(lab.guest("h2").port)", "vlan": {"mode": "access", "vlan": 10}},
                    {"name": "\(h3)", "vlan": {"mode": "access", "vlan": 10}}],
          "staticFDB": [{"mac": "02:00:00:aa:bb:02", "vlan": 10, "port": "\(lab.guest("h1").port)"}]}]}
        """.write(to: file, atomically: true, encoding: .utf8)
        try lab.mustCtl(["apply", file.path])
        XCTAssertEqual(try lab.portState(h3), "down")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"))
        let s = try state(lab)
        XCTAssertTrue(s.contains("ageing 60"), s)
        XCTAssertTrue(s.contains("static 02:00:00:aa:bb:02 vlan 10 on \(lab.guest("h1").port)"), s)

        // The interface appears: the port attaches by itself.
        try lab.addGuest("h3", ip: "10.85.0.3", macSuffix: 3)
        XCTAssertTrue(eventually(timeout: 5) { (try? lab.portState(h3)) == "up" })
        XCTAssertTrue(try lab.canPing(from: "h3", to: "h1"))

        // Applying the same file again changes nothing; a wrong file changes nothing either.
        try lab.mustCtl(["apply", file.path])
        let same = try state(lab)
        try "{\"bridges\": [{\"name\": \"\(lab.bridge)\", \"ports\": [{\"name\": \"lo\", \"type\": \"tap\"}]}]}"
            .write(to: file, atomically: true, encoding: .utf8)
        let r = try lab.ctl(["apply", file.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.output.contains("the previous configuration is back in place"), r.output)
        XCTAssertEqual(try state(lab), same)

        // The running configuration is printed as a file apply takes back.
        let printed = try lab.mustCtl(["show-config"])
        try printed.write(to: file, atomically: true, encoding: .utf8)
        try lab.mustCtl(["apply", file.path])
        XCTAssertEqual(try state(lab), same)
    }
}
