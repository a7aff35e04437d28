// Helpers shared by the SwitchControl tests: a recording fake handler, temporary socket
// directories, and a raw socket client that can send what ControlClient never would.

import Foundation
import XCTest
@testable import SwitchControl
import SwitchCore
#if canImport(Glibc)
import Glibc
#endif

/// Records requests and answers with `reply`.
final class FakeHandler: ControlHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var _requests: [ControlRequest] = []
    private let reply: @Sendable (ControlRequest) -> ControlResponse

    init(reply: @escaping @Sendable (ControlRequest) -> ControlResponse = { _ in .success() }) {
        self.reply = reply
    }

    var requests: [ControlRequest] { lock.withLock { _requests } }

    func handle(_ request: ControlRequest) -> ControlResponse {
        lock.withLock { _requests.append(request) }
        return reply(request)
    }
}

/// A fresh directory under /tmp, removed by the caller's `defer`.
func makeTemporaryDirectory() -> String {
    let path = "/tmp/usw-ctl-\(getpid())-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return st.st_mode
}

/// Connects to `path`, writes `bytes` (errors ignored: the server may refuse early), optionally
/// shuts down the write side, and reads until EOF or `timeout`.
func rawExchange(_ path: String, _ bytes: [UInt8], shutdownWrite: Bool = false, timeout: Double = 5) -> [UInt8] {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int(timeout.truncatingRemainder(dividingBy: 1) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard let addr = SocketIO.address(path), SocketIO.connect(fd, addr) == 0 else { return [] }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        offset += n
    }
    if shutdownWrite { shutdown(fd, Int32(SHUT_WR)) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// The response in a raw exchange's bytes.
func decodeRaw(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> ControlResponse? {
    do {
        return try ControlCodec.decodeResponse(bytes)
    } catch {
        XCTFail("cannot decode \(String(decoding: bytes, as: UTF8.self)): \(error)", file: file, line: line)
        return nil
    }
}

/// Sample data used by several tests.
enum Samples {
    static let mac1 = MACAddress(0x00, 0x16, 0x3e, 0x00, 0x00, 0x01)
    static let mac2 = MACAddress(0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xde)

    static let bridges = [
        BridgeInfo(name: "xenbr1", ageingSeconds: 300, fdbCapacity: 8192, ports: []),
        BridgeInfo(name: "xenbr0", ageingSeconds: 300, fdbCapacity: 8192, ports: [
            PortInfo(name: "vif1.0", number: 2, type: .system, vlan: .access(10), state: "up"),
            PortInfo(name: "peth0", number: 1, type: .system, vlan: .trunk(allowed: [10, 20, 21, 22], native: 5), state: "up"),
            PortInfo(name: "xenbr0", number: 3, type: .tap, vlan: .defaultAccess, state: "down"),
        ]),
    ]

    static let fdb = [
        FDBEntryInfo(port: "vif1.0", portNumber: 2, vlan: 10, mac: mac2, isStatic: false, ageSeconds: 12.341),
        FDBEntryInfo(port: "peth0", portNumber: 1, vlan: 20, mac: mac1, isStatic: false, ageSeconds: 0.5),
        FDBEntryInfo(port: "peth0", portNumber: 1, vlan: 10, mac: mac2, isStatic: true, ageSeconds: 0),
    ]

    static let stats = [
        BridgeStats(name: "xenbr0", ports: [
            PortStats(name: "peth0", state: "up", rxFrames: 1234, rxBytes: 567890, txFrames: 1200, txBytes: 560000, downEvents: 0),
            PortStats(name: "vif1.0", state: "down", rxFrames: 10, rxBytes: 640, txFrames: 0, txBytes: 0, downEvents: 2),
        ], drops: ["vlan-not-allowed": 12, "same-segment": 3, "link-local-destination": 0, "runt": 0], fdbEntries: 3),
    ]

    /// One of every command, for round trips.
    static let commands: [ControlCommand] = [
        .addBridge(name: "xenbr0", ageingSeconds: nil, fdbCapacity: nil),
        .addBridge(name: "xenbr1", ageingSeconds: 60, fdbCapacity: 1024),
        .delBridge(name: "xenbr0"),
        .addPort(bridge: "xenbr0", port: "vif1.0", type: .system, vlan: .access(10)),
        .addPort(bridge: "xenbr0", port: "peth0", type: .system, vlan: .trunk(allowed: [10, 20], native: 5)),
        .addPort(bridge: "xenbr0", port: "tap0", type: .tap, vlan: .trunk(allowed: [30], native: nil)),
        .delPort(bridge: "xenbr0", port: "vif1.0"),
        .show,
        .fdb(bridge: "xenbr0"),
        .fdbAdd(bridge: "xenbr0", mac: mac1, vlan: 10, port: "peth0"),
        .fdbDel(bridge: "xenbr0", mac: mac2, vlan: 1),
        .setAgeing(bridge: "xenbr0", seconds: 30),
        .stats(bridge: nil, port: nil),
        .stats(bridge: "xenbr0", port: nil),
        .stats(bridge: nil, port: "vif1.0"),
    ]
}
