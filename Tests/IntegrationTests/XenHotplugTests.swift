// tools/xen/vif-userswitch against a running userswitchd, without Xen: a directory-backed stand-in
// for xenstore-read/-write/-exists/-rm (tools/xen/testing/) first on PATH, and the lab's veth
// pairs standing in for the guests' vif devices (the guest's side is `eth0` in its namespace).
//
// Each test writes the backend keys libxl would write, runs the script with the environment libxl
// gives it, and checks the exit status, the keys written back (hotplug-status, hotplug-error) and
// the switch's state (`show --json`), and, where it matters, that the guests really talk.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The package's tools/ directory.
let toolsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("tools")

/// A fake xenstore in a directory, and runs of the hotplug script against it.
final class FakeXen {
    let lab: Lab
    let store: URL
    let lock: URL

    init(lab: Lab) throws {
        self.lab = lab
        store = lab.workDirectory.appendingPathComponent("xenstore")
        lock = lab.workDirectory.appendingPathComponent("hotplug.lock")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
    }

    var environment: [String: String] {
        let path = toolsDirectory.appendingPathComponent("xen/testing").path + ":" + lab.binDirectory.path + ":"
            + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        return ["PATH": path, "XENSTORE_DIR": store.path, "USERSWITCH_SOCKET": lab.socketPath,
                "USERSWITCH_HOTPLUG_LOCK": lock.path, "USERSWITCH_IFACE_WAIT": "2"]
    }

    /// Runs one of the stand-in xenstore tools (by path: the test process's own PATH lacks them).
    func tool(_ name: String, _ arguments: [String]) throws {
        let r = try Command.run(toolsDirectory.appendingPathComponent("xen/testing/\(name)").path, arguments,
                                environment: environment)
        guard r.succeeded else { throw HarnessError.failed("\(name) \(arguments) -> \(r.status): \(r.output)") }
    }

    func write(_ path: String, _ value: String) throws { try tool("xenstore-write", [path, value]) }

    func read(_ path: String) -> String? {
        let node = store.appendingPathComponent(path.hasPrefix("/") ? String(path.dropFirst()) : "local/domain/0/" + path)
        return try? String(contentsOf: node.appendingPathComponent("__value"), encoding: .utf8)
    }

    /// Writes a vif's backend keys as libxl does (domain `domid`, device 0) and the guest's name/UUID.
    func defineGuest(domid: Int, bridge: String, mac: String, name: String, uuid: String, extra: [String: String] = [:]) throws -> String {
        let backend = "backend/vif/\(domid)/0"
        try write("\(backend)/bridge", bridge)
        try write("\(backend)/mac", mac)
        try write("\(backend)/frontend-id", "\(domid)")
        try write("\(backend)/frontend", "/local/domain/\(domid)/device/vif/0")
        try write("\(backend)/handle", "0")
        try write("/local/domain/\(domid)/vm", "/vm/\(uuid)")
        try write("/vm/\(uuid)/name", name)
        try write("/vm/\(uuid)/uuid", uuid)
        for (k, v) in extra { try write("\(backend)/\(k)", v) }
        return backend
    }

    var script: String { toolsDirectory.appendingPathComponent("xen/vif-userswitch").path }

    /// Runs vif-userswitch as libxl would.
    func run(_ action: String, type: String = "vif", device: String, backend: String) throws -> CommandResult {
        try Command.run(script, [action, "type_if=\(type)"], environment: scriptEnvironment(type: type, device: device, backend: backend),
                        timeout: 40)
    }

    func scriptEnvironment(type: String, device: String, backend: String) -> [String: String] {
        var env = environment
        env["XENBUS_PATH"] = backend
        env["XENBUS_TYPE"] = "vif"
        env["XENBUS_BASE_PATH"] = "backend"
        env["script"] = toolsDirectory.appendingPathComponent("xen/vif-userswitch").path
        env["netdev"] = ""
        if type == "tap" { env["INTERFACE"] = device } else { env["vif"] = device }
        return env
    }

    /// The `show --json` object of a port, nil when no bridge or router has it.
    func port(_ name: String) throws -> (bridge: String, port: [String: Any])? {
        let tree = try lab.ctlJSON(["show"])
        for b in (tree as? [[String: Any]]) ?? [] {
            for p in (b["ports"] as? [[String: Any]]) ?? [] where p["name"] as? String == name {
                return (b["name"] as! String, p)
            }
        }
        return nil
    }
}

