// The router's IPv6 rules, one test each, through in-memory ports: neighbour discovery on guest
// ports and proxied on the uplink (never for duplicate-address detection), forwarding with the
// hop limit, resolution by solicitation, ICMPv6 errors (time exceeded, unreachable, packet too
// big), ping, router advertisements only with ra=on and never accepted, anti-spoofing, the
// reverse path and multicast.

import SwitchCore
import SwitchRouting
import SwitchTesting
import XCTest

func ip6(_ text: String) -> IPAddress { IPAddress(text)! }

extension Packet {
    static func bytes(_ a: IPAddress) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: a.high >> UInt64(56 - 8 * $0)) }
        + (0..<8).map { UInt8(truncatingIfNeeded: a.low >> UInt64(56 - 8 * $0)) } }

    static func ipv6(src: IPAddress, dst: IPAddress, next: UInt8, hop: UInt8 = 64, _ payload: [UInt8],
                     from: MACAddress, to: MACAddress) -> [UInt8] {
        ethernet(dst: to, src: from, type: 0x86DD,
                 [0x60, 0, 0, 0] + be16(UInt16(payload.count)) + [next, hop] + bytes(src) + bytes(dst) + payload)
    }

    /// An ICMPv6 message with its checksum over the pseudo-header.
    static func icmp6(src: IPAddress, dst: IPAddress, type: UInt8, code: UInt8 = 0, _ body: [UInt8], hop: UInt8 = 255,
                      from: MACAddress, to: MACAddress) -> [UInt8] {
        var m = [type, code, 0, 0] + body
        let pseudo = bytes(src) + bytes(dst) + be32(UInt32(m.count)) + [0, 0, 0, 58]
        let c = checksum(pseudo + m)
        m[2] = UInt8(c >> 8); m[3] = UInt8(c & 0xFF)
        return ipv6(src: src, dst: dst, next: 58, hop: hop, m, from: from, to: to)
    }

    static func solicitedNode(_ a: IPAddress) -> IPAddress {
        IPAddress(high: 0xFF02_0000_0000_0000, low: 0x0000_0001_FF00_0000 | (a.low & 0xFF_FFFF))
    }
    static func multicastMAC(_ a: IPAddress) -> MACAddress { MACAddress(rawValue: 0x3333_0000_0000 | (a.low & 0xFFFF_FFFF)) }

    /// A neighbour solicitation for `target` to its solicited-node group (a probe when `src` is ::).
    static func ns(src: IPAddress, target: IPAddress, from: MACAddress, hop: UInt8 = 255) -> [UInt8] {
        let option: [UInt8] = src == IPAddress(high: 0, low: 0) ? [] : [1, 1] + from.bytes
        let group = solicitedNode(target)
        return icmp6(src: src, dst: group, type: 135, [0, 0, 0, 0] + bytes(target) + option, hop: hop,
                     from: from, to: multicastMAC(group))
    }

    static func na(src: IPAddress, dst: IPAddress, target: IPAddress, mac: MACAddress, to: MACAddress,
                   solicited: Bool = true, override: Bool = true) -> [UInt8] {
        let flags: UInt8 = (solicited ? 0x40 : 0) | (override ? 0x20 : 0)
        return icmp6(src: src, dst: dst, type: 136, [flags, 0, 0, 0] + bytes(target) + [2, 1] + mac.bytes, from: mac, to: to)
    }

    static func udp6(src: IPAddress, dst: IPAddress, sport: UInt16 = 4000, payload: Int = 18, hop: UInt8 = 64,
                     from: MACAddress, to: MACAddress) -> [UInt8] {
        let l4 = be16(sport) + be16(5000) + be16(UInt16(8 + payload)) + [0, 0] + [UInt8](repeating: 0xCD, count: payload)
        return ipv6(src: src, dst: dst, next: 17, hop: hop, l4, from: from, to: to)
    }
}

