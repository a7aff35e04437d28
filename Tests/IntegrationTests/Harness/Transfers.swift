// Transfers between the lab's hosts: a TCP stream of random bytes checked end to end (sha256 of
// what was sent against what arrived), and UDP datagrams echoed back.

import Foundation
import XCTest

/// Sends `bytes` of seeded random data over TCP from guest `from` to a server on `address` in
/// guest `to`, and asserts that the receiver got every byte, in order (length and sha256 equal).
func assertTCPTransferArrivesIntact(_ lab: Lab, from: String, to: String, address: String, bytes: Int,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
    let server = """
    import hashlib, socket, sys
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 5201)); s.listen(1); s.settimeout(60)
    print("ready", flush=True)
    c, _ = s.accept(); c.settimeout(60)
    h = hashlib.sha256(); n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
    print(n, h.hexdigest(), flush=True)
    """
    let client = """
    import hashlib, random, socket, sys, time
    total = int(sys.argv[2]); r = random.Random(20261121); h = hashlib.sha256()
    for attempt in range(50):
        try:
            s = socket.create_connection((sys.argv[1], 5201), timeout=5); break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit("cannot connect")
    s.settimeout(60); sent = 0
    while sent < total:
        chunk = r.randbytes(min(1 << 20, total - sent))
        s.sendall(chunk); h.update(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
    print(sent, h.hexdigest(), flush=True)
    """
    let serverOut = lab.workDirectory.appendingPathComponent("server-\(from)-\(to).out")
    let serverProcess = try lab.startInNamespace(lab.guest(to), ["/usr/bin/python3", "-c", server, address], outputFile: serverOut)
    func serverOutput() -> String { (try? String(contentsOf: serverOut, encoding: .utf8)) ?? "" }
    XCTAssertTrue(eventually(timeout: 10) { serverOutput().contains("ready") }, "server did not start: \(serverOutput())",
                  file: file, line: line)
    let sent = try lab.runInNamespace(lab.guest(from), ["/usr/bin/python3", "-c", client, address, "\(bytes)"], timeout: 180)
    XCTAssertTrue(sent.succeeded, "client failed (timed out: \(sent.timedOut)): \(sent.output)", file: file, line: line)
    XCTAssertTrue(Command.wait(serverProcess, timeout: 30), "server did not finish", file: file, line: line)
    let received = serverOutput().split(separator: "\n").last.map(String.init) ?? ""
    let sentLine = sent.output.split(separator: "\n").last.map(String.init) ?? ""
    XCTAssertTrue(sentLine.hasPrefix("\(bytes) "), "client did not send \(bytes) bytes: \(sent.output)", file: file, line: line)
    XCTAssertEqual(received, sentLine, "bytes/sha256 differ between sender and receiver", file: file, line: line)
}

/// Sends `count` UDP datagrams of `size` bytes from guest `from` to an echo server on `address` in
/// guest `to`; returns how many came back intact.
func udpEchoes(_ lab: Lab, from: String, to: String, address: String, count: Int = 20, size: Int = 1000) throws -> Int {
    let server = """
    import socket, sys
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 5300)); s.settimeout(30)
    print("ready", flush=True)
    while True:
        try:
            b, a = s.recvfrom(65535)
        except socket.timeout:
            break
        s.sendto(b, a)
    """
    let client = """
    import os, socket, sys
    n, size = int(sys.argv[2]), int(sys.argv[3]); ok = 0
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
    for i in range(n):
        b = os.urandom(size); s.sendto(b, (sys.argv[1], 5300))
        try:
            if s.recv(65535) == b: ok += 1
        except socket.timeout:
            pass
    print(ok, flush=True)
    """
    let serverOut = lab.workDirectory.appendingPathComponent("udp-\(from)-\(to).out")
    _ = try lab.startInNamespace(lab.guest(to), ["/usr/bin/python3", "-c", server, address], outputFile: serverOut)
    _ = eventually(timeout: 10) { ((try? String(contentsOf: serverOut, encoding: .utf8)) ?? "").contains("ready") }
    let r = try lab.runInNamespace(lab.guest(from), ["/usr/bin/python3", "-c", client, address, "\(count)", "\(size)"], timeout: 60)
    return Int(r.output.split(separator: "\n").last.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "") ?? -1
}
