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
