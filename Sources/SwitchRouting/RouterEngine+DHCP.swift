// RouterEngine+DHCP: a DHCP server for the router's guest ports (`dhcp=on`), in place of the ISC
// dhcpd that Xen's vif-nat configures by editing its file with sed.
//
// The server has no pool and keeps no lease state: each port has exactly one guest, and the
// address it hands out is the port's first IPv4 address, the one the port's host route and
// anti-spoofing already name. A lease is therefore a pure function of the port's configuration
// (`dhcpLease`): answering needs no table a guest could fill, and a restart loses nothing.
//
// What RFC 2131 asks of a server, on a point-to-point link:
//   - DHCPDISCOVER: DHCPOFFER of the port's address.
//   - DHCPREQUEST: with a server identifier (SELECTING), only ours is answered (another server's
//     is the guest choosing it: ignored); the requested address (option 50, or ciaddr when
//     renewing or rebinding) gets DHCPACK when it is the port's address, DHCPNAK otherwise, so a
//     guest moved to a port with another address learns it at once.
//   - DHCPINFORM: DHCPACK with the options and no address or lease time.
//   - DHCPDECLINE (the guest found the address in use) and DHCPRELEASE: counted; nothing to free.
//   - Relayed requests (giaddr set) are not served: nothing relays on a vif.
// Replies go from the router's address (the server identifier and the router option), to
// ciaddr when the guest has one, broadcast when the guest asks for it (flag bit) or for a NAK,
// else to the offered address at the guest's MAC (RFC 2131 4.1). The options: message type,
// server identifier, lease time with T1/T2 (RFC 2132's 50% and 87.5%), subnet mask, router, DNS
// servers when set, the port's MTU. The subnet mask is /32 on a routed port: the link has no
// subnet, and the client reaches its gateway as an on-link host route (Debian's dhclient-script
// and systemd-networkd both add it for a /32 lease).
// Every malformed request is `bad-dhcp`; a request the server does not answer is `dhcp-ignored`.

import SwitchCore

/// The router's DHCP options (`add-router` settings).
public struct DHCPSettings: Equatable, Sendable {
    /// Lease time in seconds (option 51). A lease is only the guest's port configuration, so a long
    /// one costs nothing; a day keeps renewals rare and still lets a changed address reach the guest.
    public var leaseSeconds: UInt32 = 86_400
    /// DNS servers (option 6), at most 4.
    public var dns: [UInt32] = []
    public init(leaseSeconds: UInt32 = 86_400, dns: [UInt32] = []) { self.leaseSeconds = leaseSeconds; self.dns = dns }
}

/// What one guest port's DHCP server hands out.
public struct DHCPLease: Equatable, Sendable {
    public var address: UInt32
    public var mask: UInt32
    public var gateway: UInt32
}

enum DHCPMessageType: UInt8 {
    case discover = 1, offer, request, decline, ack, nak, release, inform
}

extension RouterEngine {
    /// The lease of guest port `p`: its first IPv4 address, a /32, the router's address as gateway.
    /// nil when the port has no IPv4 address or the router has none to answer from.
    public func dhcpLease(port p: Int) -> DHCPLease? {
        guard p != 0, let own = address, let first = portConfigurations[p]?.addresses.first else { return nil }
        return DHCPLease(address: first.address, mask: 0xFFFF_FFFF, gateway: own)
    }

    /// A UDP datagram to port 67 (a DHCP client's request) in an unfragmented IPv4 packet.
    @inline(__always)
    static func isDHCPRequest(_ f: UnsafeRawPointer, length: Int) -> Bool {
        let ihl = Int(HeaderBytes.byte(f, 14) & 0x0F) * 4
        guard length >= 14 + ihl + 8, HeaderBytes.byte(f, 23) == 17, HeaderBytes.be16(f, 20) & 0x3FFF == 0 else { return false }
        return HeaderBytes.be16(f, 14 + ihl + 2) == 67
    }