extension Seen {
    var hopLimit: UInt8 { bytes[21] }
    var source6: IPAddress { address6(22) }
    var destination6: IPAddress { address6(38) }
    func address6(_ o: Int) -> IPAddress {
        var h: UInt64 = 0, l: UInt64 = 0
        for k in 0..<8 { h = h << 8 | UInt64(bytes[o + k]); l = l << 8 | UInt64(bytes[o + 8 + k]) }
        return IPAddress(high: h, low: l)
    }
    var icmp6Type: UInt8 { bytes[54] }
    var icmp6Code: UInt8 { bytes[55] }
    /// The ICMPv6 checksum over the pseudo-header is right.
    var icmp6ChecksumValid: Bool {
        let length = Int(u16(18))
        let pseudo = Packet.bytes(source6) + Packet.bytes(destination6) + Packet.be32(UInt32(length)) + [0, 0, 0, 58]
        return (pseudo + Array(bytes[54..<(54 + length)])).withUnsafeBytes {
            Checksum.fold(Checksum.sum($0.baseAddress!, count: $0.count)) == 0xFFFF
        }
    }
    /// A neighbour advertisement's target and flags.
    var naTarget: IPAddress { address6(62) }
    var naSolicited: Bool { bytes[58] & 0x40 != 0 }
    var naOverride: Bool { bytes[58] & 0x20 != 0 }
}

final class RouterIPv6Tests: XCTestCase {
    let guestMAC = mac("02:00:00:00:00:05")
    let guestLL = ip6("fe80::5")
    let guest6 = ip6("2001:db8:1::5")
    let router6 = ip6("2001:db8::1")
    let lanHost6 = ip6("2001:db8::7")
    let lanLL = ip6("fe80::7")
    let gatewayLL = ip6("fe80::fe")
    var routerLL: IPAddress { RouterEngine<MemoryPort>.linkLocalAddress(RouterLab.routerMAC) }

    func guest(_ v6: [String] = ["2001:db8:1::5"], v4: [String] = ["10.1.0.5"], ra: Bool = false, known: Bool = true) -> RouterPortConfiguration {
        RouterPortConfiguration(addresses: v4.map { IPv4Prefix($0)! }, guestMAC: known ? guestMAC : nil,
                                addresses6: v6.map { IPv6Prefix($0)! }, routerAdvertisements: ra)
    }

    func lab(_ guests: [RouterPortConfiguration], gateway: Bool = true, uplinkMTU: Int = 1500) throws -> RouterLab {
        let l = try RouterLab(guests: guests, uplinkMTU: uplinkMTU)
        l.engine.setAddress6(router6, prefixLength: 64, gateway: gateway ? gatewayLL : nil)
        return l
    }

    func testLinkLocalAddressIsTheModifiedEUI64OfTheMAC() {
        XCTAssertEqual(RouterEngine<MemoryPort>.linkLocalAddress(mac("52:54:00:12:34:56")), ip6("fe80::5054:ff:fe12:3456"))
    }

    // MARK: neighbour discovery

