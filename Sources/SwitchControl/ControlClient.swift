// ControlClient: userswitchctl's side of the control socket (ControlSocket.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation

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
