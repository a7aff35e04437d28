// The real daemon's control socket under abuse: a non-root peer is refused twice over (the socket
// file's mode, and SO_PEERCRED when the file's mode has been opened up), idle and half-finished
// connections hold up nobody, and the daemon keeps serving through all of it.

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ControlSocketAbuseTests: XCTestCase {
    /// Runs `arguments` as uid/gid 65534 (nobody) with no supplementary groups.
    private func asNobody(_ arguments: [String]) throws -> CommandResult {
        try Command.run("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups"] + arguments, timeout: 20)
    }

    func testNonRootPeersAreRefusedAndTheDaemonGoesOn() throws {
        let dir = try requireIntegrationPrerequisites()
        try requireTool("setpriv", package: "util-linux")
        let lab = try Lab(binDirectory: dir)
        defer { lab.tearDown() }
        try lab.startDaemon()
        // The lab's directory must be searchable by nobody for it to reach the socket at all.
        chmod(lab.workDirectory.path, 0o755)

        // 1. The socket file is 0600: userswitchctl as nobody cannot connect, and says why.
        let ctl = lab.binDirectory.appendingPathComponent("userswitchctl").path
        let denied = try asNobody([ctl, "--socket", lab.socketPath, "show"])
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.output.contains("the control socket is for root only"), denied.output)

        // 2. With the file opened up, the daemon itself refuses the peer (SO_PEERCRED).
        XCTAssertEqual(chmod(lab.socketPath, 0o666), 0)
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(sys.argv[1])
        try:
            s.sendall(b'{"version":1,"command":{"show":{}}}\\n')
        except BrokenPipeError:
            pass  # refused before the request was read: the refusal is waiting to be read
        data = b''
        while not data.endswith(b'\\n'):
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        print(data.decode())
        """
        // The refusal comes at once, before the request is read (the peer is known on accept).
        let refused = try asNobody(["/usr/bin/python3", "-c", script, lab.socketPath])
        XCTAssertEqual(refused.status, 0, refused.output)
        XCTAssertTrue(refused.output.contains("permission denied: uid 65534 may not control userswitchd (root only)"), refused.output)
        XCTAssertFalse(refused.output.contains("\"ok\":true"), refused.output)

        // 3. Idle and half-sent connections beside: root is still answered at once.
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for k in 0..<20 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let bytes = Array(lab.socketPath.utf8)
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            XCTAssertEqual(r, 0)
            if k % 2 == 1 { _ = Array(#"{"version":1,"#.utf8).withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) } }
            idle.append(fd)
        }
        let start = Date()
        let show = try lab.ctl(["show"], timeout: 3)
        XCTAssertTrue(show.succeeded, show.output)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3, "show waited behind idle connections")
        // Garbage and an oversized line get their errors; the daemon is still there afterwards.
        let garbage = try Command.run("/usr/bin/python3", ["-c", """
        import socket, sys
        for payload in [b'not json\\n', b'x' * (2 << 20)]:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(sys.argv[1])
            try:
                s.sendall(payload)
            except OSError:
                pass
            print(s.recv(65536).decode().strip())
        """, lab.socketPath], timeout: 20)
        XCTAssertTrue(garbage.output.contains("\"ok\":false"), garbage.output)
        XCTAssertTrue(garbage.output.contains("request too large"), garbage.output)
        XCTAssertTrue(try lab.ctl(["show"]).succeeded)
    }
}
