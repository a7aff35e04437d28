// Crafting and capturing Ethernet frames inside a guest namespace, from Swift.
//
// A raw AF_PACKET socket belongs to the network namespace it was created in, whatever thread uses
// it later. So the harness moves only the calling thread into the guest's namespace with
// setns(CLONE_NEWNET), creates and binds the socket there, and moves the thread straight back.
// The Glibc module does not export setns, sockaddr_ll or tpacket_auxdata (they need _GNU_SOURCE
// and <linux/if_packet.h>), so setns is looked up with dlsym and the two structures are written
// and read by their documented byte layout (x86_64 and aarch64 alike).
//
// Receiving: the kernel strips the 802.1Q tag of a received frame into skb metadata before packet
// sockets see it; with PACKET_AUXDATA it comes back in tpacket_auxdata.tp_vlan_tci (with
// TP_STATUS_VLAN_VALID). A tag still inline (ethertype 0x8100 in the data) is decoded as well.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

private let ethPAll: UInt16 = 0x0003            // ETH_P_ALL
private let solPacket: Int32 = 263              // SOL_PACKET
private let packetAuxdata: Int32 = 8            // PACKET_AUXDATA
private let packetIgnoreOutgoing: Int32 = 23    // PACKET_IGNORE_OUTGOING (Linux 4.20)
private let packetOutgoing: UInt8 = 4           // PACKET_OUTGOING (sll_pkttype)
private let tpStatusVLANValid: UInt32 = 1 << 4  // TP_STATUS_VLAN_VALID
private let cloneNewNet: Int32 = 0x4000_0000    // CLONE_NEWNET

private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
private let setnsFunction: SetNS = {
    guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "setns") else {
        fatalError("setns not found in libc")
    }
    return unsafeBitCast(sym, to: SetNS.self)
}()

/// A frame as captured: tag (if any) separated out, ethertype the inner one.
struct CapturedFrame {
    var destination: [UInt8]
    var source: [UInt8]
    /// The 802.1Q VLAN ID the frame carried on the wire, nil when untagged.
    var vlanID: UInt16?
    var etherType: UInt16
    var payload: [UInt8]
}

enum TestFrame {
    /// The IEEE "local experimental" ethertype: nothing in a guest's stack reacts to it.
    static let etherType: UInt16 = 0x88b5

    /// An Ethernet frame (optionally 802.1Q-tagged), padded to the 60-byte minimum.
    static func make(destination: [UInt8], source: [UInt8], vlanID: UInt16? = nil,
                     etherType: UInt16 = TestFrame.etherType, payload: [UInt8]) -> [UInt8] {
        var f = destination + source
        if let v = vlanID { f += [0x81, 0x00, UInt8(v >> 8), UInt8(v & 0xff)] }
        f += [UInt8(etherType >> 8), UInt8(etherType & 0xff)]
        f += payload
        if f.count < 60 { f += [UInt8](repeating: 0, count: 60 - f.count) }
        return f
    }

    /// A payload no other frame carries: "usw" + 8 random bytes.
    static func nonce() -> [UInt8] {
        Array("usw".utf8) + (0..<8).map { _ in UInt8.random(in: 0...255) }
    }
}

func macBytes(_ text: String) -> [UInt8] {
    let b = text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
    precondition(b.count == 6, "bad MAC \(text)")
    return b
}

final class PacketSocket {
    private(set) var fd: Int32 = -1
    let namespace: String
    let interface: String

