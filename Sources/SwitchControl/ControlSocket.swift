// The control socket: a Unix stream socket between userswitchctl (client) and userswitchd (server).
//
// One request per connection: the client connects, writes one JSON line (a ControlRequest), reads
// one JSON line (a ControlResponse) and closes. See ControlCodec for the line format.
//
// The server accepts on a thread of its own and serves connections one at a time, so the
// handler sees requests in order and never two at once; that keeps the daemon's configuration
// changes simple, and requests are small and quick. Each connection has a deadline (5 s by
// default) covering both the read of the request and the write of the answer, so a stuck or
// hostile client can delay others by at most that long. Requests are limited to 1 MiB.
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

private func errorText(_ e: Int32) -> String { String(cString: strerror(e)) }

private func formatSeconds(_ s: Double) -> String {
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

// MARK: - Server

/// Serves the control protocol on a Unix socket; see the note at the top of this file.
/// The accept thread keeps the server alive until `stop()` is called.
public final class ControlServer: @unchecked Sendable {
    public let path: String
    public let maxRequestBytes: Int
    /// Per-connection deadline in seconds (read the request, write the response).
    public let connectionTimeout: Double

    private let handler: any ControlHandler
    private let log: @Sendable (String) -> Void
    private let listenFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// Identity of the socket file we bound, so stop() never unlinks a successor's socket.
    private let boundDevice: UInt64
    private let boundInode: UInt64

    private let lock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    private var serverThread: pthread_t?

    /// Creates the parent directory (mode 0755) if missing, replaces a stale socket file, binds,
    /// sets mode 0600, listens, and starts accepting on a thread of its own.
    /// - Parameter log: told about connection-level problems (refused peers, I/O errors).
    public init(path: String,
                handler: any ControlHandler,
                maxRequestBytes: Int = ControlCodec.maxRequestBytes,
                connectionTimeout: Double = 5,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws(ControlSocketError) {
        self.path = path
        self.handler = handler
        self.maxRequestBytes = maxRequestBytes
        self.connectionTimeout = connectionTimeout
        self.log = log

        guard let addr = SocketIO.address(path) else { throw .pathTooLong(path: path) }
        try ControlServer.makeParentDirectory(of: path)
        try ControlServer.removeStaleSocket(at: path, addr)

        let fd = try SocketIO.newSocket()
        var bindAddr = addr
        let r = withUnsafePointer(to: &bindAddr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if r != 0 {
            let e = errno
            close(fd)
            if e == EADDRINUSE { throw .alreadyRunning(path: path) }
            throw .system(what: "bind \(path)", errno: e)
        }
        var st = stat()
        guard chmod(path, 0o600) == 0, lstat(path, &st) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw .system(what: "chmod 0600 \(path)", errno: e)
        }
        guard listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw .system(what: "listen \(path)", errno: e)
        }
        SocketIO.setNonBlocking(fd)

        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw .system(what: "pipe", errno: e)
        }
        for p in pipeFDs {
            SocketIO.setCloseOnExec(p)
            SocketIO.setNonBlocking(p)
        }
        listenFD = fd
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
        boundDevice = UInt64(st.st_dev)
        boundInode = UInt64(st.st_ino)

        let thread = Thread { [self] in
            self.lock.withLock { self.serverThread = pthread_self() }
            self.acceptLoop()
            self.finished.signal()
        }
        thread.name = "userswitch-control"
        thread.start()
    }

    /// Stops accepting, waits for a request in progress to finish, closes the listener and
    /// removes the socket file. Safe to call more than once, and from the handler itself (then
    /// the loop ends once the current request has been answered).
    public func stop() {
        // The wake byte is written under the lock, and the server thread closes the descriptors
        // under the same lock once it has seen `stopped`, so this write never hits a closed
        // (or reused) descriptor.
        let first: (thread: pthread_t?, ())? = lock.withLock {
            if stopped { return nil }
            stopped = true
            var one: UInt8 = 1
            _ = write(wakeWrite, &one, 1)
            return (serverThread, ())
        }
        guard let first else { return }
        let onServerThread = first.thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
        if !onServerThread { finished.wait() }
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == boundDevice, UInt64(st.st_ino) == boundInode {
            unlink(path)
        }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func acceptLoop() {
        defer {
            lock.withLock {
                close(listenFD)
                close(wakeRead)
                close(wakeWrite)
            }
        }
        var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        while !isStopped {
            fds[0].revents = 0
            fds[1].revents = 0
            let r = poll(&fds, 2, -1)
            if r < 0 {
                if errno == EINTR { continue }
                log("control socket: poll failed: \(errorText(errno))")
                usleep(100_000)
                continue
            }
            if fds[1].revents != 0 || isStopped { break }
            guard fds[0].revents != 0 else { continue }
            let conn = accept(listenFD, nil, nil)
            if conn < 0 {
                let e = errno
                if e == EINTR || e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED { continue }
                log("control socket: accept failed: \(errorText(e))")
                // EMFILE and friends: back off instead of spinning on a listener that stays readable.
                usleep(100_000)
                continue
            }
            SocketIO.setCloseOnExec(conn)
            SocketIO.setNonBlocking(conn)
            serve(conn)
            close(conn)
        }
    }

    private func serve(_ conn: Int32) {
        let deadline = Deadline(after: connectionTimeout)
        if let uid = SocketIO.peerUID(conn), uid != 0, uid != geteuid() {
            log("control socket: refused a connection from uid \(uid)")
            respond(conn, .failure("permission denied: uid \(uid) may not control userswitchd (root only)"), deadline)
            return
        }
        let response: ControlResponse
        switch SocketIO.readLine(conn, limit: maxRequestBytes, until: deadline) {
        case .line(let bytes, _):
            do {
                let request = try ControlCodec.decodeRequest(bytes)
                response = handler.handle(request)
            } catch {
                response = .failure(error.message)
            }
        case .eof:
            return  // connected and left without asking anything (a liveness probe)
        case .tooLarge:
            respond(conn, .failure("request too large: more than \(maxRequestBytes) bytes without a newline"), deadline)
            shutdown(conn, Int32(SHUT_WR))
            SocketIO.drain(conn, limit: 64 << 20, until: deadline)
            return
        case .timedOut:
            response = .failure("timed out after \(formatSeconds(connectionTimeout)) s waiting for a complete request line")
        case .failed(let e):
            log("control socket: read failed: \(errorText(e))")
            return
        }
        respond(conn, response, deadline)
    }

    private func respond(_ conn: Int32, _ response: ControlResponse, _ deadline: Deadline) {
        if let e = SocketIO.writeAll(conn, ControlCodec.encode(response), until: deadline) {
            log("control socket: cannot send the response: \(errorText(e))")
        }
    }

    private static func makeParentDirectory(of path: String) throws(ControlSocketError) {
        let parent = (path as NSString).deletingLastPathComponent
        if parent.isEmpty { return }
        var st = stat()
        if stat(parent, &st) == 0 {
            if st.st_mode & S_IFMT != S_IFDIR { throw .system(what: "socket directory \(parent)", errno: ENOTDIR) }
            return
        }
        try makeParentDirectory(of: parent)
        if mkdir(parent, 0o755) != 0 && errno != EEXIST {
            throw .system(what: "cannot create directory \(parent)", errno: errno)
        }
        // mkdir applies the umask; the directory must be 0755 whatever the umask is.
        _ = chmod(parent, 0o755)
    }

    /// Removes a socket file nobody listens on (left by a daemon that crashed); refuses to touch
    /// a live socket or anything that is not a socket.
    private static func removeStaleSocket(at path: String, _ addr: sockaddr_un) throws(ControlSocketError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path: path) }
        let probe = try SocketIO.newSocket()
        defer { close(probe) }
        let e = SocketIO.connect(probe, addr)
        if e == 0 { throw .alreadyRunning(path: path) }
        guard e == ECONNREFUSED else { throw .system(what: "probe existing socket \(path)", errno: e) }
        if unlink(path) != 0 && errno != ENOENT {
            throw .system(what: "remove stale socket \(path)", errno: errno)
        }
    }
}

