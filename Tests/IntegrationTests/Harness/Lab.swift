// A lab of network namespaces wired to a private userswitchd, for the integration tests.
//
// Each guest is a namespace with one veth: `eth0` inside, the switch-side end in the root
// namespace where the daemon runs. All names carry the test process's pid and a per-lab letter,
// so concurrent runs and leftovers of a crashed run never collide, and nothing the host owns is
// touched. `tearDown()` removes everything the lab made (daemon by pid, namespaces, veths, files)
// and is safe to call more than once, also after a failure half-way through set-up.
//
// The CLI's JSON is treated as provisional: helpers search the decoded tree for the fields they
// need (a port's `state`, the `drops` counters) instead of decoding fixed types.

import Foundation
import XCTest
import SwitchCore
#if canImport(Glibc)
import Glibc
#endif

/// Where the built `userswitchd` and `userswitchctl` are: next to the test bundle (SwiftPM puts
/// executables and the test bundle in one products directory), or USERSWITCH_BIN_DIR, or the
/// package's .build/debug and .build/release.
enum Binaries {
    static let names = ["userswitchd", "userswitchctl"]

    static func directory() -> URL? {
        var candidates: [URL] = []
        if let d = ProcessInfo.processInfo.environment["USERSWITCH_BIN_DIR"], !d.isEmpty {
            candidates.append(URL(fileURLWithPath: d))
        }
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        candidates.append(Bundle.main.bundleURL)
        if let arg0 = CommandLine.arguments.first {
            candidates.append(URL(fileURLWithPath: arg0).standardizedFileURL.deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent())
        }
        // Tests/IntegrationTests/Harness/Lab.swift -> package root
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug"))
        candidates.append(root.appendingPathComponent(".build/release"))
        return candidates.first { dir in
            names.allSatisfy { FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent($0).path) }
        }
    }
}

/// Skips (or, under `make test`, fails) a test whose prerequisites are missing.
func requireIntegrationPrerequisites() throws -> URL {
    let required = ProcessInfo.processInfo.environment["USERSWITCH_INTEGRATION_REQUIRED"] == "1"
    func missing(_ why: String) throws -> Never {
        if required {
            XCTFail("integration prerequisite missing (USERSWITCH_INTEGRATION_REQUIRED=1): \(why)")
            throw HarnessError.failed(why)
        }
        throw XCTSkip(why)
    }
    guard getuid() == 0 else { try missing("integration tests need root (network namespaces)") }
    guard let dir = Binaries.directory() else { try missing("userswitchd/userswitchctl are not built") }
    for p in ["ip", "ping"] where Command.path(of: p) == nil { try missing("\(p) is not installed") }
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { try missing("/usr/bin/python3 missing") }
    return dir
}

/// A tool a test needs beyond the basics: under `make test` (USERSWITCH_INTEGRATION_REQUIRED=1),
/// where the Makefile installs it, its absence is a failure, never a skip.
func requireTool(_ name: String, package: String) throws {
    guard Command.path(of: name) == nil else { return }
    let why = "\(name) is not installed (Debian package \(package); `make deps` installs it)"
    if ProcessInfo.processInfo.environment["USERSWITCH_INTEGRATION_REQUIRED"] == "1" {
        XCTFail("integration prerequisite missing (USERSWITCH_INTEGRATION_REQUIRED=1): \(why)")
        throw HarnessError.failed(why)
    }
    throw XCTSkip(why)
}

nonisolated(unsafe) private var labsMade = 0

struct Guest {
    /// Network namespace name (under /var/run/netns).
    var namespace: String
    /// The switch-side veth end in the root namespace: the interface the port binds to.
    var port: String
    var mac: String
    var ip: String?
}

final class Lab {
    let binDirectory: URL
    /// Short unique prefix: "u" + pid (5 digits) + a letter per lab; keeps names within IFNAMSIZ.
    let prefix: String
    let workDirectory: URL
    let socketPath: String
    /// The daemon's saved configuration: private to the lab, never the host's.
    let configPath: String
    let bridge: String
    private(set) var guests: [String: Guest] = [:]
    private(set) var daemon: Process?
    var daemonLog: URL { workDirectory.appendingPathComponent("userswitchd.log") }
    private var background: [Process] = []
    private var sockets: [PacketSocket] = []
    private var tornDown = false

