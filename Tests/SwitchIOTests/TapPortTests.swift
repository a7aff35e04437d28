// TapPort: a real TAP device, in both I/O modes (io_uring and the read()/write() fallback).
// Root only (skips otherwise). The device is given no address in the root namespace: frames are
// exchanged with an AF_PACKET socket bound to it, with ethertype 0x88B5 (local experimental) that
// no stack answers; the ARP/ping test moves the device into a network namespace of its own. Every
// namespace and process is removed on every path.

import XCTest
import Foundation
@testable import SwitchIO
import SwitchCore
import SwitchTesting
#if canImport(Glibc)
import Glibc
#endif

/// `struct sockaddr_ll` (netpacket/packet.h, which Swift's Glibc module does not export).
private struct LinkLayerAddress {
    var family: UInt16 = UInt16(AF_PACKET)
    var proto: UInt16 = 0
    var ifIndex: Int32 = 0
    var hardwareType: UInt16 = 0
    var packetType: UInt8 = 0
    var addressLength: UInt8 = 0
    var address: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
}

/// A raw AF_PACKET socket bound to one interface, seeing every protocol.
private final class RawSocket {
    let fd: Int32
    init(ifIndex: Int32) throws {
        let all = UInt16(0x0003).bigEndian  // ETH_P_ALL
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(all))
        guard fd >= 0 else { throw SystemError("socket(AF_PACKET)", errno: errno) }
        var address = LinkLayerAddress(proto: all, ifIndex: ifIndex)
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<LinkLayerAddress>.size))
            }
        }
        guard r == 0 else { let e = errno; close(fd); throw SystemError("bind AF_PACKET", errno: e) }
    }
    deinit { close(fd) }

    /// Asks for PACKET_AUXDATA, so that `receive` can put back the 802.1Q tag the kernel strips.
    func enableAuxData() {
        var one: Int32 = 1
        _ = setsockopt(fd, 263 /* SOL_PACKET */, 8 /* PACKET_AUXDATA */, &one, socklen_t(4))
    }

    func send(_ frame: [UInt8]) -> Int { frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }

    /// The first received frame that `match` accepts, within `seconds`.
    func receive(within seconds: Double, where match: ([UInt8]) -> Bool) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 70000)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            while true {
                var control = [UInt64](repeating: 0, count: 16)
                var tci: UInt16? = nil
                let n = buffer.withUnsafeMutableBytes { data in
                    control.withUnsafeMutableBytes { cmsg in
                        var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                        return withUnsafeMutablePointer(to: &iov) { iovp in
                            var msg = msghdr(msg_name: nil, msg_namelen: 0, msg_iov: iovp, msg_iovlen: 1,
                                             msg_control: cmsg.baseAddress, msg_controllen: cmsg.count, msg_flags: 0)
                            let n = recvmsg(fd, &msg, 0)
                            // One cmsghdr {len: size_t, level: int, type: int} then struct
                            // tpacket_auxdata {status, len, snaplen: u32; mac, net, vlan_tci, vlan_tpid: u16}.
                            if n > 0 && msg.msg_controllen >= 16 + 20,
                               cmsg.load(fromByteOffset: 8, as: Int32.self) == 263,
                               cmsg.load(fromByteOffset: 12, as: Int32.self) == 8,
                               cmsg.load(fromByteOffset: 16, as: UInt32.self) & 0x10 != 0 /* TP_STATUS_VLAN_VALID */ {
                                tci = cmsg.load(fromByteOffset: 16 + 16, as: UInt16.self)
                            }
                            return n
                        }
                    }
                }
                if n <= 0 { break }
                var frame = Array(buffer[0..<n])
                if let tci { frame.insert(contentsOf: [0x81, 0x00, UInt8(tci >> 8), UInt8(tci & 0xff)], at: 12) }
                if match(frame) { return frame }
            }
        }
        return nil
    }
}

final class TapPortTests: XCTestCase {
    static let tapMAC = MACAddress(0x02, 0x75, 0x73, 0x00, 0x00, 0x01)
    static let peerMAC: [UInt8] = [0x02, 0x75, 0x73, 0x00, 0x00, 0xee]
    static let experimental: UInt16 = 0x88b5