// MARK: - Client

/// Sends one request to userswitchd and returns its response.
public struct ControlClient: Sendable {
    public var path: String
    /// Seconds to wait for the whole exchange; the daemon may take a while (e.g. attaching a port).
    public var timeout: Double
    /// Largest response accepted (an FDB listing of a big bridge is a few MiB).
    public var maxResponseBytes: Int

    public init(path: String, timeout: Double = 30, maxResponseBytes: Int = 256 << 20) {
        self.path = path
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
    }

    /// Connects, sends `request`, reads the response. A daemon-side failure is a response with
    /// `ok == false`, not a thrown error; thrown errors are transport or protocol problems.
    public func send(_ request: ControlRequest) throws(ControlSocketError) -> ControlResponse {
        let line: [UInt8]
        do { line = try ControlCodec.encode(request) } catch { throw .protocolError(error.message) }
        guard let addr = SocketIO.address(path) else { throw .pathTooLong(path: path) }
        let fd = try SocketIO.newSocket()
        defer { close(fd) }
        let deadline = Deadline(after: timeout)
        // A blocking connect waits while the daemon's backlog is full; SO_SNDTIMEO bounds that wait.
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let e = SocketIO.connect(fd, addr)
        if e == EAGAIN || e == EINPROGRESS { throw .timedOut(path: path, seconds: timeout) }
        if e != 0 { throw .cannotConnect(path: path, errno: e) }
        SocketIO.setNonBlocking(fd)
        if let e = SocketIO.writeAll(fd, line, until: deadline) {
            if e == ETIMEDOUT { throw .timedOut(path: path, seconds: timeout) }
            // EPIPE/ECONNRESET: the daemon refused early (request too large); its answer may
            // still be readable, so fall through to reading it.
            if e != EPIPE && e != ECONNRESET { throw .system(what: "send to \(path)", errno: e) }
        }
        switch SocketIO.readLine(fd, limit: maxResponseBytes, until: deadline) {
        case .line(let bytes, _):
            do { return try ControlCodec.decodeResponse(bytes) } catch { throw .protocolError(error.message) }
        case .eof:
            throw .closedWithoutResponse(path: path)
        case .tooLarge:
            throw .responseTooLarge(path: path, limit: maxResponseBytes)
        case .timedOut:
            throw .timedOut(path: path, seconds: timeout)
        case .failed(let e):
            if e == ECONNRESET { throw .closedWithoutResponse(path: path) }
            throw .system(what: "receive from \(path)", errno: e)
        }
    }

    /// Convenience: wraps `command` in a request of the current protocol version.
    public func send(_ command: ControlCommand) throws(ControlSocketError) -> ControlResponse {
        try send(ControlRequest(command))
    }
}