    init(binDirectory: URL) throws {
        self.binDirectory = binDirectory
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        prefix = "u\(getpid() % 100_000)\(letters[labsMade % letters.count])"
        labsMade += 1
        workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("usw-lab-\(prefix)-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        socketPath = workDirectory.appendingPathComponent("ctl.sock").path
        configPath = workDirectory.appendingPathComponent("config.json").path
        bridge = prefix + "br"
    }

    deinit { tearDown() }

    // MARK: guests

    /// Creates namespace + veth for guest `name` (e.g. "h1"), with IPv6 off and the link up.
    @discardableResult
    func addGuest(_ name: String, ip: String?, macSuffix: UInt8) throws -> Guest {
        let g = Guest(namespace: "\(prefix)-\(name)", port: "\(prefix)\(name)",
                      mac: MACAddress(0x02, 0x00, 0x5e, UInt8(truncatingIfNeeded: getpid()),
                                     UInt8(truncatingIfNeeded: labsMade), macSuffix).description,
                      ip: ip)
        precondition(g.port.utf8.count <= 15, "interface name too long: \(g.port)")
        guests[name] = g // registered first, so tearDown removes a half-made guest
        try Command.must("ip", ["netns", "add", g.namespace])
        try inNamespace(g, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        try inNamespace(g, ["ip", "link", "set", "lo", "up"])
        try createVeth(g)
        return g
    }

    /// (Re)creates the guest's veth pair under the same names and configures its inside end.
    func createVeth(_ g: Guest) throws {
        try Command.must("ip", ["link", "add", g.port, "type", "veth", "peer", "name", "eth0", "netns", g.namespace])
        // The host's IPv6 stack stays off the switch-side end: no ND or MLD frames into the switch.
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(g.port)/disable_ipv6", atomically: false, encoding: .utf8)
        try inNamespace(g, ["ip", "link", "set", "eth0", "address", g.mac])
        if let ip = g.ip { try inNamespace(g, ["ip", "addr", "add", ip + "/24", "dev", "eth0"]) }
        try inNamespace(g, ["ip", "link", "set", "eth0", "up"])
        try Command.must("ip", ["link", "set", g.port, "up"])
    }

    func guest(_ name: String) -> Guest { guests[name]! }

    @discardableResult
    func inNamespace(_ g: Guest, _ command: [String], timeout: Double = 20) throws -> String {
        try Command.must("ip", ["netns", "exec", g.namespace] + command, timeout: timeout)
    }

    func runInNamespace(_ g: Guest, _ command: [String], timeout: Double = 20) throws -> CommandResult {
        try Command.run("ip", ["netns", "exec", g.namespace] + command, timeout: timeout)
    }

    /// Starts a long-running command inside a guest; stopped by pid in tearDown.
    func startInNamespace(_ g: Guest, _ command: [String], outputFile: URL) throws -> Process {
        let p = try Command.start("ip", ["netns", "exec", g.namespace] + command, outputFile: outputFile)
        background.append(p)
        return p
    }

    /// Pings `to` from `from`, a few tries within `timeout` seconds (the first frames also teach
    /// the switch where the hosts are).
    func canPing(from: String, to: String, timeout: Double = 8) throws -> Bool {
        let target = guest(to).ip!
        return try eventually(timeout: timeout) {
            try runInNamespace(guest(from), ["ping", "-c", "1", "-W", "1", "-q", target], timeout: 5).succeeded
        }
    }

    /// An AF_PACKET socket on the guest's eth0, opened inside its namespace; closed in tearDown.
    func packetSocket(_ guestName: String) throws -> PacketSocket {
        let s = try PacketSocket(namespace: guest(guestName).namespace, interface: "eth0")
        sockets.append(s)
        return s
    }

    // MARK: the daemon

    var binary: (String) -> String { { self.binDirectory.appendingPathComponent($0).path } }

    /// Starts userswitchd with the lab's private socket and waits until it answers.
    func startDaemon(environment: [String: String] = [:]) throws {
        precondition(daemon == nil)
        let p = try Command.start(binary("userswitchd"), ["--socket", socketPath, "--config", configPath, "--log-level", "debug"],
                                  environment: environment.merging(["USERSWITCH_SOCKET": socketPath]) { $1 }, outputFile: daemonLog)
        daemon = p
        let answered = eventually(timeout: 15) {
            guard p.isRunning else { return true }
            return (try? ctl(["show"], timeout: 5).succeeded) ?? false
        }
        guard p.isRunning, answered else {
            throw HarnessError.failed("userswitchd did not start and answer within 15 s; log:\n\(daemonLogTail())")
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL); returns its exit status when it stopped on SIGTERM.
    @discardableResult
    func stopDaemon(grace: Double = 10) -> (exitedOnTerm: Bool, status: Int32, reason: Process.TerminationReason)? {
        guard let p = daemon else { return nil }
        daemon = nil
        let clean = Command.stop(p, grace: grace)
        return (clean, p.terminationStatus, p.terminationReason)
    }

    func daemonLogTail(lines: Int = 60) -> String {
        let text = (try? String(contentsOf: daemonLog, encoding: .utf8)) ?? "(no log)"
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    // MARK: the CLI

    func ctl(_ arguments: [String], timeout: Double = 10) throws -> CommandResult {
        try Command.run(binary("userswitchctl"), arguments, environment: ["USERSWITCH_SOCKET": socketPath],
                        timeout: timeout)
    }

    /// Runs a userswitchctl command that must succeed.
    @discardableResult
    func mustCtl(_ arguments: [String]) throws -> String {
        let r = try ctl(arguments)
        guard r.succeeded else {
            throw HarnessError.failed("userswitchctl \(arguments.joined(separator: " ")) -> status \(r.status): \(r.output)")
        }
        return r.output
    }

    /// `userswitchctl ... --json`, decoded loosely.
    func ctlJSON(_ arguments: [String]) throws -> Any {
        let out = try mustCtl(arguments + ["--json"])
        // Tolerate log lines around the document: take from the first '[' or '{'.
        guard let start = out.firstIndex(where: { $0 == "[" || $0 == "{" }) else {
            throw HarnessError.failed("no JSON in: \(out)")
        }
        return try JSONSerialization.jsonObject(with: Data(out[start...].utf8), options: [.fragmentsAllowed])
    }

    func addBridge() throws { try mustCtl(["add-br", bridge]) }

    func addPort(_ guestName: String, _ options: [String] = []) throws {
        try mustCtl(["add-port", bridge, guest(guestName).port] + options)
    }

    /// The `state` (`up`/`down`) that `show --json` reports for an interface's port, nil if absent.
    func portState(_ port: String) throws -> String? {
        let tree = try ctlJSON(["show"])
        return JSONSearch.objects(in: tree).first { $0["name"] as? String == port && $0["state"] != nil }?["state"] as? String
    }

    /// Sum of drop counters per reason over the lab's bridge (from `stats --bridge BR --json`).
    func dropCounters() throws -> [String: UInt64] {
        let tree = try ctlJSON(["stats", "--bridge", bridge])
        var sums: [String: UInt64] = [:]
        for object in JSONSearch.objects(in: tree) {
            guard let drops = object["drops"] as? [String: Any] else { continue }
            for (reason, value) in drops {
                if let n = (value as? NSNumber)?.uint64Value { sums[reason, default: 0] += n }
            }
        }
        return sums
    }

    // MARK: teardown

    /// Removes everything: background commands and the daemon by pid, namespaces, veths, files.
    func tearDown() {
        if tornDown { return }
        tornDown = true
        // A socket opened inside a namespace keeps the namespace alive: close them first.
        for s in sockets { s.close() }
        sockets.removeAll()
        for p in background { Command.stop(p, grace: 2) }
        background.removeAll()
        stopDaemon(grace: 5)
        for g in guests.values {
            _ = try? Command.run("ip", ["netns", "del", g.namespace], timeout: 10)
            // Deleting the namespace deletes the veth pair; this catches a pair whose inside end
            // never made it into the namespace.
            if FileManager.default.fileExists(atPath: "/sys/class/net/\(g.port)") {
                _ = try? Command.run("ip", ["link", "del", g.port], timeout: 10)
            }
        }
        try? FileManager.default.removeItem(at: workDirectory)
    }
}

enum JSONSearch {
    /// Every JSON object anywhere in `tree`, depth first.
    static func objects(in tree: Any) -> [[String: Any]] {
        var out: [[String: Any]] = []
        func walk(_ node: Any) {
            if let d = node as? [String: Any] {
                out.append(d)
                for v in d.values { walk(v) }
            } else if let a = node as? [Any] {
                for v in a { walk(v) }
            }
        }
        walk(tree)
        return out
    }
}
