// LinkMonitor: rtnetlink link events for interfaces that come and go. The veth tests need root
// (CAP_NET_ADMIN) and skip otherwise; the veth pair is removed on every path.

import XCTest
import Foundation
@testable import SwitchIO
#if canImport(Glibc)
import Glibc
#endif

/// Runs system tools (ip, sysctl, ping) for the root-only tests of this target.
enum LinkTestShell {
    /// Runs `arguments` (first = program, looked up in PATH) and returns its exit status and output.
    @discardableResult
    static func run(_ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Like `run`, but fails the test when the command fails.
    static func must(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let (status, output) = run(arguments)
        XCTAssertEqual(status, 0, "\(arguments.joined(separator: " ")): \(output)", file: file, line: line)
    }

    static var isRoot: Bool { getuid() == 0 }
}

final class LinkMonitorTests: XCTestCase {
    func testIfIndexOfLoopbackAndOfMissingInterface() {
        XCTAssertEqual(LinkMonitor.ifIndex(of: "lo"), 1)
        XCTAssertNil(LinkMonitor.ifIndex(of: "nosuchif\(getpid() % 10000)"))
    }

    /// Waits up to `seconds` for events until `done` says enough; returns all events seen.
    private func collect(_ monitor: LinkMonitor, seconds: Double = 3,
                         until done: ([LinkEvent]) -> Bool) -> [LinkEvent] {
        var events: [LinkEvent] = []
        let deadline = Date().addingTimeInterval(seconds)
        while !done(events) && Date() < deadline {
            var pfd = pollfd(fd: monitor.fileDescriptor, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) > 0 { events += monitor.drain() }
        }
        return events
    }

    func testVethAddedChangedAndRemoved() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root to create a veth pair")
        let a = "lm\(getpid())a", b = "lm\(getpid())b"
        defer { LinkTestShell.run(["ip", "link", "del", a]) }
        let monitor = try LinkMonitor()
        XCTAssertGreaterThanOrEqual(monitor.fileDescriptor, 0)
        _ = monitor.drain()

        LinkTestShell.must(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        var events = collect(monitor) { e in
            e.contains { $0.name == a && $0.kind == .added } && e.contains { $0.name == b && $0.kind == .added }
        }
        let addedA = try XCTUnwrap(events.first { $0.name == a && $0.kind == .added })
        XCTAssertEqual(addedA.ifIndex, LinkMonitor.ifIndex(of: a))
        XCTAssertFalse(addedA.isUp)
        XCTAssertEqual(events.first { $0.name == b }?.ifIndex, LinkMonitor.ifIndex(of: b))

        // A state change is reported as "exists now", with the new state.
        LinkTestShell.must(["ip", "link", "set", b, "up"])
        LinkTestShell.must(["ip", "link", "set", a, "up"])
        events = collect(monitor) { e in e.contains { $0.name == a && $0.isUp && $0.hasCarrier } }
        let upA = try XCTUnwrap(events.last { $0.name == a })
        XCTAssertEqual(upA.kind, .added)
        XCTAssertTrue(upA.isUp)
        XCTAssertTrue(upA.hasCarrier)

        // Deleting one end removes both.
        LinkTestShell.must(["ip", "link", "del", a])
        events = collect(monitor) { e in
            e.contains { $0.name == a && $0.kind == .removed } && e.contains { $0.name == b && $0.kind == .removed }
        }
        XCTAssertEqual(events.first { $0.name == a && $0.kind == .removed }?.ifIndex, addedA.ifIndex)
        XCTAssertTrue(events.contains { $0.name == b && $0.kind == .removed }, "\(events)")
        XCTAssertNil(LinkMonitor.ifIndex(of: a))
        XCTAssertEqual(monitor.overflows, 0)

        // An interface of the same name returning is seen again.
        LinkTestShell.must(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        events = collect(monitor) { e in e.contains { $0.name == a && $0.kind == .added } }
        XCTAssertEqual(events.first { $0.name == a && $0.kind == .added }?.ifIndex, LinkMonitor.ifIndex(of: a))

        monitor.close()
        monitor.close()
        XCTAssertEqual(monitor.fileDescriptor, -1)
        XCTAssertEqual(monitor.drain(), [])
    }
}