    func testGuestPortAnswersSolicitationsForAnyTargetButTheGuestsOwnAndNeverAProbe() throws {
        let l = try lab([guest()])
        l.send(Packet.ns(src: guestLL, target: ip6("fe80::1"), from: guestMAC), on: 1)
        let r = l.out(1)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.first?.icmp6Type, 136)
        XCTAssertEqual(r.first?.naTarget, ip6("fe80::1"))
        XCTAssertEqual(r.first?.naSolicited, true)
        XCTAssertEqual(r.first?.dst, guestMAC)
        XCTAssertEqual(r.first?.destination6, guestLL)
        XCTAssertEqual(r.first?.hopLimit, 255)
        XCTAssertEqual(r.first?.icmp6ChecksumValid, true)
        XCTAssertEqual(Array(r.first!.bytes[78..<86]), [2, 1] + RouterLab.routerMAC.bytes, "target link-layer option: the router's MAC")
        // Its own address, a probe for it (DAD), and a probe for any other address: nothing.
        l.send(Packet.ns(src: guestLL, target: guest6, from: guestMAC), on: 1)
        l.send(Packet.ns(src: IPAddress(high: 0, low: 0), target: guest6, from: guestMAC), on: 1)
        l.send(Packet.ns(src: IPAddress(high: 0, low: 0), target: guestLL, from: guestMAC), on: 1)
        l.send(Packet.ns(src: IPAddress(high: 0, low: 0), target: ip6("fe80::1"), from: guestMAC), on: 1)
        XCTAssertEqual(l.out(1).count, 0, "duplicate-address detection passes")
        XCTAssertEqual(l.drops(.ndIgnored), 4)
        // The router's own link-local address is defended, probes included, with the override flag.
        l.send(Packet.ns(src: IPAddress(high: 0, low: 0), target: routerLL, from: guestMAC), on: 1)
        let own = l.out(1)
        XCTAssertEqual(own.map(\.destination6), [ip6("ff02::1")])
        XCTAssertEqual(own.first?.naOverride, true)
    }

    func testUplinkAnswersForTheRouterAndProxiesForGuestsWithoutOverride() throws {
        let l = try lab([guest()])
        let lan = RouterLab.lanHostMAC
        l.send(Packet.ns(src: lanLL, target: router6, from: lan), on: 0)
        l.send(Packet.ns(src: lanLL, target: guest6, from: lan), on: 0)
        l.send(Packet.ns(src: lanLL, target: ip6("2001:db8::9"), from: lan), on: 0)           // another LAN host
        l.send(Packet.ns(src: IPAddress(high: 0, low: 0), target: guest6, from: lan), on: 0)   // a probe: never proxied
        let r = l.out(0)
        XCTAssertEqual(r.map(\.naTarget), [router6, guest6])
        XCTAssertEqual(r.map(\.naOverride), [true, false], "a proxied answer does not override (RFC 4861 7.2.8)")
        XCTAssertTrue(r.allSatisfy { $0.dst == lan && $0.icmp6ChecksumValid && $0.naSolicited })
        XCTAssertEqual(l.drops(.ndIgnored), 2)
    }

    func testNeighbourDiscoveryFromOffTheLinkOrMalformedIsRefused() throws {
        let l = try lab([guest()])
        l.send(Packet.ns(src: lanLL, target: router6, from: RouterLab.lanHostMAC, hop: 64), on: 0) // forwarded from elsewhere
        var bad = Packet.ns(src: lanLL, target: router6, from: RouterLab.lanHostMAC)
        bad[70] ^= 0xFF                                                                         // checksum now wrong
        l.send(bad, on: 0)
        XCTAssertEqual(l.out(0).count, 0)
        XCTAssertEqual(l.drops(.badND), 2)
    }

    func testUnsolicitedAdvertisementAnnouncesAGuestOnTheUplink() throws {
        let l = try lab([guest(["2001:db8:1::5", "2001:db8:1::6", "2001:db8:3::/64"])])
        l.engine.announce(port: 1)
        let na = l.out(0).filter { $0.type == 0x86DD }
        XCTAssertEqual(na.map(\.naTarget), [ip6("2001:db8:1::5"), ip6("2001:db8:1::6")], "one per address, none for a prefix")
        XCTAssertTrue(na.allSatisfy { $0.destination6 == ip6("ff02::1") && $0.naOverride && !$0.naSolicited && $0.icmp6ChecksumValid })
    }

    // MARK: forwarding

    func testForwardingResolvesTheNextHopLowersTheHopLimitAndRewritesMACs() throws {
        let l = try lab([guest()])
        let frames = (0..<2).map { k in
            Packet.udp6(src: guest6, dst: lanHost6, sport: UInt16(4000 + k), from: guestMAC, to: RouterLab.routerMAC)
        }
        l.send(frames, on: 1)
        let asked = l.out(0)
        XCTAssertEqual(asked.count, 1, "one solicitation, no frame yet")
        XCTAssertEqual(asked.first?.icmp6Type, 135)
        XCTAssertEqual(asked.first?.destination6, ip6("ff02::1:ff00:7"))
        XCTAssertEqual(asked.first?.dst, mac("33:33:ff:00:00:07"))
        XCTAssertEqual(asked.first?.icmp6ChecksumValid, true)
        l.send(Packet.na(src: lanHost6, dst: asked.first!.source6, target: lanHost6, mac: RouterLab.lanHostMAC,
                         to: RouterLab.routerMAC), on: 0)
        let sent = l.out(0)
        XCTAssertEqual(sent.map { $0.u16(54) }, [4000, 4001], "queued frames go, in order")
        XCTAssertTrue(sent.allSatisfy { $0.dst == RouterLab.lanHostMAC && $0.src == RouterLab.routerMAC && $0.hopLimit == 63 })
        XCTAssertEqual(l.engine.neighbours.entries().first { $0.address == lanHost6 }?.state, .reachable)
        // And back to the guest's known MAC without asking.
        l.send(Packet.udp6(src: lanHost6, dst: guest6, from: RouterLab.lanHostMAC, to: RouterLab.routerMAC), on: 0)
        XCTAssertEqual(l.out(1).map(\.dst), [guestMAC])
    }

    func testDefaultRouteGoesToTheLinkLocalGateway() throws {
        let l = try lab([guest()])
        l.engine.addNeighbour(gatewayLL, mac: RouterLab.gatewayMAC, port: 0)
        l.send(Packet.udp6(src: guest6, dst: ip6("2001:db8:99::1"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(l.out(0).map(\.dst), [RouterLab.gatewayMAC])
    }

    func testHopLimitOneGetsTimeExceededFromTheRouter() throws {
        let l = try lab([guest()])
        l.send(Packet.udp6(src: guest6, dst: lanHost6, hop: 1, from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = l.out(1)
        XCTAssertEqual(r.map(\.icmp6Type), [3])
        XCTAssertEqual(r.first?.source6, router6)
        XCTAssertEqual(r.first?.destination6, guest6)
        XCTAssertEqual(r.first?.icmp6ChecksumValid, true)
        XCTAssertEqual(r.first?.address6(62 + 8), guest6, "quotes the packet")
        XCTAssertEqual(l.drops(.hopLimitExceeded), 1)
    }

    func testNoRouteGetsUnreachableAndALinkLocalSourceIsNotForwarded() throws {
        let l = try lab([guest()], gateway: false)
        l.send(Packet.udp6(src: guest6, dst: ip6("2001:db8:99::1"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = l.out(1)
        XCTAssertEqual(r.map(\.icmp6Type), [1])
        XCTAssertEqual(r.first?.icmp6Code, 0)
        l.send(Packet.udp6(src: guestLL, dst: lanHost6, from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(l.out(1).map(\.icmp6Code), [2], "beyond scope of source address")
        XCTAssertEqual(l.out(0).count, 0)
        XCTAssertEqual(l.drops(.noRoute), 1)
        XCTAssertEqual(l.drops(.martian), 1)
    }

    func testPacketTooBigCarriesTheEgressMTUAndASuperFrameCountsBySegments() throws {
        let l = try lab([guest()], uplinkMTU: 1280)
        l.engine.addNeighbour(lanHost6, mac: RouterLab.lanHostMAC, port: 0)
        l.send(Packet.udp6(src: guest6, dst: lanHost6, payload: 1300, from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = l.out(1)
        XCTAssertEqual(r.map(\.icmp6Type), [2])
        XCTAssertEqual(r.first?.u32(58), 1280)
        XCTAssertEqual(r.first.map { $0.bytes.count <= 14 + 1280 }, true, "the error fits the minimum MTU")
        XCTAssertEqual(l.drops(.packetTooBig), 1)
        // A TCP super-frame of 1200-byte segments fits: it crosses whole.
        var tcp = Packet.be16(4000) + Packet.be16(80) + Packet.be32(1) + Packet.be32(0) + [0x50, 0x10] + Packet.be16(512) + [0, 0, 0, 0]
        tcp += [UInt8](repeating: 0xEE, count: 6000)
        let frame = Packet.ipv6(src: guest6, dst: lanHost6, next: 6, tcp, from: guestMAC, to: RouterLab.routerMAC)
        let vnet = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: 4 /* VIRTIO_NET_HDR_GSO_TCPV6 */, hdrLen: 74,
                                   gsoSize: 1200, csumStart: 54, csumOffset: 16)
        l.send(frame, on: 1, vnet: vnet)
        let out = l.outWithHeaders(0)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out.first?.1.gsoSize, 1200)
        XCTAssertEqual(out.first?.0.hopLimit, 63)
        // With 1300-byte segments it does not.
        l.send(frame, on: 1, vnet: VirtioNetHeader(flags: vnet.flags, gsoType: vnet.gsoType, hdrLen: 74, gsoSize: 1300,
                                                   csumStart: 54, csumOffset: 16))
        XCTAssertEqual(l.out(1).map(\.icmp6Type), [2])
    }

    func testRouterAnswersPingOnItsIPv6Addresses() throws {
        let l = try lab([guest()])
        let echo: [UInt8] = [0, 7, 0, 1] + Array("ping6".utf8)
        l.send(Packet.icmp6(src: lanHost6, dst: router6, type: 128, echo, hop: 64, from: RouterLab.lanHostMAC, to: RouterLab.routerMAC), on: 0)
        let r = l.out(0)
        XCTAssertEqual(r.map(\.icmp6Type), [129])
        XCTAssertEqual(r.first?.source6, router6)
        XCTAssertEqual(r.first?.destination6, lanHost6)
        XCTAssertEqual(r.first?.icmp6ChecksumValid, true)
        l.send(Packet.icmp6(src: guestLL, dst: routerLL, type: 128, echo, hop: 64, from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(l.out(1).map(\.icmp6Type), [129])
    }

    // MARK: router advertisements

    func testRouterAdvertisementsOnlyWithRAOnAndNeverAccepted() throws {
        let l = try lab([guest(), guest(["2001:db8:2::/64"], v4: ["10.1.0.6"], ra: true)])
        let rs = { (from: MACAddress) in
            Packet.icmp6(src: self.guestLL, dst: ip6("ff02::2"), type: 133, [0, 0, 0, 0] + [1, 1] + from.bytes,
                         from: from, to: mac("33:33:00:00:00:02"))
        }
        l.send(rs(guestMAC), on: 1)
        XCTAssertEqual(l.out(1).count, 0, "no ra=on: no advertisement")
        l.send(rs(guestMAC), on: 2)
        let ra = l.out(2)
        XCTAssertEqual(ra.map(\.icmp6Type), [134])
        let a = try XCTUnwrap(ra.first)
        XCTAssertEqual(a.source6, routerLL)
        XCTAssertEqual(a.hopLimit, 255)
        XCTAssertTrue(a.icmp6ChecksumValid)
        XCTAssertEqual(a.u16(60), 1800, "router lifetime")
        // Options: source link-layer address, MTU, the guest's /64 as on-link and autonomous.
        XCTAssertEqual(Array(a.bytes[70..<78]), [1, 1] + RouterLab.routerMAC.bytes)
        XCTAssertEqual(a.bytes[78], 5)
        XCTAssertEqual(a.u32(82), 1500)
        XCTAssertEqual(Array(a.bytes[86..<90]), [3, 4, 64, 0xC0])
        XCTAssertEqual(a.address6(86 + 16), ip6("2001:db8:2::"))
        // Unsolicited ones follow: after 16 s, not on the port without ra=on.
        l.wait(milliseconds: 16_100)
        XCTAssertGreaterThanOrEqual(l.out(2).filter { $0.icmp6Type == 134 }.count, 1)
        XCTAssertEqual(l.out(1).filter { $0.type == 0x86DD }.count, 0)
        // A guest's advertisement is never taken, and never reaches anyone.
        let fake = Packet.icmp6(src: guestLL, dst: ip6("ff02::1"), type: 134, [64, 0] + Packet.be16(1800) + [UInt8](repeating: 0, count: 8),
                                from: guestMAC, to: mac("33:33:00:00:00:01"))
        l.send(fake, on: 1)
        l.send(fake, on: 0)
        XCTAssertEqual(l.drops(.routerAdvertisement), 2)
        XCTAssertEqual(l.out(0).count + l.out(1).count + l.out(2).count, 0)
    }

    // MARK: anti-spoofing, reverse path, multicast

    func testSpoofedIPv6SourcesAreDropped() throws {
        let l = try lab([guest(), guest([], v4: ["10.1.0.6"])])
        l.engine.addNeighbour(lanHost6, mac: RouterLab.lanHostMAC, port: 0)
        l.send(Packet.udp6(src: ip6("2001:db8:1::99"), dst: lanHost6, from: guestMAC, to: RouterLab.routerMAC), on: 1)
        // A guest with no IPv6 address may not send any from a global source either.
        l.send(Packet.udp6(src: ip6("2001:db8:1::6"), dst: lanHost6, from: guestMAC, to: RouterLab.routerMAC), on: 2)
        XCTAssertEqual(l.out(0).count, 0)
        XCTAssertEqual(l.drops(.spoofedSourceIP), 2)
        // It still talks to the router on the link.
        l.send(Packet.ns(src: guestLL, target: routerLL, from: guestMAC), on: 2)
        XCTAssertEqual(l.out(2).map(\.icmp6Type), [136])
    }

    func testReversePathOnTheUplinkAndMulticastAreCountedNotForwarded() throws {
        let l = try lab([guest()])
        l.send(Packet.udp6(src: guest6, dst: ip6("2001:db8:1::9"), from: RouterLab.lanHostMAC, to: RouterLab.routerMAC), on: 0)
        XCTAssertEqual(l.drops(.reversePath), 1)
        // An MLD report (hop-by-hop header) and mDNS: multicast the router does not route.
        let mld = Packet.ipv6(src: guestLL, dst: ip6("ff02::16"), next: 0, hop: 1, [58, 0, 5, 2, 0, 0, 1, 0] + [143, 0, 0, 0, 0, 0, 0, 0],
                              from: guestMAC, to: mac("33:33:00:00:00:16"))
        let mdns = Packet.udp6(src: guestLL, dst: ip6("ff02::fb"), from: guestMAC, to: mac("33:33:00:00:00:fb"))
        l.send([mld, mdns], on: 1)
        XCTAssertEqual(l.drops(.ipv6Multicast), 2)
        XCTAssertEqual(l.out(0).count + l.out(1).count, 0)
    }
}
