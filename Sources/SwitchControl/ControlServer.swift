// ControlServer: userswitchd's side of the control socket (the protocol and its limits are
// described in ControlSocket.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation

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
        guard listen(fd, 128) == 0 else {
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

    /// One client connection in the event loop: reading its request line, writing the answer,
    /// or, after refusing an oversized request, draining what it still sends.
    private final class Connection {
        enum Phase { case reading, writing, draining }
        let fd: Int32
        var phase = Phase.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        /// After the answer: shut the write side and drain (an oversized request), or close.
        var drainAfterWrite = false
        var drained = 0
        var deadline: Deadline
        init(fd: Int32, deadline: Deadline) { self.fd = fd; self.deadline = deadline }
    }

    /// Connections served at once; more wait in the listen backlog.
    public static let maxConnections = 64

    /// The event loop: every connection is read and written without blocking, so a client that
    /// connects and sends nothing, or never reads its answer, holds up nobody but itself (until
    /// its deadline closes it). Requests are still handled one at a time, in the order their
    /// lines complete, on this thread.
    private func acceptLoop() {
        var connections: [Connection] = []
        defer {
            for c in connections { close(c.fd) }
            lock.withLock {
                close(listenFD)
                close(wakeRead)
                close(wakeWrite)
            }
        }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while !isStopped {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: listenFD, events: connections.count < Self.maxConnections ? Int16(POLLIN) : 0, revents: 0)]
            var timeout: Int32 = -1
            for c in connections {
                fds.append(pollfd(fd: c.fd, events: c.phase == .writing ? Int16(POLLOUT) : Int16(POLLIN), revents: 0))
                let ms = c.deadline.remainingMilliseconds
                timeout = timeout < 0 ? ms : min(timeout, ms)
            }
            let r = poll(&fds, nfds_t(fds.count), timeout)
            if r < 0 {
                if errno == EINTR { continue }
                log("control socket: poll failed: \(errorText(errno))")
                usleep(100_000)
                continue
            }
            if fds[0].revents != 0 || isStopped { break }
            // Connections first (their descriptors are fds[2...] in this order), then new ones.
            var keep: [Connection] = []
            for (k, c) in connections.enumerated() {
                if advance(c, ready: fds[k + 2].revents != 0, &chunk) { keep.append(c) } else { close(c.fd) }
            }
            connections = keep
            if fds[1].revents != 0 { acceptAll(into: &connections) }
        }
    }

    private func acceptAll(into connections: inout [Connection]) {
        while connections.count < Self.maxConnections {
            let conn = accept(listenFD, nil, nil)
            if conn < 0 {
                let e = errno
                if e == EINTR || e == ECONNABORTED { continue }
                if e == EAGAIN || e == EWOULDBLOCK { return }
                log("control socket: accept failed: \(errorText(e))")
                // EMFILE and friends: back off instead of spinning on a listener that stays readable.
                usleep(100_000)
                return
            }
            SocketIO.setCloseOnExec(conn)
            SocketIO.setNonBlocking(conn)
            let c = Connection(fd: conn, deadline: Deadline(after: connectionTimeout))
            if let uid = SocketIO.peerUID(conn), uid != 0, uid != geteuid() {
                log("control socket: refused a connection from uid \(uid)")
                answer(c, .failure("permission denied: uid \(uid) may not control userswitchd (root only)"))
            }
            connections.append(c)
        }
    }

    /// Moves one connection on as far as it can go without blocking; false when it is finished
    /// (answered, gone, or out of time) and is to be closed.
    private func advance(_ c: Connection, ready: Bool, _ chunk: inout [UInt8]) -> Bool {
        let expired = c.deadline.remainingMilliseconds == 0
        switch c.phase {
        case .reading:
            if ready {
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        let got = chunk[0..<n]
                        if let nl = got.firstIndex(of: UInt8(ascii: "\n")) {
                            c.input.append(contentsOf: got[..<nl])
                            if c.input.count > maxRequestBytes { refuseTooLarge(c) } else { handle(c) }
                            return flush(c)
                        }
                        c.input.append(contentsOf: got)
                        if c.input.count > maxRequestBytes { refuseTooLarge(c); return flush(c) }
                    } else if n == 0 {
                        // Connected and left without asking anything: a liveness probe.
                        if c.input.isEmpty { return false }
                        handle(c)  // a last line without its newline
                        return flush(c)
                    } else if errno == EAGAIN || errno == EWOULDBLOCK {
                        break
                    } else if errno != EINTR {
                        log("control socket: read failed: \(errorText(errno))")
                        return false
                    }
                }
            }
            if expired {
                answer(c, .failure("timed out after \(formatSeconds(connectionTimeout)) s waiting for a complete request line"))
                c.deadline = Deadline(after: 1)  // time to send the refusal
                return flush(c)
            }
            return true
        case .writing:
            if expired {
                log("control socket: a client did not read its answer in time; dropped")
                return false
            }
            return ready ? flush(c) : true
        case .draining:
            if expired { return false }
            guard ready else { return true }
            while c.drained < 64 << 20 {
                let n = chunk.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
                if n > 0 { c.drained += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
                if n < 0 && errno == EINTR { continue }
                return false
            }
            return false
        }
    }

    private func handle(_ c: Connection) {
        let response: ControlResponse
        do {
            let request = try ControlCodec.decodeRequest(c.input)
            response = handler.handle(request)
        } catch {
            response = .failure(error.message)
        }
        c.input = []
        answer(c, response)
    }

    /// The refusal of an oversized request; afterwards the rest is drained, so closing with
    /// unread data does not reset the connection before the client has read the refusal.
    private func refuseTooLarge(_ c: Connection) {
        c.input = []
        answer(c, .failure("request too large: more than \(maxRequestBytes) bytes without a newline"))
        c.drainAfterWrite = true
    }

    private func answer(_ c: Connection, _ response: ControlResponse) {
        c.output = ControlCodec.encode(response)
        c.written = 0
        c.phase = .writing
    }

    /// Writes what the socket takes now; false when the connection is done with.
    private func flush(_ c: Connection) -> Bool {
        while c.written < c.output.count {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_NOSIGNAL)) }
            if n >= 0 {
                c.written += n
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                return true
            } else if errno != EINTR {
                log("control socket: cannot send the response: \(errorText(errno))")
                return false
            }
        }
        c.output = []
        if c.drainAfterWrite {
            shutdown(c.fd, Int32(SHUT_WR))
            c.phase = .draining
            return true
        }
        return false
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
