// ControlServer and ControlClient over a real Unix socket in a temporary directory, with a fake
// handler: permissions, every refusal, stale-socket recovery, timeouts, and stop().

import Foundation
import XCTest
@testable import SwitchControl
import SwitchCore
#if canImport(Glibc)
import Glibc
#endif

final class ControlSocketTests: XCTestCase {
    var directory = ""
    var socketPath: String { directory + "/run/userswitchd.sock" }

    override func setUp() {
        directory = makeTemporaryDirectory()
    }

    override func tearDown() {
        removeDirectory(directory)
    }

    func testRequestAndResponseRoundTrip() throws {
        let handler = FakeHandler { request in
            request.command == .show ? .success(.show(Samples.bridges)) : .failure("unexpected")
        }
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let response = try ControlClient(path: socketPath).send(.show)
        XCTAssertEqual(response, .success(.show(Samples.bridges)))
        XCTAssertEqual(handler.requests, [ControlRequest(.show)])
    }

    func testEveryCommandReachesTheHandlerIntact() throws {
        let handler = FakeHandler()
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let client = ControlClient(path: socketPath)
        for command in Samples.commands {
            XCTAssertEqual(try client.send(command), .success())
        }
        XCTAssertEqual(handler.requests.map(\.command), Samples.commands)
    }

    func testDaemonFailureIsAResponseNotAThrow() throws {
        let server = try ControlServer(path: socketPath, handler: FakeHandler { _ in .failure("no such bridge 'br9'") })
        defer { server.stop() }
        let response = try ControlClient(path: socketPath).send(.delBridge(name: "br9"))
        XCTAssertEqual(response, .failure("no such bridge 'br9'"))
    }