    /// Serves the DHCP request in frame `i` received on guest port `p`.
    func serveDHCP(_ i: Int, from p: Int) {
        let f = batch.frames[i]
        let len = Int(batch.lengths[i])
        let vhl = HeaderBytes.byte(f, 14)
        let ihl = Int(vhl & 0x0F) * 4
        guard vhl >> 4 == 4, ihl >= 20 else { drop(.badIPv4Header); return }
        let total = Int(HeaderBytes.be16(f, 16))
        guard total >= ihl + 8, 14 + total <= len else { drop(.badIPv4Header); return }
        guard Checksum.fold(Checksum.sum(f + 14, count: ihl)) == 0xFFFF else { drop(.badIPv4Checksum); return }
        let udp = 14 + ihl
        let udpLength = Int(HeaderBytes.be16(f, udp + 4))
        let bootp = udp + 8
        // BOOTP's fixed part (236 bytes) and the magic cookie, within the UDP length and the packet.
        guard HeaderBytes.be16(f, udp) == 68, udpLength >= 8 + 240, udp + udpLength <= 14 + total,
              HeaderBytes.byte(f, bootp) == 1, HeaderBytes.byte(f, bootp + 1) == 1, HeaderBytes.byte(f, bootp + 2) == 6,
              HeaderBytes.be32(f, bootp + 236) == 0x6382_5363 else { drop(.badDHCP); return }
        let end = udp + udpLength
        // Options: type, requested address, server identifier. Bounded by the datagram; a length
        // that runs past it is malformed.
        var type: UInt8 = 0, requested: UInt32 = 0, serverID: UInt32 = 0
        var o = bootp + 240
        var ended = false
        while o < end {
            let code = HeaderBytes.byte(f, o)
            if code == 0 { o += 1; continue }
            if code == 255 { ended = true; break }
            guard o + 2 <= end else { break }
            let n = Int(HeaderBytes.byte(f, o + 1))
            guard o + 2 + n <= end else { drop(.badDHCP); return }
            switch code {
            case 53 where n == 1: type = HeaderBytes.byte(f, o + 2)
            case 50 where n == 4: requested = HeaderBytes.be32(f, o + 2)
            case 54 where n == 4: serverID = HeaderBytes.be32(f, o + 2)
            default: break
            }
            o += 2 + n
        }
        guard ended, let message = DHCPMessageType(rawValue: type) else { drop(.badDHCP); return }
        let ciaddr = HeaderBytes.be32(f, bootp + 12)
        guard HeaderBytes.be32(f, bootp + 24) == 0, let lease = dhcpLease(port: p) else { drop(.dhcpIgnored); return }
        switch message {
        case .discover:
            sendDHCPReply(.offer, to: f, bootp: bootp, lease: lease, port: p)
        case .request:
            if serverID != 0 && serverID != lease.gateway { drop(.dhcpIgnored); return }
            let wanted = requested != 0 ? requested : ciaddr
            sendDHCPReply(wanted == lease.address ? .ack : .nak, to: f, bootp: bootp, lease: lease, port: p)
        case .inform:
            sendDHCPReply(.ack, to: f, bootp: bootp, lease: lease, port: p, inform: true)
        case .decline:
            events.dhcpDeclines &+= 1
        case .release:
            events.dhcpReleases &+= 1
        case .offer, .ack, .nak:
            drop(.badDHCP)
        }
    }

