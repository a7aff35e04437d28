// The router's DHCP server (`dhcp=on`), through in-memory ports: discover/offer and request/ack
// with the options a client needs, NAK for another address, silence for another server's
// request, renewal by unicast, inform, decline and release, broadcast replies when asked, malformed
// requests counted, and ports without dhcp=on left as they were.

import SwitchCore
import SwitchRouting
import SwitchTesting
import XCTest

extension Packet {
    /// A DHCP client message from `chaddr` (UDP 68 -> 67). `options` are raw TLVs after the
    /// message type; `end` false leaves out the end option.
    static func dhcp(type: UInt8, chaddr: MACAddress, xid: UInt32 = 0x1234_5678, ciaddr: UInt32 = 0, giaddr: UInt32 = 0,
                     broadcastFlag: Bool = false, options: [UInt8] = [], end: Bool = true, src: UInt32 = 0,
                     dst: UInt32 = 0xFFFF_FFFF, to: MACAddress = .broadcast, op: UInt8 = 1) -> [UInt8] {
        var b: [UInt8] = [op, 1, 6, 0] + be32(xid) + be16(3) + be16(broadcastFlag ? 0x8000 : 0) + be32(ciaddr) + be32(0) + be32(0)
            + be32(giaddr) + chaddr.bytes + [UInt8](repeating: 0, count: 10) + [UInt8](repeating: 0, count: 192)
        b += be32(0x6382_5363) + [53, 1, type] + options
        if end { b.append(255) }
        let l4 = be16(68) + be16(67) + be16(UInt16(8 + b.count)) + [0, 0] + b
        return ethernet(dst: to, src: chaddr, type: 0x0800, ipv4Header(src: src, dst: dst, proto: 17, payloadLength: l4.count) + l4)
    }
}

/// A DHCP reply as the guest sees it.
struct DHCPReply {
    let seen: Seen
    var bootp: Int { 42 }
    var op: UInt8 { seen.bytes[bootp] }
    var xid: UInt32 { seen.u32(bootp + 4) }
    var flags: UInt16 { seen.u16(bootp + 10) }
    var ciaddr: UInt32 { seen.u32(bootp + 12) }
    var yiaddr: UInt32 { seen.u32(bootp + 16) }
    var chaddr: MACAddress { let o = bootp + 28; return MACAddress(seen.bytes[o], seen.bytes[o + 1], seen.bytes[o + 2], seen.bytes[o + 3], seen.bytes[o + 4], seen.bytes[o + 5]) }
    var cookie: UInt32 { seen.u32(bootp + 236) }
    /// The options, code to value bytes.
    var options: [UInt8: [UInt8]] {
        var out: [UInt8: [UInt8]] = [:]
        var o = bootp + 240
        while o < seen.bytes.count {
            let code = seen.bytes[o]
            if code == 0 { o += 1; continue }
            if code == 255 { break }
            let n = Int(seen.bytes[o + 1])
            out[code] = Array(seen.bytes[(o + 2)..<(o + 2 + n)])
            o += 2 + n
        }
        return out
    }
    var messageType: UInt8? { options[53]?.first }
    func address(_ code: UInt8) -> UInt32? {
        guard let v = options[code], v.count >= 4 else { return nil }
        return UInt32(v[0]) << 24 | UInt32(v[1]) << 16 | UInt32(v[2]) << 8 | UInt32(v[3])
    }
    var udpChecksumValid: Bool {
        let udpLength = Int(seen.u16(38))
        let pseudo = Array(seen.bytes[26..<34]) + [0, 17] + Packet.be16(UInt16(udpLength))
        return (pseudo + Array(seen.bytes[34..<(34 + udpLength)])).withUnsafeBytes {
            Checksum.fold(Checksum.sum($0.baseAddress!, count: $0.count)) == 0xFFFF
        }
    }
}

final class RouterDHCPTests: XCTestCase {
    let guestMAC = mac("00:16:3e:00:00:05")

    func lab(dhcp: Bool = true, mac guest: MACAddress? = nil, addresses: [String] = ["192.0.2.10"],
             dns: [UInt32] = []) throws -> RouterLab {
        let l = try RouterLab(guests: [RouterPortConfiguration(addresses: addresses.map { IPv4Prefix($0)! }, guestMAC: guest,
                                                               dhcp: dhcp)])
        l.engine.setDHCPSettings(DHCPSettings(leaseSeconds: 3600, dns: dns))
        return l
    }

    func reply(_ l: RouterLab, file: StaticString = #filePath, line: UInt = #line) -> DHCPReply? {
        let out = l.out(1)
        XCTAssertEqual(out.count, 1, "one reply on the guest's port", file: file, line: line)
        XCTAssertTrue(l.out(0).isEmpty, "nothing leaks to the uplink", file: file, line: line)
        return out.first.map(DHCPReply.init)
    }