    func testSocketModeAndParentDirectory() throws {
        let old = umask(0o000)  // the modes must not depend on the caller's umask
        defer { umask(old) }
        let nested = directory + "/a/b/ctl.sock"
        let server = try ControlServer(path: nested, handler: FakeHandler())
        defer { server.stop() }
        let mode = try XCTUnwrap(fileMode(nested))
        XCTAssertEqual(mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(mode & 0o7777, 0o600)
        XCTAssertEqual(try XCTUnwrap(fileMode(directory + "/a/b")) & 0o7777, 0o755)
        XCTAssertEqual(try XCTUnwrap(fileMode(directory + "/a")) & 0o7777, 0o755)
    }

    func testMalformedJSONGetsAnErrorAndTheServerGoesOn() throws {
        let handler = FakeHandler()
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let reply = rawExchange(socketPath, Array("this is not json\n".utf8))
        XCTAssertEqual(decodeRaw(reply), .failure("malformed request: not valid JSON"))
        XCTAssertEqual(reply.last, UInt8(ascii: "\n"))
        XCTAssertTrue(handler.requests.isEmpty, "a malformed request never reaches the handler")
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
    }

    func testRequestEndedByEOFInsteadOfNewlineIsAccepted() throws {
        let handler = FakeHandler()
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let reply = rawExchange(socketPath, Array(#"{"version":1,"command":{"show":{}}}"#.utf8), shutdownWrite: true)
        XCTAssertEqual(decodeRaw(reply), .success())
        XCTAssertEqual(handler.requests.map(\.command), [.show])
    }

    func testWrongVersionRefused() throws {
        let handler = FakeHandler()
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let response = try ControlClient(path: socketPath).send(ControlRequest(.show, version: 99))
        XCTAssertFalse(response.ok)
        XCTAssertEqual(response.error,
                       "unsupported protocol version 99: userswitchd speaks version 1; use the userswitchctl that came with this userswitchd")
        XCTAssertTrue(handler.requests.isEmpty)
    }

    func testOversizedRequestRefused() throws {
        let handler = FakeHandler()
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        // A valid request, but 2 MiB: ControlClient must still read the refusal.
        let huge = String(repeating: "x", count: 2 << 20)
        let response = try ControlClient(path: socketPath).send(.delBridge(name: huge))
        XCTAssertEqual(response, .failure("request too large: more than 1048576 bytes without a newline"))
        XCTAssertTrue(handler.requests.isEmpty)
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
    }

    func testSmallerRequestLimit() throws {
        let server = try ControlServer(path: socketPath, handler: FakeHandler(), maxRequestBytes: 100)
        defer { server.stop() }
        let response = try ControlClient(path: socketPath).send(.delBridge(name: String(repeating: "b", count: 200)))
        XCTAssertEqual(response, .failure("request too large: more than 100 bytes without a newline"))
        XCTAssertEqual(try ControlClient(path: socketPath).send(.delBridge(name: "b")), .success())
    }

    func testStaleSocketFileIsReplaced() throws {
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        // Bind and close without unlinking: what a crashed daemon leaves behind.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = try XCTUnwrap(SocketIO.address(socketPath))
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(r, 0)
        close(fd)
        XCTAssertEqual(try XCTUnwrap(fileMode(socketPath)) & S_IFMT, S_IFSOCK)

        let server = try ControlServer(path: socketPath, handler: FakeHandler())
        defer { server.stop() }
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
    }

    func testLiveSocketIsNotTakenOver() throws {
        let first = try ControlServer(path: socketPath, handler: FakeHandler { _ in .failure("first") })
        defer { first.stop() }
        XCTAssertThrowsError(try ControlServer(path: socketPath, handler: FakeHandler())) { error in
            XCTAssertEqual(error as? ControlSocketError, .alreadyRunning(path: socketPath))
            XCTAssertEqual("\(error)", "another userswitchd is already listening on \(socketPath)")
        }
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .failure("first"))
    }

    func testRegularFileIsNotRemoved() throws {
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: socketPath, contents: Data("keep me".utf8)))
        XCTAssertThrowsError(try ControlServer(path: socketPath, handler: FakeHandler())) { error in
            XCTAssertEqual(error as? ControlSocketError, .notASocket(path: socketPath))
            XCTAssertEqual("\(error)", "\(socketPath) exists and is not a socket; refusing to replace it")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: socketPath), Data("keep me".utf8))
    }

    func testStopRemovesTheSocketAndClientsSeeNoDaemon() throws {
        let server = try ControlServer(path: socketPath, handler: FakeHandler())
        XCTAssertNotNil(fileMode(socketPath))
        server.stop()
        XCTAssertNil(fileMode(socketPath), "stop() unlinks the socket file")
        server.stop()  // idempotent
        XCTAssertThrowsError(try ControlClient(path: socketPath).send(.show)) { error in
            XCTAssertEqual(error as? ControlSocketError, .cannotConnect(path: socketPath, errno: ENOENT))
            XCTAssertEqual("\(error)",
                           "cannot connect to userswitchd at \(socketPath): No such file or directory (is userswitchd running?)")
        }
    }

    func testStopDoesNotRemoveASuccessorsSocket() throws {
        let old = try ControlServer(path: socketPath, handler: FakeHandler())
        // Someone replaced the file (e.g. a new daemon after removing it by hand).
        unlink(socketPath)
        let new = try ControlServer(path: socketPath, handler: FakeHandler { _ in .failure("new") })
        defer { new.stop() }
        old.stop()
        XCTAssertNotNil(fileMode(socketPath))
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .failure("new"))
    }

    func testStopFromInsideTheHandlerDoesNotDeadlock() throws {
        final class Box: @unchecked Sendable { var server: ControlServer? }
        let box = Box()
        let server = try ControlServer(path: socketPath, handler: FakeHandler { _ in
            box.server?.stop()
            return .success()
        })
        box.server = server
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
        // The loop ends after that answer; the file is gone.
        XCTAssertNil(fileMode(socketPath))
        server.stop()
    }

    func testIncompleteRequestTimesOutAndOthersAreServedAfterwards() throws {
        let server = try ControlServer(path: socketPath, handler: FakeHandler(), connectionTimeout: 0.3)
        defer { server.stop() }
        let start = Date()
        let reply = rawExchange(socketPath, Array(#"{"version":1,"#.utf8))
        XCTAssertEqual(decodeRaw(reply), .failure("timed out after 0.3 s waiting for a complete request line"))
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
    }

    func testConnectionWithoutRequestIsHarmless() throws {
        let server = try ControlServer(path: socketPath, handler: FakeHandler())
        defer { server.stop() }
        XCTAssertEqual(rawExchange(socketPath, [], shutdownWrite: true), [])
        XCTAssertEqual(try ControlClient(path: socketPath).send(.show), .success())
    }

    /// A connected socket that sends nothing (or half a request) and is held open.
    private func idleConnection(sending bytes: [UInt8] = []) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        guard let addr = SocketIO.address(socketPath), SocketIO.connect(fd, addr) == 0 else { close(fd); return -1 }
        if !bytes.isEmpty { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) } }
        return fd
    }

    func testIdleClientsDoNotHoldUpOthers() throws {
        // Measured before the event loop: `show` behind one idle connection waited for that
        // connection's whole 5 s deadline. Now 30 idle ones (some with half a request) are
        // served beside, and a client answers at once.
        let server = try ControlServer(path: socketPath, handler: FakeHandler(), connectionTimeout: 5)
        defer { server.stop() }
        let idle = (0..<30).map { idleConnection(sending: $0 % 2 == 0 ? [] : Array(#"{"version":1,"#.utf8)) }
        defer { for fd in idle where fd >= 0 { close(fd) } }
        XCTAssertFalse(idle.contains(-1))
        let start = Date()
        for _ in 0..<5 { XCTAssertEqual(try ControlClient(path: socketPath, timeout: 2).send(.show), .success()) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "served behind idle connections")
    }

    func testMoreIdleClientsThanTheServerHoldsStillLeaveRoomOnceTheyTimeOut() throws {
        // Past maxConnections the rest wait in the backlog; the idle ones time out and others are
        // served then (the daemon never stops serving).
        let server = try ControlServer(path: socketPath, handler: FakeHandler(), connectionTimeout: 0.5)
        defer { server.stop() }
        let idle = (0..<(ControlServer.maxConnections + 10)).map { _ in idleConnection() }
        defer { for fd in idle where fd >= 0 { close(fd) } }
        XCTAssertEqual(try ControlClient(path: socketPath, timeout: 5).send(.show), .success())
        // The timed-out ones got the refusal.
        var buffer = [UInt8](repeating: 0, count: 4096)
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(idle[0], SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let n = buffer.withUnsafeMutableBytes { read(idle[0], $0.baseAddress, $0.count) }
        XCTAssertGreaterThan(n, 0)
        XCTAssertEqual(decodeRaw(Array(buffer[0..<max(n, 0)])), .failure("timed out after 0.5 s waiting for a complete request line"))
    }

    func testAClientThatNeverReadsItsLargeAnswerHoldsUpNobody() throws {
        // An answer larger than the socket buffers, to a client that does not read: the server
        // writes what fits and serves the others meanwhile.
        let big = ControlResponse.success(.show((0..<2000).map { BridgeInfo(name: "br\($0)", ageingSeconds: 300, fdbCapacity: 65536, ports: []) }))
        let handler = FakeHandler { request in request.command == .show ? big : .success() }
        let server = try ControlServer(path: socketPath, handler: handler, connectionTimeout: 5)
        defer { server.stop() }
        let request = try ControlCodec.encode(ControlRequest(.show))
        let slow = idleConnection(sending: request)
        defer { close(slow) }
        usleep(200_000)
        let start = Date()
        XCTAssertEqual(try ControlClient(path: socketPath, timeout: 2).send(.delBridge(name: "x")), .success())
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
    }

    func testConcurrentClientsAreAllServed() throws {
        let handler = FakeHandler { request in
            if case .delBridge(let name) = request.command { return .failure(name) }
            return .success()
        }
        let server = try ControlServer(path: socketPath, handler: handler)
        defer { server.stop() }
        let path = socketPath
        let results = UnsafeMutableBufferPointer<Bool>.allocate(capacity: 40)
        results.initialize(repeating: false)
        defer { results.deallocate() }
        nonisolated(unsafe) let shared = results
        DispatchQueue.concurrentPerform(iterations: 40) { i in
            shared[i] = (try? ControlClient(path: path).send(.delBridge(name: "br\(i)"))) == .failure("br\(i)")
        }
        XCTAssertEqual(results.filter { $0 }.count, 40)
        XCTAssertEqual(handler.requests.count, 40)
    }

    func testClientTimesOutWhenNobodyAnswers() throws {
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        // A listener that never accepts: connect succeeds (backlog), the answer never comes.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = try XCTUnwrap(SocketIO.address(socketPath))
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(listen(fd, 4), 0)
        XCTAssertThrowsError(try ControlClient(path: socketPath, timeout: 0.3).send(.show)) { error in
            XCTAssertEqual(error as? ControlSocketError, .timedOut(path: socketPath, seconds: 0.3))
            XCTAssertEqual("\(error)", "no response from userswitchd at \(socketPath) within 0.3 s")
        }
    }

    func testClientReportsGarbageAndSilence() throws {
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = try XCTUnwrap(SocketIO.address(socketPath))
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(listen(fd, 4), 0)
        let replies = ["garbage\n", ""]
        let thread = Thread {
            for reply in replies {
                let c = accept(fd, nil, nil)
                var buf = [UInt8](repeating: 0, count: 4096)
                _ = read(c, &buf, buf.count)
                _ = reply.withCString { write(c, $0, strlen($0)) }
                close(c)
            }
        }
        thread.start()
        XCTAssertThrowsError(try ControlClient(path: socketPath).send(.show)) { error in
            XCTAssertEqual("\(error)", "invalid response from userswitchd: not valid JSON")
        }
        XCTAssertThrowsError(try ControlClient(path: socketPath).send(.show)) { error in
            XCTAssertEqual(error as? ControlSocketError, .closedWithoutResponse(path: socketPath))
        }
    }

    func testPathTooLong() {
        let long = "/tmp/" + String(repeating: "s", count: 200)
        XCTAssertThrowsError(try ControlServer(path: long, handler: FakeHandler())) { error in
            XCTAssertEqual(error as? ControlSocketError, .pathTooLong(path: long))
        }
        XCTAssertThrowsError(try ControlClient(path: long).send(.show)) { error in
            XCTAssertEqual("\(error)", "socket path too long (at most 107 bytes): \(long)")
        }
    }

    func testSocketPathResolution() {
        XCTAssertEqual(resolveSocketPath(option: "/x.sock", environment: ["USERSWITCH_SOCKET": "/y.sock"]), "/x.sock")
        XCTAssertEqual(resolveSocketPath(option: nil, environment: ["USERSWITCH_SOCKET": "/y.sock"]), "/y.sock")
        XCTAssertEqual(resolveSocketPath(option: nil, environment: ["USERSWITCH_SOCKET": ""]), defaultSocketPath)
        XCTAssertEqual(resolveSocketPath(option: nil, environment: [:]), defaultSocketPath)
        XCTAssertEqual(defaultSocketPath, "/run/userswitch/userswitchd.sock")
    }

    func testConnectErrorMessages() {
        XCTAssertEqual(ControlSocketError.cannotConnect(path: "/p", errno: ECONNREFUSED).description,
                       "cannot connect to userswitchd at /p: Connection refused (is userswitchd running?)")
        XCTAssertEqual(ControlSocketError.cannotConnect(path: "/p", errno: EACCES).description,
                       "cannot connect to userswitchd at /p: Permission denied (the control socket is for root only)")
    }
}