final class XenHotplugTests: LabTestCase {
    private func started() throws -> (Lab, FakeXen) {
        let lab = try XCTUnwrap(lab)
        try lab.startDaemon()
        try lab.addBridge()
        return (lab, try FakeXen(lab: lab))
    }

    private func macOf(_ interface: String) -> String? {
        (try? String(contentsOfFile: "/sys/class/net/\(interface)/address", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testOnlineAttachesAnAccessPortWithTheGuestAndOfflineDetaches() throws {
        let (lab, xen) = try started()
        let g = try lab.addGuest("h1", ip: "10.81.0.1", macSuffix: 1)
        let uuid = "6f1e2d3c-1111-4222-8333-444455556666"
        let backend = try xen.defineGuest(domid: 11, bridge: "\(lab.bridge).10", mac: g.mac, name: "web-1", uuid: uuid,
                                          extra: ["ip": "10.81.0.1 10.81.5.0/24", "mtu": "1400"])
        let r = try xen.run("online", device: g.port, backend: backend)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(xen.read("\(backend)/hotplug-status"), "connected")
        XCTAssertNil(xen.read("\(backend)/hotplug-error"))
        let (bridge, port) = try XCTUnwrap(try xen.port(g.port))
        XCTAssertEqual(bridge, lab.bridge)
        XCTAssertEqual(port["state"] as? String, "up")
        let vlan = try XCTUnwrap(port["vlan"] as? [String: Any])
        XCTAssertEqual(vlan["mode"] as? String, "access")
        XCTAssertEqual(vlan["vlan"] as? Int, 10)
        let guest = try XCTUnwrap(port["guest"] as? [String: Any])
        XCTAssertEqual(guest["name"] as? String, "web-1")
        XCTAssertEqual(guest["uuid"] as? String, uuid)
        XCTAssertEqual(guest["mac"] as? String, g.mac)
        XCTAssertEqual(guest["ips"] as? [String], ["10.81.0.1", "10.81.5.0/24"])
        // Anti-spoofing from the mac and ip keys.
        XCTAssertEqual(port["antiSpoofing"] as? Bool, true)
        let addresses = try XCTUnwrap(port["addresses"] as? [String: Any])
        XCTAssertEqual(addresses["macs"] as? [String], [g.mac])
        XCTAssertEqual(addresses["ips"] as? [String], ["10.81.0.1", "10.81.5.0/24"])
        // Port security: the default limit of learned MACs for a guest vif.
        XCTAssertEqual(addresses["maxMACs"] as? Int, 16)
        // vif-bridge semantics on the backend device.
        XCTAssertEqual(macOf(g.port), "fe:ff:ff:ff:ff:ff")
        XCTAssertEqual(try String(contentsOfFile: "/sys/class/net/\(g.port)/mtu", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), "1400")
        XCTAssertEqual(xen.read("/local/domain/11/device/vif/0/mtu"), "1400")

        // Online again for an attached port: still exactly one port, still connected.
        XCTAssertEqual(try xen.run("online", device: g.port, backend: backend).status, 0)
        XCTAssertEqual(try xen.port(g.port)?.port["state"] as? String, "up")

        // Offline detaches; a second offline (nothing attached) still succeeds.
        XCTAssertEqual(try xen.run("offline", device: g.port, backend: backend).status, 0)
        XCTAssertNil(try xen.port(g.port))
        XCTAssertEqual(try xen.run("offline", device: g.port, backend: backend).status, 0)
        // The wrong device type for the action: nothing done, success.
        XCTAssertEqual(try xen.run("online", type: "tap", device: g.port, backend: backend).status, 0)
        XCTAssertNil(try xen.port(g.port))
    }

    func testOnlineOnARouterAttachesARoutedPortAndNeedsTheIPKey() throws {
        let (lab, xen) = try started()
        let lan = try lab.addGuest("lan", ip: "10.82.0.7", macSuffix: 9)
        let g = try lab.addGuest("h1", ip: "10.82.0.5", macSuffix: 1)
        try lab.inNamespace(g, ["ip", "route", "add", "default", "via", "10.82.0.1"])
        let router = lab.prefix + "rt"
        try lab.mustCtl(["add-router", router, "uplink=\(lan.port)", "address=10.82.0.1/24"])
        let backend = try xen.defineGuest(domid: 14, bridge: router, mac: g.mac, name: "routed-1",
                                          uuid: "6f1e2d3c-1111-4222-8333-444455550014", extra: ["ip": "10.82.0.5 2001:db8:82::5"])
        let r = try xen.run("online", device: g.port, backend: backend)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(xen.read("\(backend)/hotplug-status"), "connected")
        let (owner, port) = try XCTUnwrap(try xen.port(g.port))
        XCTAssertEqual(owner, router)
        XCTAssertEqual(port["role"] as? String, "guest")
        XCTAssertEqual(port["addresses"] as? [String], ["10.82.0.5", "2001:db8:82::5"], "IPv6 addresses in the ip key too")
        XCTAssertEqual(port["mac"] as? String, g.mac)
        XCTAssertEqual(macOf(g.port), "fe:ff:ff:ff:ff:ff", "vif-bridge semantics on the backend device, routed too")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "lan"), lab.daemonLogTail())
        // offline withdraws the port and its route.
        XCTAssertEqual(try xen.run("offline", device: g.port, backend: backend).status, 0)
        XCTAssertNil(try xen.port(g.port))
        XCTAssertFalse(try lab.mustCtl(["routes", router]).contains("10.82.0.5"))
        // Without an ip key a routed vif is refused with a clear hotplug error.
        let g2 = try lab.addGuest("h2", ip: nil, macSuffix: 2)
        let backend2 = try xen.defineGuest(domid: 15, bridge: router, mac: g2.mac, name: "routed-2",
                                           uuid: "6f1e2d3c-1111-4222-8333-444455550015")
        let r2 = try xen.run("online", device: g2.port, backend: backend2)
        XCTAssertEqual(r2.status, 1)
        XCTAssertEqual(xen.read("\(backend2)/hotplug-status"), "error")
        XCTAssertTrue(xen.read("\(backend2)/hotplug-error")?.contains("needs an ip key") ?? false,
                      xen.read("\(backend2)/hotplug-error") ?? "no hotplug-error")
    }

    func testTrunkSpecAndVlanKeyCarryTheirVLANs() throws {
        let (lab, xen) = try started()
        let g1 = try lab.addGuest("h1", ip: "10.82.0.1", macSuffix: 1)
        let g2 = try lab.addGuest("h2", ip: "10.82.0.2", macSuffix: 2)
        let g3 = try lab.addGuest("h3", ip: nil, macSuffix: 3)
        // h1: trunk 101,202; h2: the vlan key "7p/101" = trunk 7,101 native 7; h3: vlan key single VLAN.
        let b1 = try xen.defineGuest(domid: 21, bridge: "\(lab.bridge):101:202", mac: g1.mac, name: "t1", uuid: "aaaa-21")
        let b2 = try xen.defineGuest(domid: 22, bridge: lab.bridge, mac: g2.mac, name: "t2", uuid: "aaaa-22", extra: ["vlan": "7p/101"])
        let b3 = try xen.defineGuest(domid: 23, bridge: lab.bridge, mac: g3.mac, name: "t3", uuid: "aaaa-23", extra: ["vlan": "300+2x3"])
        for (g, b) in [(g1, b1), (g2, b2), (g3, b3)] {
            let r = try xen.run("online", device: g.port, backend: b)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(xen.read("\(b)/hotplug-status"), "connected")
        }
        let v1 = try XCTUnwrap(try xen.port(g1.port)?.port["vlan"] as? [String: Any])
        XCTAssertEqual(v1["mode"] as? String, "trunk")
        XCTAssertEqual(v1["trunks"] as? [Int], [101, 202])
        XCTAssertNil(v1["native"] as? Int)
        let v2 = try XCTUnwrap(try xen.port(g2.port)?.port["vlan"] as? [String: Any])
        XCTAssertEqual(v2["trunks"] as? [Int], [7, 101])
        XCTAssertEqual(v2["native"] as? Int, 7)
        let v3 = try XCTUnwrap(try xen.port(g3.port)?.port["vlan"] as? [String: Any])
        XCTAssertEqual(v3["trunks"] as? [Int], [300, 302, 304])

        // A broadcast tagged 101 from h1 reaches h2 tagged 101 (both trunks carry it), and not h3.
        let s1 = try lab.packetSocket("h1"), s2 = try lab.packetSocket("h2"), s3 = try lab.packetSocket("h3")
        var seen: CapturedFrame? = nil
        for _ in 0..<5 where seen == nil {
            let nonce = TestFrame.nonce()
            try s1.send(TestFrame.make(destination: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], source: macBytes(g1.mac),
                                       vlanID: 101, payload: nonce))
            seen = s2.receive(timeout: 1) { $0.carries(nonce) }
            XCTAssertNil(s3.receive(timeout: 0.2) { $0.carries(nonce) }, "VLAN 101 leaked to a port outside it")
        }
        XCTAssertEqual(try XCTUnwrap(seen, "VLAN 101 frame from h1 never reached h2").vlanID, 101)
        // Untagged from h2 is its native VLAN 7: h1's trunk has no native VLAN and must not see it.
        let nonce = TestFrame.nonce()
        try s2.send(TestFrame.make(destination: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], source: macBytes(g2.mac), payload: nonce))
        XCTAssertNil(s1.receive(timeout: 0.5) { $0.carries(nonce) })
    }

    func testEmulatedTapWithVifnameAndTheCollisionCheck() throws {
        let (lab, xen) = try started()
        // The tap's device name as QEMU/libxl make it, and the vifname the guest config asks for.
        let g = try lab.addGuest("e1", ip: nil, macSuffix: 1)
        let emu = "\(lab.prefix)e1"
        let renamed = "\(lab.prefix)web-emu"
        let backend = try xen.defineGuest(domid: 31, bridge: lab.bridge, mac: g.mac, name: "hvm", uuid: "bbbb-31",
                                          extra: ["vifname": "\(lab.prefix)web"])
        defer { _ = try? Command.run("ip", ["link", "del", renamed]) } // the lab only knows the old name
        let r = try xen.run("add", type: "tap", device: emu, backend: backend)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/sys/class/net/\(emu)"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "/sys/class/net/\(renamed)"))
        XCTAssertEqual(try xen.port(renamed)?.port["state"] as? String, "up")
        XCTAssertNil(xen.read("\(backend)/hotplug-status"), "the tap path reports by exit status only")
        // online/offline are for PV vifs: with type_if=tap they do nothing.
        XCTAssertEqual(try xen.run("offline", type: "tap", device: emu, backend: backend).status, 0)
        XCTAssertNotNil(try xen.port(renamed))
        XCTAssertEqual(try xen.run("remove", type: "tap", device: emu, backend: backend).status, 0)
        XCTAssertNil(try xen.port(renamed))

        // Again, but the backend keys (with vifname) are gone before remove: the renamed port is
        // still found and detached. (libxl names the device afresh for each add.)
        try Command.must("ip", ["link", "set", "dev", renamed, "name", emu])
        XCTAssertEqual(try xen.run("add", type: "tap", device: emu, backend: backend).status, 0)
        XCTAssertEqual(try xen.port(renamed)?.port["state"] as? String, "up")
        try xen.tool("xenstore-rm", [backend])
        XCTAssertEqual(try xen.run("remove", type: "tap", device: emu, backend: backend).status, 0)
        XCTAssertNil(try xen.port(renamed))
        _ = try xen.defineGuest(domid: 31, bridge: lab.bridge, mac: g.mac, name: "hvm", uuid: "bbbb-31",
                                extra: ["vifname": "\(lab.prefix)web"])

        // A second guest whose vifname is taken by an existing interface: fatal, nothing attached.
        let g2 = try lab.addGuest("e2", ip: nil, macSuffix: 2)
        let b2 = try xen.defineGuest(domid: 32, bridge: lab.bridge, mac: g2.mac, name: "hvm2", uuid: "bbbb-32",
                                     extra: ["vifname": lab.guest("e1").port.replacingOccurrences(of: "e1", with: "web")])
        let r2 = try xen.run("add", type: "tap", device: g2.port, backend: b2)
        XCTAssertEqual(r2.status, 1, r2.output)
        XCTAssertEqual(xen.read("\(b2)/hotplug-status"), "error")
        XCTAssertEqual(xen.read("\(b2)/hotplug-error"), "vifname \(renamed) already exists: cannot rename \(g2.port)")
        XCTAssertNil(try xen.port(g2.port))
    }

    func testErrorsAreWrittenBackWithExitStatusOne() throws {
        let (lab, xen) = try started()
        let g = try lab.addGuest("h1", ip: nil, macSuffix: 1)
        func expectFailure(_ bridge: String, _ extra: [String: String] = [:], domid: Int, message: String,
                           file: StaticString = #filePath, line: UInt = #line) throws {
            let b = try xen.defineGuest(domid: domid, bridge: bridge, mac: g.mac, name: "bad", uuid: "cccc-\(domid)", extra: extra)
            let r = try xen.run("online", device: g.port, backend: b)
            XCTAssertEqual(r.status, 1, r.output, file: file, line: line)
            XCTAssertEqual(xen.read("\(b)/hotplug-status"), "error", file: file, line: line)
            XCTAssertEqual(xen.read("\(b)/hotplug-error"), message, file: file, line: line)
            XCTAssertNil(try xen.port(g.port), "a failed attach left a port behind", file: file, line: line)
        }
        try expectFailure("\(lab.bridge).x", domid: 41,
                          message: "no valid bridge in '\(lab.bridge).x': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        try expectFailure("\(lab.bridge):10:", domid: 42,
                          message: "no valid bridge in '\(lab.bridge):10:': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
        try expectFailure("nosuchbr\(getpid() % 1000)", domid: 43,
                          message: "cannot attach \(g.port) to nosuchbr\(getpid() % 1000): no such bridge 'nosuchbr\(getpid() % 1000)'")
        try expectFailure("\(lab.bridge).5", ["vlan": "7"], domid: 44,
                          message: "both the bridge spec '\(lab.bridge).5' and the vlan key '7' set VLANs")
        // A device that never appears.
        let b = try xen.defineGuest(domid: 45, bridge: lab.bridge, mac: g.mac, name: "late", uuid: "cccc-45")
        let r = try xen.run("online", device: "\(lab.prefix)none", backend: b)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(xen.read("\(b)/hotplug-error"), "device \(lab.prefix)none did not appear within 2 s")

        // No daemon.
        lab.stopDaemon()
        let b2 = try xen.defineGuest(domid: 46, bridge: lab.bridge, mac: g.mac, name: "nodaemon", uuid: "cccc-46")
        let r2 = try xen.run("online", device: g.port, backend: b2)
        XCTAssertEqual(r2.status, 1)
        XCTAssertEqual(xen.read("\(b2)/hotplug-status"), "error")
        XCTAssertTrue(xen.read("\(b2)/hotplug-error")?.hasPrefix("userswitchd is not answering") ?? false,
                      xen.read("\(b2)/hotplug-error") ?? "nil")
        // Removal never fails, daemon or not.
        XCTAssertEqual(try xen.run("offline", device: g.port, backend: b2).status, 0)
    }

    func testTwoGuestsPluggedConcurrentlyTalkAndRemovalAfterTheInterfaceIsGone() throws {
        let (lab, xen) = try started()
        let g1 = try lab.addGuest("h1", ip: "10.83.0.1", macSuffix: 1)
        let g2 = try lab.addGuest("h2", ip: "10.83.0.2", macSuffix: 2)
        let b1 = try xen.defineGuest(domid: 51, bridge: lab.bridge, mac: g1.mac, name: "c1", uuid: "dddd-51")
        let b2 = try xen.defineGuest(domid: 52, bridge: lab.bridge, mac: g2.mac, name: "c2", uuid: "dddd-52")
        // Both at once, as libxl may run them.
        var runs: [(Process, URL)] = []
        for (g, b) in [(g1, b1), (g2, b2)] {
            let out = lab.workDirectory.appendingPathComponent("online-\(g.port).log")
            runs.append((try Command.start(xen.script, ["online", "type_if=vif"],
                                           environment: xen.scriptEnvironment(type: "vif", device: g.port, backend: b),
                                           outputFile: out), out))
        }
        for (p, out) in runs {
            XCTAssertTrue(Command.wait(p, timeout: 40), "vif-userswitch did not finish within 40 s")
            XCTAssertEqual(p.terminationStatus, 0, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
        }
        XCTAssertEqual(xen.read("\(b1)/hotplug-status"), "connected")
        XCTAssertEqual(xen.read("\(b2)/hotplug-status"), "connected")
        XCTAssertTrue(try lab.canPing(from: "h1", to: "h2"))

        // The guest is destroyed: its vif vanishes before the toolstack runs offline, and the
        // backend keys go with it.
        try Command.must("ip", ["netns", "del", g2.namespace])
        XCTAssertTrue(eventually(timeout: 5) { !FileManager.default.fileExists(atPath: "/sys/class/net/\(g2.port)") })
        try xen.tool("xenstore-rm", [b2])
        let r = try xen.run("offline", device: g2.port, backend: b2)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertNil(try xen.port(g2.port))
        XCTAssertNotNil(try xen.port(g1.port), "the other guest's port stays")
    }
}