    static func frame(dst: [UInt8], src: [UInt8], tag: UInt16? = nil, type: UInt16, payload: [UInt8]) -> [UInt8] {
        var f = dst + src
        if let tag { f += [0x81, 0x00, UInt8(tag >> 8), UInt8(tag & 0xff)] }
        return f + [UInt8(type >> 8), UInt8(type & 0xff)] + payload
    }

    /// Ethertype after any 802.1Q tag.
    static func etherType(_ f: [UInt8]) -> UInt16 {
        let outer = UInt16(f[12]) << 8 | UInt16(f[13])
        return outer == 0x8100 && f.count >= 18 ? UInt16(f[16]) << 8 | UInt16(f[17]) : outer
    }

    private func uniqueName(_ tag: String) -> String { "ut\(getpid() % 1_000_000)\(tag)" }

    /// Frames received by `receive(on:...)` but not asked for yet.
    private var backlog: [([UInt8], VirtioNetHeader)] = []

    /// Polls the port's descriptor and receives until a frame `match` accepts arrives; frames
    /// received before it are dropped, frames received after it in the same batch are kept for the
    /// next call.
    private func receive(on port: TapPort, batch: PacketBatch, within seconds: Double,
                         where match: ([UInt8], VirtioNetHeader) -> Bool) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            while !backlog.isEmpty {
                let (f, h) = backlog.removeFirst()
                if match(f, h) { return f }
            }
            guard Date() < deadline else { return nil }
            var pfd = pollfd(fd: port.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let n = port.receive(into: batch)
            for i in 0..<n {
                backlog.append((Array(UnsafeRawBufferPointer(start: batch.frames[i], count: Int(batch.lengths[i]))),
                                batch.vnet[i]))
            }
            port.releaseReceived()
        }
    }

    private func send(_ frames: [[UInt8]], tcis: [UInt16], on port: TapPort) -> Int {
        let batch = PacketBatch(capacity: 32)
        var storage = frames.map { $0 }
        for i in storage.indices {
            storage[i].withUnsafeMutableBytes { _ = batch.append($0.baseAddress!, length: $0.count) }
            batch.info[i].tagLength = Self.etherType(frames[i]) != (UInt16(frames[i][12]) << 8 | UInt16(frames[i][13])) ? 4 : 0
        }
        let entries = tcis.enumerated().map { EgressEntry(frame: UInt16($0.offset), tci: $0.element) }
        // The frames must stay alive until the copy: `storage` outlives transmit.
        let statuses = withExtendedLifetime(storage) { port.transmit(batch, entries) }
        port.flush()
        return statuses.filter { $0 == .queued }.count
    }

    // MARK: device lifetime

    func testDeviceExistsWhileOpenAndIsGoneAfterClose() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root to create a TAP device")
        for useIOUring in [true, false] {
            let name = uniqueName(useIOUring ? "u" : "f")
            let port = try TapPort(name: name, macAddress: Self.tapMAC, mtu: 9000, useIOUring: useIOUring)
            defer { port.close() }
            XCTAssertEqual(port.usesIOUring, useIOUring, "io_uring available here: \(String(describing: port.ioUringUnavailableReason))")
            XCTAssertEqual(port.name, name)
            XCTAssertEqual(port.macAddress, Self.tapMAC)
            XCTAssertEqual(LinkMonitor.ifIndex(of: name), port.ifIndex)
            let mtu = try String(contentsOfFile: "/sys/class/net/\(name)/mtu", encoding: .utf8)
            XCTAssertEqual(mtu.trimmingCharacters(in: .whitespacesAndNewlines), "9000")
            let flags = try String(contentsOfFile: "/sys/class/net/\(name)/flags", encoding: .utf8)
            XCTAssertEqual((UInt32(flags.dropFirst(2).trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) ?? 0) & 1, 1,
                           "link is up")
            // Offloads were accepted: the host stack may hand the tap checksum-partial/GSO frames.
            let features = LinkTestShell.run(["ethtool", "-k", name]).output
            XCTAssertTrue(features.contains("tcp-segmentation-offload: on"), features)
            XCTAssertGreaterThanOrEqual(port.fileDescriptor, 0)

            port.close()
            XCTAssertNil(LinkMonitor.ifIndex(of: name), "device removed by close()")
            XCTAssertEqual(port.fileDescriptor, -1)
            port.close()  // idempotent
            let batch = PacketBatch(capacity: 4)
            XCTAssertEqual(port.receive(into: batch), 0)
        }
    }

    func testKernelPicksNameFromPatternAndErrorsAreNamed() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root to create a TAP device")
        let port = try TapPort(name: "ut\(getpid() % 100000)p%d")
        XCTAssertTrue(port.name.hasPrefix("ut\(getpid() % 100000)p"), port.name)
        XCTAssertNotNil(LinkMonitor.ifIndex(of: port.name))
        // The same name twice: the second TUNSETIFF finds a device in use.
        XCTAssertThrowsError(try TapPort(name: port.name)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("TUNSETIFF"), text)
        }
        XCTAssertThrowsError(try TapPort(name: "averyveryverylongname")) { error in
            XCTAssertTrue(String(describing: error).contains("longer than 15"))
        }
        port.close()
    }

    func testWithoutPrivilegeTheErrorNamesTheStep() throws {
        // As root (make test), give up CAP_NET_ADMIN for this one call: an effective uid other than
        // 0 clears the effective capabilities, and going back to 0 restores them.
        if LinkTestShell.isRoot {
            XCTAssertEqual(seteuid(65534), 0, "cannot drop privileges")
        }
        defer { if LinkTestShell.isRoot { XCTAssertEqual(seteuid(0), 0, "cannot take privileges back") } }
        XCTAssertThrowsError(try TapPort(name: "ut\(getpid() % 100000)x")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("TUNSETIFF") || text.contains("/dev/net/tun"), text)
            XCTAssertEqual((error as? SystemError)?.errno == EPERM || (error as? SystemError)?.errno == EACCES, true, text)
        }
    }

    // MARK: frames both ways through AF_PACKET

    func testFramesBothWaysThroughAFPacket() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root to create a TAP device")
        for useIOUring in [true, false] {
            let name = uniqueName(useIOUring ? "U" : "F")
            let port = try TapPort(name: name, macAddress: Self.tapMAC, useIOUring: useIOUring)
            defer { port.close() }
            LinkTestShell.run(["sysctl", "-qw", "net.ipv6.conf.\(name).disable_ipv6=1"])
            let raw = try RawSocket(ifIndex: port.ifIndex)
            let batch = PacketBatch(capacity: 16)

            // Switch -> host: frames written to the TAP arrive as received on the interface.
            let out1 = Self.frame(dst: Self.peerMAC, src: Self.tapMAC.bytes, type: Self.experimental,
                                  payload: Array("to host \(useIOUring) one".utf8) + Array(repeating: 1, count: 30))
            let out2 = Self.frame(dst: Self.peerMAC, src: Self.tapMAC.bytes, type: Self.experimental,
                                  payload: Array("to host \(useIOUring) two".utf8) + Array(repeating: 2, count: 30))
            XCTAssertEqual(send([out1, out2], tcis: [0, 0], on: port), 2)
            XCTAssertEqual(raw.receive(within: 2) { $0 == out1 }, out1)
            XCTAssertEqual(raw.receive(within: 2) { $0 == out2 }, out2)
            // Both writes completed without an error (they arrived, above).
            XCTAssertEqual(port.events.txSendErrors, 0)

            // Host -> switch: frames the kernel transmits on the interface are read from the TAP,
            // 802.1Q tags inline, with a plain virtio_net_hdr.
            let in1 = Self.frame(dst: Self.tapMAC.bytes, src: Self.peerMAC, type: Self.experimental,
                                 payload: Array("from host \(useIOUring)".utf8) + Array(repeating: 3, count: 40))
            let in2 = Self.frame(dst: Self.tapMAC.bytes, src: Self.peerMAC, tag: 0x2000 | 42, type: Self.experimental,
                                 payload: Array("tagged from host".utf8) + Array(repeating: 4, count: 40))
            XCTAssertEqual(raw.send(in1), in1.count)
            XCTAssertEqual(raw.send(in2), in2.count)
            var headers: [VirtioNetHeader] = []
            let got1 = receive(on: port, batch: batch, within: 2) { f, h in headers.append(h); return f == in1 }
            XCTAssertEqual(got1, in1)
            let got2 = receive(on: port, batch: batch, within: 2) { f, h in headers.append(h); return f == in2 }
            XCTAssertEqual(got2, in2, "the tag comes back inline")
            XCTAssertTrue(headers.allSatisfy { $0.gsoType == VirtioNetHeader.gsoNone })

            // Many frames at once: the batch fills up to its capacity and nothing is lost.
            let burst = (0..<40).map { i in
                Self.frame(dst: Self.tapMAC.bytes, src: Self.peerMAC, type: Self.experimental,
                           payload: [UInt8(i)] + Array(repeating: 5, count: 50))
            }
            for f in burst { XCTAssertEqual(raw.send(f), f.count) }
            var seen: [[UInt8]] = []
            let deadline = Date().addingTimeInterval(3)
            while seen.count < burst.count && Date() < deadline {
                var pfd = pollfd(fd: port.fileDescriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let n = port.receive(into: batch)
                XCTAssertLessThanOrEqual(n, batch.capacity)
                for i in 0..<n {
                    let f = Array(UnsafeRawBufferPointer(start: batch.frames[i], count: Int(batch.lengths[i])))
                    if Self.etherType(f) == Self.experimental && f.count == burst[0].count { seen.append(f) }
                }
                port.releaseReceived()
            }
            XCTAssertEqual(seen, burst, "all frames, in order")
            XCTAssertEqual(port.events.rxErrors, 0)
        }
    }

    func testTransmitPushesAndPopsTagsAndCountsDrops() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root to create a TAP device")
        let name = uniqueName("v")
        let port = try TapPort(name: name, macAddress: Self.tapMAC, transmitBuffers: 4)
        defer { port.close() }
        LinkTestShell.run(["sysctl", "-qw", "net.ipv6.conf.\(name).disable_ipv6=1"])
        // The kernel strips the pushed tag into metadata on receive; PACKET_AUXDATA gives it back.
        let raw = try RawSocket(ifIndex: port.ifIndex)
        raw.enableAuxData()
        let plain = Self.frame(dst: Self.peerMAC, src: Self.tapMAC.bytes, type: Self.experimental,
                               payload: Array("tag me".utf8) + Array(repeating: 7, count: 40))
        let tagged = Self.frame(dst: Self.peerMAC, src: Self.tapMAC.bytes, tag: 0xa000 | 77, type: Self.experimental,
                                payload: Array("tag me".utf8) + Array(repeating: 7, count: 40))
        XCTAssertEqual(send([plain], tcis: [0xa000 | 77], on: port), 1)
        XCTAssertEqual(raw.receive(within: 2) { Self.etherType($0) == Self.experimental }, tagged)
        // And popped again.
        XCTAssertEqual(send([tagged], tcis: [0], on: port), 1)
        XCTAssertEqual(raw.receive(within: 2) { Self.etherType($0) == Self.experimental }, plain)

        // More frames than transmit buffers between flushes: the rest is dropped and counted.
        let batch = PacketBatch(capacity: 8)
        var bytes = plain
        bytes.withUnsafeMutableBytes { _ = batch.append($0.baseAddress!, length: $0.count) }
        let entries = [EgressEntry](repeating: EgressEntry(frame: 0, tci: 0), count: 6)
        let statuses = withExtendedLifetime(bytes) { port.transmit(batch, entries) }
        XCTAssertEqual(statuses.filter { $0 == .queued }.count, 4)
        XCTAssertEqual(statuses.filter { $0 == .ringFull }.count, 2)
        port.flush()
        XCTAssertEqual(withExtendedLifetime(bytes) { port.transmit(batch, Array(entries.prefix(1))) }, [.queued],
                       "flush gave the buffers back")
        port.flush()
    }

    // MARK: a host stack in a namespace talks ARP and ICMP to the port

    func testARPAndPingFromNamespace() throws {
        try XCTSkipUnless(LinkTestShell.isRoot, "needs root for network namespaces")
        for useIOUring in [true, false] {
            let tag = useIOUring ? "u" : "f"
            let namespace = "utns\(getpid())\(tag)"
            let name = uniqueName("n" + tag)
            let subnet = "10.199.\(getpid() % 250)"
            var ping: Process? = nil
            defer {
                if let ping, ping.isRunning { kill(ping.processIdentifier, SIGKILL); ping.waitUntilExit() }
                LinkTestShell.run(["ip", "netns", "del", namespace])
            }
            LinkTestShell.must(["ip", "netns", "add", namespace])
            LinkTestShell.must(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            LinkTestShell.must(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])

            let port = try TapPort(name: name, macAddress: Self.tapMAC, useIOUring: useIOUring)
            defer { port.close() }
            // The descriptor keeps working after the device moves (a move puts the link down).
            LinkTestShell.must(["ip", "link", "set", name, "netns", namespace])
            XCTAssertNil(LinkMonitor.ifIndex(of: name))
            LinkTestShell.must(["ip", "-n", namespace, "link", "set", name, "up"])
            LinkTestShell.must(["ip", "-n", namespace, "addr", "add", "\(subnet).1/24", "dev", name])

            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["ip", "netns", "exec", namespace, "ping", "-n", "-c", "20", "-i", "0.2", "-W", "1", "\(subnet).2"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            ping = p

            let batch = PacketBatch(capacity: 16)
            let target: [UInt8] = [10, 199, UInt8(getpid() % 250), 2]
            let sender: [UInt8] = [10, 199, UInt8(getpid() % 250), 1]
            let request = try XCTUnwrap(receive(on: port, batch: batch, within: 3) { f, _ in
                Self.etherType(f) == 0x0806 && f.count >= 42 && f[20] == 0 && f[21] == 1
            }, "ARP request from the namespace")
            XCTAssertEqual(Array(request[0..<6]), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            XCTAssertEqual(Array(request[6..<12]), Self.tapMAC.bytes)
            XCTAssertEqual(Array(request[14..<22]), [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01])
            XCTAssertEqual(Array(request[22..<28]), Self.tapMAC.bytes, "sender MAC")
            XCTAssertEqual(Array(request[28..<32]), sender, "sender IP")
            XCTAssertEqual(Array(request[38..<42]), target, "target IP")

            // Answer it through the port; the namespace then sends its ICMP echo to that MAC.
            let reply = Self.frame(dst: Self.tapMAC.bytes, src: Self.peerMAC, type: 0x0806,
                                   payload: [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02] + Self.peerMAC + target
                                       + Self.tapMAC.bytes + sender + Array(repeating: 0, count: 18))
            XCTAssertEqual(send([reply], tcis: [0], on: port), 1)
            let echo = try XCTUnwrap(receive(on: port, batch: batch, within: 3) { f, _ in
                Self.etherType(f) == 0x0800 && f.count >= 34 && f[23] == 1 && Array(f[0..<6]) == Self.peerMAC
            }, "ICMP echo request to the MAC the port answered with")
            XCTAssertEqual(Array(echo[26..<30]), sender)
            XCTAssertEqual(Array(echo[30..<34]), target)
            XCTAssertEqual(echo[34], 8, "echo request")

            // A TCP SYN from the namespace's stack leaves with its checksum for us to fill
            // (CHECKSUM_PARTIAL): the offload header says so, proof that TUNSETOFFLOAD took.
            let connect = Process()
            connect.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            connect.arguments = ["ip", "netns", "exec", namespace, "python3", "-c",
                                 "import socket\ntry: socket.create_connection(('\(subnet).2', 7), timeout=0.5)\nexcept OSError: pass"]
            connect.standardOutput = FileHandle.nullDevice
            connect.standardError = FileHandle.nullDevice
            try connect.run()
            // `ip netns exec` execs python3 itself, so this pid is the process in the namespace.
            defer { if connect.isRunning { kill(connect.processIdentifier, SIGKILL) }; connect.waitUntilExit() }
            var synHeader = VirtioNetHeader.none
            let syn = try XCTUnwrap(receive(on: port, batch: batch, within: 3) { f, h in
                synHeader = h
                return Self.etherType(f) == 0x0800 && f.count >= 54 && f[23] == 6 && f[47] & 0x02 != 0
            }, "TCP SYN from the namespace")
            XCTAssertEqual(Array(syn[36..<38]), [0, 7], "destination port")
            XCTAssertEqual(synHeader.flags & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum)
            XCTAssertEqual(synHeader.csumStart, 34, "checksum covers from the TCP header")
            XCTAssertEqual(synHeader.csumOffset, 16, "TCP checksum field")
            connect.waitUntilExit()  // gives up after half a second

            // The namespace goes away with the device in it: the port notices and does not spin.
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            LinkTestShell.must(["ip", "netns", "del", namespace])
            let deadline = Date().addingTimeInterval(3)
            var receives = 0
            while !port.deviceGone && Date() < deadline {
                var pfd = pollfd(fd: port.fileDescriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 100)
                _ = port.receive(into: batch)
                port.releaseReceived()
                receives += 1
            }
            XCTAssertTrue(port.deviceGone, "after \(receives) receives")
            port.close()
        }
    }
}