    init(namespace: String, interface: String) throws {
        self.namespace = namespace
        self.interface = interface
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard home >= 0 else { throw HarnessError.failed("open own netns: errno \(errno)") }
        defer { Glibc.close(home) }
        let target = open("/var/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw HarnessError.failed("open netns \(namespace): errno \(errno)") }
        defer { Glibc.close(target) }

        guard setnsFunction(target, cloneNewNet) == 0 else {
            throw HarnessError.failed("setns into \(namespace): errno \(errno)")
        }
        // Whatever happens below, this thread must go back home: later tests and XCTest itself
        // run on it.
        defer {
            if setnsFunction(home, cloneNewNet) != 0 { fatalError("cannot return to the test's own netns: errno \(errno)") }
        }
        let s = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(ethPAll.bigEndian))
        guard s >= 0 else { throw HarnessError.failed("socket(AF_PACKET): errno \(errno)") }
        let index = if_nametoindex(interface)
        guard index != 0 else { Glibc.close(s); throw HarnessError.failed("no \(interface) in \(namespace)") }

        var one: Int32 = 1
        _ = setsockopt(s, solPacket, packetAuxdata, &one, socklen_t(MemoryLayout<Int32>.size))
        // Not seeing our own transmissions (older kernels: sll_pkttype is checked as well).
        _ = setsockopt(s, solPacket, packetIgnoreOutgoing, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: 0, tv_usec: 50_000)
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        // struct sockaddr_ll: family u16, protocol be16, ifindex i32, hatype u16, pkttype u8,
        // halen u8, addr[8] = 20 bytes.
        var sll = [UInt8](repeating: 0, count: 20)
        sll.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt16(AF_PACKET), toByteOffset: 0, as: UInt16.self)
            b.storeBytes(of: ethPAll.bigEndian, toByteOffset: 2, as: UInt16.self)
            b.storeBytes(of: Int32(index), toByteOffset: 4, as: Int32.self)
        }
        let rc = sll.withUnsafeBytes { b in
            bind(s, b.baseAddress!.assumingMemoryBound(to: sockaddr.self), 20)
        }
        guard rc == 0 else { Glibc.close(s); throw HarnessError.failed("bind AF_PACKET to \(interface): errno \(errno)") }
        fd = s
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    func send(_ frame: [UInt8]) throws {
        let n = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard n == frame.count else { throw HarnessError.failed("send on \(namespace)/\(interface): errno \(errno)") }
    }

    /// Discards whatever is queued.
    func drain() {
        while receiveOne() != nil {}
    }

    /// Waits up to `timeout` seconds for a frame that satisfies `match`; other frames are skipped.
    func receive(timeout: Double, where match: (CapturedFrame) -> Bool) -> CapturedFrame? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let f = receiveOne(), match(f) { return f }
        }
        return nil
    }

    /// Every matching frame seen within `duration` seconds.
    func collect(for duration: Double, where match: (CapturedFrame) -> Bool) -> [CapturedFrame] {
        let deadline = Date().addingTimeInterval(duration)
        var out: [CapturedFrame] = []
        while Date() < deadline {
            if let f = receiveOne(), match(f) { out.append(f) }
        }
        return out
    }

    /// One frame, or nil after the 50 ms socket timeout.
    private func receiveOne() -> CapturedFrame? {
        var data = [UInt8](repeating: 0, count: 65_536)
        var control = [UInt8](repeating: 0, count: 256)
        var address = [UInt8](repeating: 0, count: 32)
        var length = 0
        var controlLength = 0
        data.withUnsafeMutableBytes { d in
            control.withUnsafeMutableBytes { c in
                address.withUnsafeMutableBytes { a in
                    var iov = iovec(iov_base: d.baseAddress, iov_len: d.count)
                    withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_name = a.baseAddress
                        msg.msg_namelen = socklen_t(a.count)
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = c.baseAddress
                        msg.msg_controllen = c.count
                        length = recvmsg(fd, &msg, 0)
                        controlLength = Int(msg.msg_controllen)
                    }
                }
            }
        }
        guard length >= 14 else { return nil }
        if address[10] == packetOutgoing { return nil } // sll_pkttype

        // struct cmsghdr: len (size_t), level (int), type (int), then data, 8-byte aligned.
        var auxVLAN: UInt16?
        var offset = 0
        while offset + 16 <= controlLength {
            let (cmsgLength, level, type) = control.withUnsafeBytes { b in
                (b.load(fromByteOffset: offset, as: Int.self),
                 b.load(fromByteOffset: offset + 8, as: Int32.self),
                 b.load(fromByteOffset: offset + 12, as: Int32.self))
            }
            guard cmsgLength >= 16 else { break }
            if level == solPacket && type == packetAuxdata && offset + 16 + 20 <= controlLength {
                // struct tpacket_auxdata: status u32, len u32, snaplen u32, mac u16, net u16,
                // vlan_tci u16, vlan_tpid u16.
                let (status, tci) = control.withUnsafeBytes { b in
                    (b.load(fromByteOffset: offset + 16, as: UInt32.self),
                     b.load(fromByteOffset: offset + 16 + 16, as: UInt16.self))
                }
                if status & tpStatusVLANValid != 0 { auxVLAN = tci & 0x0fff }
            }
            offset += (cmsgLength + 7) & ~7
        }

        var etherType = UInt16(data[12]) << 8 | UInt16(data[13])
        var payloadStart = 14
        var vlanID = auxVLAN
        if auxVLAN == nil && (etherType == 0x8100 || etherType == 0x88a8) && length >= 18 {
            vlanID = (UInt16(data[14]) << 8 | UInt16(data[15])) & 0x0fff
            etherType = UInt16(data[16]) << 8 | UInt16(data[17])
            payloadStart = 18
        }
        return CapturedFrame(destination: Array(data[0..<6]), source: Array(data[6..<12]), vlanID: vlanID,
                             etherType: etherType, payload: Array(data[payloadStart..<length]))
    }
}

extension CapturedFrame {
    /// Our crafted test frame carrying `nonce`.
    func carries(_ nonce: [UInt8]) -> Bool {
        etherType == TestFrame.etherType && payload.starts(with: nonce)
    }
}
