// LinkMonitor: follows the kernel's link (interface) notifications over rtnetlink.
//
// Guests start and stop, so their backend interfaces (vif1.0, vif1.0-emu) come and go under the
// switch. The daemon polls `fileDescriptor`, calls `drain()`, puts a port down when its interface
// is removed and re-attaches it when an interface of that name appears again.
//
// Design notes
// - One NETLINK_ROUTE socket subscribed to RTMGRP_LINK, non-blocking; `drain()` reads until EAGAIN.
// - RTM_NEWLINK is sent both for a new interface and for any change of an existing one (flags,
//   carrier, MTU, name): it is reported as `.added` with the current state, so the consumer treats
//   "added" as "exists now, in this state" and must be idempotent. RTM_DELLINK is `.removed`;
//   moving an interface to another network namespace is also a removal here.
// - The socket buffer may overflow when many interfaces change at once (the kernel then reports
//   ENOBUFS and the lost notifications are gone). `overflows` counts that; the consumer then
//   resynchronises by looking up every interface it waits for (`LinkMonitor.ifIndex(of:)`).
// - Control path: allocation is fine here.
// - Sendable so that it can be handed to the thread that polls it; use it from one thread at a time.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxNet

/// One interface notification.
public struct LinkEvent: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The interface exists (new, or changed: see `LinkMonitor`).
        case added
        /// The interface is gone (deleted, or moved to another network namespace).
        case removed
    }
    public var name: String
    public var ifIndex: Int32
    public var kind: Kind
    /// IFF_UP: the interface is administratively up.
    public var isUp: Bool
    /// IFF_LOWER_UP: the interface has carrier (a veth whose peer is up, a tap with a reader).
    public var hasCarrier: Bool

    public init(name: String, ifIndex: Int32, kind: Kind, isUp: Bool, hasCarrier: Bool = false) {
        self.name = name
        self.ifIndex = ifIndex
        self.kind = kind
        self.isUp = isUp
        self.hasCarrier = hasCarrier
    }
}

public final class LinkMonitor: @unchecked Sendable {
    /// The netlink socket; poll it for POLLIN, then call `drain()`. -1 after `close()`.
    public private(set) var fileDescriptor: Int32
    /// How many times the kernel reported lost notifications (ENOBUFS): resynchronise then.
    public private(set) var overflows = 0

    private let buffer: UnsafeMutableRawPointer
    private static let bufferSize = 64 * 1024

    /// Opens the rtnetlink socket and subscribes to link notifications.
    /// - Throws: `SystemError` naming the call that failed.
    public init() throws(SystemError) {
        let fd = try systemCall("socket(AF_NETLINK, NETLINK_ROUTE)") {
            socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                   NETLINK_ROUTE)
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = CLinuxNet_RTMGRP_LINK
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        if bound != 0 {
            let e = errno
            _ = Glibc.close(fd)
            throw SystemError("bind netlink socket to RTMGRP_LINK", errno: e)
        }
        fileDescriptor = fd
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Closes the socket. Idempotent; also done by deinit.
    public func close() {
        if fileDescriptor >= 0 {
            _ = Glibc.close(fileDescriptor)
            fileDescriptor = -1
        }
    }

    /// Reads every pending notification and returns the link events among them, oldest first.
    public func drain() -> [LinkEvent] {
        var events: [LinkEvent] = []
        while fileDescriptor >= 0 {
            let n = recv(fileDescriptor, buffer, Self.bufferSize, 0)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == ENOBUFS { overflows += 1; continue }
                break  // EAGAIN: drained (other errors: nothing more to read either)
            }
            if n == 0 { break }
            parse(length: n, into: &events)
        }
        return events
    }

    private func parse(length: Int, into events: inout [LinkEvent]) {
        var remaining = Int32(length)
        var message = UnsafePointer(buffer.assumingMemoryBound(to: nlmsghdr.self))
        while CLinuxNet_nlmsg_ok(message, remaining) != 0 {
            let type = Int32(message.pointee.nlmsg_type)
            if type == Int32(RTM_NEWLINK) || type == Int32(RTM_DELLINK),
               Int(message.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<ifinfomsg>.size {
                let info = CLinuxNet_nlmsg_data(message)!.loadUnaligned(as: ifinfomsg.self)
                if let name = Self.interfaceName(of: message) {
                    let flags = UInt32(info.ifi_flags)
                    events.append(LinkEvent(
                        name: name, ifIndex: info.ifi_index,
                        kind: type == Int32(RTM_NEWLINK) ? .added : .removed,
                        isUp: flags & UInt32(CLinuxNet_IFF_UP) != 0,
                        hasCarrier: flags & UInt32(CLinuxNet_IFF_LOWER_UP) != 0))
                }
            }
            message = CLinuxNet_nlmsg_next(message, &remaining)
        }
    }

    /// The IFLA_IFNAME attribute of an RTM_NEWLINK/RTM_DELLINK message.
    private static func interfaceName(of message: UnsafePointer<nlmsghdr>) -> String? {
        var remaining = CLinuxNet_ifla_payload(message)
        guard var attribute = CLinuxNet_ifla_first_attribute(message) else { return nil }
        while CLinuxNet_rta_ok(attribute, remaining) != 0 {
            if Int32(attribute.pointee.rta_type) == Int32(IFLA_IFNAME) {
                let bytes = Int(CLinuxNet_rta_payload(attribute))
                let data = CLinuxNet_rta_data(attribute)!.assumingMemoryBound(to: UInt8.self)
                let raw = UnsafeBufferPointer(start: data, count: bytes)
                let end = raw.firstIndex(of: 0) ?? bytes
                return String(decoding: UnsafeBufferPointer(rebasing: raw[..<end]), as: UTF8.self)
            }
            attribute = CLinuxNet_rta_next(attribute, &remaining)
        }
        return nil
    }

    /// The kernel's index of the interface called `name` in this network namespace, or nil when
    /// there is none. The corresponding C function is `if_nametoindex`.
    public static func ifIndex(of name: String) -> Int32? {
        let index = if_nametoindex(name)
        return index == 0 ? nil : Int32(bitPattern: index)
    }
}