    /// Makes the reply `type` to the request whose BOOTP header is at `bootp` in `f`.
    func sendDHCPReply(_ type: DHCPMessageType, to f: UnsafeRawPointer, bootp: Int, lease: DHCPLease, port p: Int,
                       inform: Bool = false) {
        guard let b = makeFrame(port: p) else { return }
        let ciaddr = HeaderBytes.be32(f, bootp + 12)
        let flags = HeaderBytes.be16(f, bootp + 10)
        let broadcast = type == .nak || (ciaddr == 0 && flags & 0x8000 != 0)
        let destination: UInt32 = broadcast ? 0xFFFF_FFFF : ciaddr != 0 ? ciaddr : lease.address
        if broadcast { MACAddress.broadcast.store(to: b) } else { MACAddress(loadingFrom: f + 6).store(to: b) }
        mac.store(to: b + 6)
        b.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
        // BOOTP: op 2, the client's htype/hlen/xid/flags/ciaddr/chaddr, yiaddr the lease.
        let r = b + 42
        r.initializeMemory(as: UInt8.self, repeating: 0, count: 300)
        r.storeBytes(of: UInt8(2), as: UInt8.self)
        r.storeBytes(of: UInt8(1), toByteOffset: 1, as: UInt8.self)
        r.storeBytes(of: UInt8(6), toByteOffset: 2, as: UInt8.self)
        (r + 4).copyMemory(from: f + bootp + 4, byteCount: 4)                 // xid
        r.storeBytes(of: flags.bigEndian, toByteOffset: 10, as: UInt16.self)
        r.storeBytes(of: ciaddr.bigEndian, toByteOffset: 12, as: UInt32.self)
        if type != .nak && !inform { r.storeBytes(of: lease.address.bigEndian, toByteOffset: 16, as: UInt32.self) }
        (r + 28).copyMemory(from: f + bootp + 28, byteCount: 16)              // chaddr
        r.storeBytes(of: UInt32(0x6382_5363).bigEndian, toByteOffset: 236, as: UInt32.self)
        var o = 240
        func option(_ code: UInt8, _ value: UInt32) {
            r.storeBytes(of: code, toByteOffset: o, as: UInt8.self)
            r.storeBytes(of: UInt8(4), toByteOffset: o + 1, as: UInt8.self)
            r.storeBytes(of: value.bigEndian, toByteOffset: o + 2, as: UInt32.self)
            o += 6
        }
        r.storeBytes(of: UInt8(53), toByteOffset: o, as: UInt8.self)
        r.storeBytes(of: UInt8(1), toByteOffset: o + 1, as: UInt8.self)
        r.storeBytes(of: type.rawValue, toByteOffset: o + 2, as: UInt8.self)
        o += 3
        option(54, lease.gateway)
        if type != .nak {
            if !inform {
                let t = dhcpSettings.leaseSeconds
                option(51, t)
                option(58, t / 2)
                option(59, UInt32(UInt64(t) * 7 / 8))
            }
            option(1, lease.mask)
            option(3, lease.gateway)
            let dns = dhcpSettings.dns.prefix(4)
            if !dns.isEmpty {
                r.storeBytes(of: UInt8(6), toByteOffset: o, as: UInt8.self)
                r.storeBytes(of: UInt8(4 * dns.count), toByteOffset: o + 1, as: UInt8.self)
                o += 2
                for d in dns { r.storeBytes(of: d.bigEndian, toByteOffset: o, as: UInt32.self); o += 4 }
            }
            let portMTU = Int(mtu[p])
            if portMTU >= 576 && portMTU <= 65535 {
                r.storeBytes(of: UInt8(26), toByteOffset: o, as: UInt8.self)
                r.storeBytes(of: UInt8(2), toByteOffset: o + 1, as: UInt8.self)
                r.storeBytes(of: UInt16(portMTU).bigEndian, toByteOffset: o + 2, as: UInt16.self)
                o += 4
            }
        }
        r.storeBytes(of: UInt8(255), toByteOffset: o, as: UInt8.self)
        o += 1
        // At least BOOTP's 300 bytes (RFC 1542: some clients refuse shorter replies).
        let payload = max(300, o)
        let udpLength = 8 + payload
        writeIPv4Header(b + 14, totalLength: 20 + udpLength, protocol: 17, source: lease.gateway, destination: destination)
        let u = b + 34
        u.storeBytes(of: UInt16(67).bigEndian, as: UInt16.self)
        u.storeBytes(of: UInt16(68).bigEndian, toByteOffset: 2, as: UInt16.self)
        u.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        u.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        // The UDP checksum over the pseudo-header (addresses, protocol, length) and the datagram.
        let pseudo = Checksum.sum(b + 26, count: 8) &+ 17 &+ UInt64(udpLength)
        var check = Checksum.of(u, count: udpLength, initial: pseudo)
        if check == 0 { check = 0xFFFF }                                    // 0 means "none" in UDP
        u.storeBytes(of: check.bigEndian, toByteOffset: 6, as: UInt16.self)
        commitFrame(length: 14 + 20 + udpLength)
        switch type {
        case .offer: events.dhcpOffers &+= 1
        case .ack: events.dhcpAcks &+= 1
        case .nak: events.dhcpNaks &+= 1
        default: break
        }
    }
}