    func testDiscoverGetsAnOfferOfThePortsAddressWithWhatAClientNeeds() throws {
        let l = try lab(dns: [ip("192.0.2.53"), ip("198.51.100.53")])
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC, options: [55, 3, 1, 3, 6]), on: 1)
        let r = try XCTUnwrap(reply(l))
        XCTAssertEqual(r.seen.dst, guestMAC, "unicast to the client's MAC when it did not ask for broadcast")
        XCTAssertEqual(r.seen.src, RouterLab.routerMAC)
        XCTAssertEqual(r.seen.ipSource, ip("192.0.2.1"))
        XCTAssertEqual(r.seen.ipDestination, ip("192.0.2.10"))
        XCTAssertTrue(r.seen.headerChecksumValid)
        XCTAssertTrue(r.udpChecksumValid)
        XCTAssertEqual(r.seen.u16(34), 67); XCTAssertEqual(r.seen.u16(36), 68)
        XCTAssertEqual(r.op, 2); XCTAssertEqual(r.xid, 0x1234_5678); XCTAssertEqual(r.chaddr, guestMAC)
        XCTAssertEqual(r.cookie, 0x6382_5363)
        XCTAssertEqual(r.messageType, 2, "DHCPOFFER")
        XCTAssertEqual(r.yiaddr, ip("192.0.2.10"))
        XCTAssertEqual(r.address(54), ip("192.0.2.1"), "server identifier")
        XCTAssertEqual(r.address(3), ip("192.0.2.1"), "router")
        XCTAssertEqual(r.address(1), 0xFFFF_FFFF, "a /32: the routed link has no subnet")
        XCTAssertEqual(r.address(51), 3600); XCTAssertEqual(r.address(58), 1800); XCTAssertEqual(r.address(59), 3150)
        XCTAssertEqual(r.options[6], Packet.be32(ip("192.0.2.53")) + Packet.be32(ip("198.51.100.53")))
        XCTAssertEqual(r.options[26], Packet.be16(1500), "the port's MTU")
        XCTAssertGreaterThanOrEqual(r.seen.bytes.count - 42, 300, "BOOTP's minimum length")
        XCTAssertEqual(l.engine.events.dhcpOffers, 1)
    }

    func testRequestForThePortsAddressIsAckedAndAnotherIsNaked() throws {
        let l = try lab()
        l.send(Packet.dhcp(type: 3, chaddr: guestMAC, options: [50, 4] + Packet.be32(ip("192.0.2.10")) + [54, 4] + Packet.be32(ip("192.0.2.1"))), on: 1)
        let ack = try XCTUnwrap(reply(l))
        XCTAssertEqual(ack.messageType, 5, "DHCPACK")
        XCTAssertEqual(ack.yiaddr, ip("192.0.2.10"))
        XCTAssertEqual(ack.address(51), 3600)
        // INIT-REBOOT with an address the port does not have (the guest moved): NAK, broadcast.
        l.send(Packet.dhcp(type: 3, chaddr: guestMAC, options: [50, 4] + Packet.be32(ip("192.0.2.99"))), on: 1)
        let nak = try XCTUnwrap(reply(l))
        XCTAssertEqual(nak.messageType, 6, "DHCPNAK")
        XCTAssertEqual(nak.yiaddr, 0)
        XCTAssertEqual(nak.seen.dst, .broadcast)
        XCTAssertEqual(nak.seen.ipDestination, 0xFFFF_FFFF)
        XCTAssertNil(nak.options[51], "no lease in a NAK")
        XCTAssertEqual(l.engine.events.dhcpAcks, 1)
        XCTAssertEqual(l.engine.events.dhcpNaks, 1)
    }

    func testRequestForAnotherServerIsIgnoredAndCounted() throws {
        let l = try lab()
        l.send(Packet.dhcp(type: 3, chaddr: guestMAC, options: [50, 4] + Packet.be32(ip("192.0.2.10")) + [54, 4] + Packet.be32(ip("192.0.2.77"))), on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertEqual(l.drops(.dhcpIgnored), 1)
    }

    func testRenewalIsUnicastToTheClientsAddress() throws {
        let l = try lab(mac: guestMAC)
        l.send(Packet.dhcp(type: 3, chaddr: guestMAC, ciaddr: ip("192.0.2.10"), src: ip("192.0.2.10"), dst: ip("192.0.2.1"),
                           to: RouterLab.routerMAC), on: 1)
        let ack = try XCTUnwrap(reply(l))
        XCTAssertEqual(ack.messageType, 5)
        XCTAssertEqual(ack.seen.ipDestination, ip("192.0.2.10"))
        XCTAssertEqual(ack.seen.dst, guestMAC)
        XCTAssertEqual(ack.ciaddr, ip("192.0.2.10"))
        // Renewing with an address that is no longer the port's: NAK.
        l.engine.setPortConfiguration(1, RouterPortConfiguration(addresses: [IPv4Prefix("192.0.2.11")!], guestMAC: guestMAC,
                                                                 antiSpoofing: false, dhcp: true))
        l.send(Packet.dhcp(type: 3, chaddr: guestMAC, ciaddr: ip("192.0.2.10"), src: ip("192.0.2.10"), dst: ip("192.0.2.1"),
                           to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(reply(l)?.messageType, 6)
    }

    func testBroadcastFlagGetsABroadcastReply() throws {
        let l = try lab()
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC, broadcastFlag: true), on: 1)
        let r = try XCTUnwrap(reply(l))
        XCTAssertEqual(r.seen.dst, .broadcast)
        XCTAssertEqual(r.seen.ipDestination, 0xFFFF_FFFF)
        XCTAssertEqual(r.flags, 0x8000)
    }

    func testInformGetsOptionsWithoutALease() throws {
        let l = try lab(dns: [ip("192.0.2.53")])
        l.send(Packet.dhcp(type: 8, chaddr: guestMAC, ciaddr: ip("192.0.2.10"), src: ip("192.0.2.10")), on: 1)
        let r = try XCTUnwrap(reply(l))
        XCTAssertEqual(r.messageType, 5)
        XCTAssertEqual(r.yiaddr, 0)
        XCTAssertNil(r.options[51])
        XCTAssertEqual(r.address(6), ip("192.0.2.53"))
        XCTAssertEqual(r.seen.ipDestination, ip("192.0.2.10"))
    }

    func testDeclineAndReleaseAreCountedAndNotAnswered() throws {
        let l = try lab()
        l.send(Packet.dhcp(type: 4, chaddr: guestMAC, options: [50, 4] + Packet.be32(ip("192.0.2.10"))), on: 1)
        l.send(Packet.dhcp(type: 7, chaddr: guestMAC, ciaddr: ip("192.0.2.10"), src: ip("192.0.2.10"), dst: ip("192.0.2.1"),
                           to: RouterLab.routerMAC), on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertTrue(l.out(0).isEmpty)
        XCTAssertEqual(l.engine.events.dhcpDeclines, 1)
        XCTAssertEqual(l.engine.events.dhcpReleases, 1)
    }

    func testMalformedRequestsAreCountedAndNeverAnswered() throws {
        let l = try lab()
        var bad: [[UInt8]] = []
        bad.append(Packet.dhcp(type: 1, chaddr: guestMAC, end: false))                     // no end option
        bad.append(Packet.dhcp(type: 1, chaddr: guestMAC, options: [12, 40, 1, 2], end: false)) // runs past the datagram
        bad.append(Packet.dhcp(type: 9, chaddr: guestMAC))                                 // unknown message type
        bad.append(Packet.dhcp(type: 2, chaddr: guestMAC))                                 // an offer from a guest
        bad.append(Packet.dhcp(type: 1, chaddr: guestMAC, op: 2))                          // a BOOTREPLY
        var cookie = Packet.dhcp(type: 1, chaddr: guestMAC)
        cookie[42 + 236] = 0                                                              // no magic cookie
        bad.append(cookie)
        var short = Packet.dhcp(type: 1, chaddr: guestMAC)
        short = Array(short[0..<(42 + 100)])                                             // cut inside BOOTP
        short[16] = 0; short[17] = UInt8(20 + 8 + 100)                                    // IP length agrees
        short[38] = 0; short[39] = 108                                                    // UDP length agrees
        short[24] = 0; short[25] = 0
        let c = Packet.checksum(Array(short[14..<34]))
        short[24] = UInt8(c >> 8); short[25] = UInt8(c & 0xFF)
        bad.append(short)
        l.send(bad, on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertTrue(l.out(0).isEmpty)
        XCTAssertEqual(l.drops(.badDHCP), UInt64(bad.count))
        // Relayed: not served on a point-to-point link.
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC, giaddr: ip("10.9.9.9")), on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertEqual(l.drops(.dhcpIgnored), 1)
        // Still serving after all that.
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC), on: 1)
        XCTAssertEqual(reply(l)?.messageType, 2)
    }

    func testPortsWithoutDHCPDropDiscoverAsBeforeAndBroadcastIsNotForwarded() throws {
        let l = try lab(dhcp: false)
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC), on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertTrue(l.out(0).isEmpty)
        XCTAssertEqual(l.drops(.martian), 1)
        XCTAssertEqual(l.engine.events.dhcpOffers, 0)
        // On a DHCP port, other broadcast IPv4 is still not routed.
        let d = try lab()
        d.send(Packet.udp(src: ip("192.0.2.10"), dst: ip("192.0.2.50"), from: guestMAC, to: .broadcast), on: 1)
        XCTAssertTrue(d.out(0).isEmpty)
        XCTAssertEqual(d.drops(.martian), 1)
        // And unicast traffic from the guest is routed as ever.
        d.send(Packet.udp(src: ip("192.0.2.10"), dst: ip("198.51.100.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(d.drops(.martian), 1)
        XCTAssertEqual(d.engine.neighbours.count, 1, "resolving the gateway for the forwarded datagram")
    }

    func testDHCPRequestsPassAntiSpoofingFromZeroButTheMACIsStillEnforced() throws {
        let l = try lab(mac: guestMAC)
        l.send(Packet.dhcp(type: 1, chaddr: guestMAC), on: 1)
        XCTAssertEqual(reply(l)?.messageType, 2)
        l.send(Packet.dhcp(type: 1, chaddr: mac("00:16:3e:00:00:99")), on: 1)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertEqual(l.drops(.spoofedSourceMAC), 1)
    }
}
