// The control socket: a Unix stream socket between userswitchctl (client, ControlClient.swift) and
// userswitchd (server, ControlServer.swift); here the protocol's rules, its errors and the small
// socket toolkit both sides use.
//
// One request per connection: the client connects, writes one JSON line (a ControlRequest), reads
// one JSON line (a ControlResponse) and closes. See ControlCodec for the line format.
//
// The server runs one thread: an event loop over the listener and up to 64 connections at once
// (more wait in the listen backlog), each read and written without blocking, so a client that
// connects and sends nothing, sends half a line, or never reads its answer delays nobody else.
// Requests are handled one at a time, in the order their lines complete, so the handler never
// sees two at once; that keeps the daemon's configuration changes simple, and requests are small
// and quick. Each connection has a deadline (5 s by default) for its request line and for the
// write of its answer; past it the client gets a refusal or is dropped. Requests are limited to
// 1 MiB.
//
// Access: the socket file is mode 0600 (root only), and each connection's peer credentials
// (SO_PEERCRED) are checked as well, which also closes the short window between bind() and
// chmod() in which the file still has the umask's mode.
//
// Writes use send(MSG_NOSIGNAL): a client that goes away must not kill the daemon with SIGPIPE.
// Sockets are non-blocking and waited on with poll(), which is how the deadlines are kept and how
// stop() wakes the accept loop (through a pipe) without racing a close() against accept().

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation

/// Socket path in this order: the `--socket` option, the `USERSWITCH_SOCKET` environment
/// variable (when set and not empty), `defaultSocketPath`.
public func resolveSocketPath(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let option { return option }
    if let env = environment["USERSWITCH_SOCKET"], !env.isEmpty { return env }
    return defaultSocketPath
}

public enum ControlSocketError: Error, Equatable, CustomStringConvertible {
    /// sun_path holds 107 bytes and a terminating zero.
    case pathTooLong(path: String)
    /// The client could not connect (daemon not running, no permission).
    case cannotConnect(path: String, errno: Int32)
    /// The server found a live daemon on its socket path.
    case alreadyRunning(path: String)
    /// The server found something other than a socket at its path and will not delete it.
    case notASocket(path: String)
    /// A system call failed; `what` says what was being done (`bind /run/userswitch/x.sock`).
    case system(what: String, errno: Int32)
    case timedOut(path: String, seconds: Double)
    case closedWithoutResponse(path: String)
    case responseTooLarge(path: String, limit: Int)
    case protocolError(String)

    public var description: String {
        switch self {
        case .pathTooLong(let p):
            return "socket path too long (at most 107 bytes): \(p)"
        case .cannotConnect(let p, let e):
            var hint = ""
            if e == ENOENT || e == ECONNREFUSED { hint = " (is userswitchd running?)" }
            if e == EACCES || e == EPERM { hint = " (the control socket is for root only)" }
            return "cannot connect to userswitchd at \(p): \(errorText(e))\(hint)"
        case .alreadyRunning(let p):
            return "another userswitchd is already listening on \(p)"
        case .notASocket(let p):
            return "\(p) exists and is not a socket; refusing to replace it"
        case .system(let what, let e):
            return "\(what): \(errorText(e))"
        case .timedOut(let p, let s):
            return "no response from userswitchd at \(p) within \(formatSeconds(s)) s"
        case .closedWithoutResponse(let p):
            return "userswitchd at \(p) closed the connection without a response"
        case .responseTooLarge(let p, let limit):
            return "response from userswitchd at \(p) is larger than \(limit) bytes"
        case .protocolError(let m):
            return m
        }
    }
}

func errorText(_ e: Int32) -> String { String(cString: strerror(e)) }

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(s)
}

// MARK: - Small socket toolkit (internal)

/// A point in time on the monotonic clock, for per-connection deadlines.
struct Deadline {
    let nanoseconds: UInt64

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    init(after seconds: Double) {
        nanoseconds = Deadline.now() + UInt64(max(0, seconds) * 1e9)
    }

    /// Milliseconds left for poll(), rounded up; 0 when passed.
    var remainingMilliseconds: Int32 {
        let now = Deadline.now()
        guard nanoseconds > now else { return 0 }
        return Int32(min(UInt64(Int32.max), (nanoseconds - now + 999_999) / 1_000_000))
    }
}

enum SocketIO {
    /// Fills a sockaddr_un; nil when the path does not fit.
    static func address(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    static func newSocket() throws(ControlSocketError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw .system(what: "socket", errno: errno) }
        return fd
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setCloseOnExec(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFD)
        _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
    }

    static func connect(_ fd: Int32, _ addr: sockaddr_un) -> Int32 {
        var addr = addr
        while true {
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if r == 0 { return 0 }
            if errno == EINTR { continue }
            return errno
        }
    }

    /// Waits for `events` on `fd` until the deadline; false on timeout.
    static func wait(_ fd: Int32, _ events: Int16, until deadline: Deadline) -> Bool {
        while true {
            let ms = deadline.remainingMilliseconds
            if ms == 0 { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return true }
            if r == 0 { return false }
            if errno != EINTR { return true }  // let the following read/send report the error
        }
    }

    enum ReadOutcome: Equatable {
        /// A line without its newline; `complete` is false when it ended at EOF instead.
        case line([UInt8], complete: Bool)
        case eof
        case tooLarge
        case timedOut
        case failed(Int32)
    }

    /// Reads up to the first newline, at most `limit` bytes, before the deadline. Bytes after the
    /// newline are ignored: there is one message per connection.
    static func readLine(_ fd: Int32, limit: Int, until deadline: Deadline) -> ReadOutcome {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                let got = chunk[0..<n]
                if let nl = got.firstIndex(of: UInt8(ascii: "\n")) {
                    buffer.append(contentsOf: got[..<nl])
                    return buffer.count > limit ? .tooLarge : .line(buffer, complete: true)
                }
                buffer.append(contentsOf: got)
                if buffer.count > limit { return .tooLarge }
            } else if n == 0 {
                return buffer.isEmpty ? .eof : .line(buffer, complete: false)
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                if !wait(fd, Int16(POLLIN), until: deadline) { return .timedOut }
            } else if errno != EINTR {
                return .failed(errno)
            }
        }
    }

    /// Writes all of `bytes` before the deadline; nil on success, else the errno (ETIMEDOUT on timeout).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], until deadline: Deadline) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n >= 0 {
                offset += n
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                if !wait(fd, Int16(POLLOUT), until: deadline) { return ETIMEDOUT }
            } else if errno != EINTR {
                return errno
            }
        }
        return nil
    }

    /// Reads and discards input until EOF or the deadline, at most `limit` bytes. Used after
    /// refusing an oversized request, so that closing with unread data does not reset the
    /// connection before the client has read the refusal.
    static func drain(_ fd: Int32, limit: Int, until deadline: Deadline) {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var total = 0
        while total < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                total += n
            } else if n == 0 {
                return
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                if !wait(fd, Int16(POLLIN), until: deadline) { return }
            } else if errno != EINTR {
                return
            }
        }
    }

    /// The peer's uid (SO_PEERCRED); nil if the kernel does not say.
    static func peerUID(_ fd: Int32) -> UInt32? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: Glibc does not export it to Swift
        // (it sits behind _GNU_SOURCE), so its layout is spelled out here.
        struct PeerCredentials { var pid: Int32 = 0; var uid: UInt32 = 0; var gid: UInt32 = 0 }
        var cred = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0,
              Int(length) == MemoryLayout<PeerCredentials>.size else { return nil }
        return cred.uid
    }
}
