// The router's rules, one test each, through in-memory ports: ARP on guest ports and proxy ARP on
// the uplink, forwarding with TTL and checksum, neighbour resolution and its queue, ICMP errors,
// MTU, fragments, GSO super-frames, anti-spoofing and the reverse-path check.

import SwitchCore
import SwitchRouting
import SwitchTesting
import XCTest

final class RouterTests: XCTestCase {
    let guestMAC = mac("02:00:00:00:00:05")
    let guestIP = ip("10.1.0.5")
    func guest(_ addresses: [String] = ["10.1.0.5"], known: Bool = true) -> RouterPortConfiguration {
        RouterPortConfiguration(addresses: addresses.map { IPv4Prefix($0)! }, guestMAC: known ? guestMAC : nil)
    }

    // MARK: ARP

    func testGuestPortAnswersARPForAnyAddressButTheGuestsOwn() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: guestIP, tpa: ip("10.1.0.1")), on: 1)
        let r = lab.out(1)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.first?.arpOp, 2)
        XCTAssertEqual(r.first?.arpSHA, RouterLab.routerMAC)
        XCTAssertEqual(r.first?.arpSPA, ip("10.1.0.1"))
        XCTAssertEqual(r.first?.arpTPA, guestIP)
        XCTAssertEqual(r.first?.dst, guestMAC, "unicast to the requester")
        // The guest asking about its own address (an announcement) or probing it gets nothing.
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: guestIP, tpa: guestIP), on: 1)
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: 0, tpa: guestIP), on: 1)
        // Nor a probe for another address: only the router's own address answers probes.
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: 0, tpa: ip("10.1.0.1")), on: 1)
        XCTAssertEqual(lab.out(1).count, 0, "duplicate-address detection passes")
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: 0, tpa: ip("192.0.2.1")), on: 1)
        XCTAssertEqual(lab.out(1).map(\.arpSPA), [ip("192.0.2.1")])
    }

    func testUplinkAnswersForTheRouterAndProxiesForGuestsOnly() throws {
        let lab = try RouterLab(guests: [guest()])
        let lan = RouterLab.lanHostMAC
        lab.send(Packet.arp(op: 1, sha: lan, spa: ip("192.0.2.7"), tpa: ip("192.0.2.1")), on: 0)
        lab.send(Packet.arp(op: 1, sha: lan, spa: ip("192.0.2.7"), tpa: guestIP), on: 0)
        lab.send(Packet.arp(op: 1, sha: lan, spa: ip("192.0.2.7"), tpa: ip("192.0.2.9")), on: 0)  // another LAN host
        lab.send(Packet.arp(op: 1, sha: lan, spa: 0, tpa: guestIP), on: 0)                        // probe: never proxied
        let r = lab.out(0)
        XCTAssertEqual(r.map(\.arpSPA), [ip("192.0.2.1"), guestIP])
        XCTAssertTrue(r.allSatisfy { $0.arpSHA == RouterLab.routerMAC && $0.dst == lan })
        XCTAssertEqual(lab.drops(.arpIgnored), 2)
    }

    func testGratuitousARPAnnouncesAGuestOnTheUplink() throws {
        let lab = try RouterLab(guests: [guest(["10.1.0.5", "10.1.0.6"])])
        lab.engine.announce(port: 1)
        let r = lab.out(0)
        XCTAssertEqual(r.map(\.arpSPA), [ip("10.1.0.5"), ip("10.1.0.6")])
        XCTAssertTrue(r.allSatisfy { $0.dst == .broadcast && $0.arpSPA == $0.arpTPA && $0.arpSHA == RouterLab.routerMAC })
    }

    // MARK: forwarding

    func testForwardingDecrementsTTLKeepsTheChecksumValidAndRewritesMACs() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.engine.addNeighbour(ip("192.0.2.7"), mac: RouterLab.lanHostMAC, port: 0)
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = lab.out(0)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.first?.ttl, 63)
        XCTAssertEqual(r.first?.headerChecksumValid, true)
        XCTAssertEqual(r.first?.dst, RouterLab.lanHostMAC)
        XCTAssertEqual(r.first?.src, RouterLab.routerMAC)
        // And back: to the guest's known MAC, without asking.
        lab.send(Packet.udp(src: ip("192.0.2.7"), dst: guestIP, from: RouterLab.lanHostMAC, to: RouterLab.routerMAC), on: 0)
        let back = lab.out(1)
        XCTAssertEqual(back.map(\.dst), [guestMAC])
        XCTAssertEqual(back.first?.ttl, 63)
        XCTAssertEqual(lab.engine.portCounters(0).txFrames, 1)
        XCTAssertEqual(lab.engine.portCounters(1).rxFrames, 1)
    }

    func testTTLChecksumUpdateMatchesAFullRecomputeForEveryTTLAndChecksum() {
        // RFC 1624's update over the TTL|protocol word against summing the header again.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var h = Packet.ipv4Header(src: UInt32.random(in: 0...UInt32.max, using: &generator),
                                      dst: UInt32.random(in: 0...UInt32.max, using: &generator), proto: UInt8.random(in: 0...255),
                                      payloadLength: Int.random(in: 0...1400), ttl: UInt8.random(in: 2...255),
                                      id: UInt16.random(in: 0...UInt16.max))
            let word = UInt16(h[8]) << 8 | UInt16(h[9]), check = UInt16(h[10]) << 8 | UInt16(h[11])
            let updated = Checksum.update(check, old: word, new: word - 0x0100)
            h[8] -= 1
            h[10] = 0; h[11] = 0
            XCTAssertEqual(updated, Packet.checksum(h))
        }
    }

    func testUnresolvedNextHopIsAskedForAndItsFramesWaitThenGo() throws {
        let lab = try RouterLab(guests: [guest()])
        let frames = (0..<5).map { k in
            Packet.udp(src: guestIP, dst: ip("192.0.2.7"), sport: UInt16(4000 + k), from: guestMAC, to: RouterLab.routerMAC)
        }
        lab.send(frames, on: 1)
        let asked = lab.out(0)
        XCTAssertEqual(asked.count, 1, "one ARP request, no frame yet")
        XCTAssertEqual(asked.first?.arpOp, 1)
        XCTAssertEqual(asked.first?.arpTPA, ip("192.0.2.7"))
        XCTAssertEqual(asked.first?.arpSPA, ip("192.0.2.1"))
        XCTAssertEqual(lab.drops(.neighbourQueueFull), 2, "the queue holds 3 frames per neighbour")
        lab.send(Packet.arp(op: 2, sha: RouterLab.lanHostMAC, spa: ip("192.0.2.7"), tha: RouterLab.routerMAC,
                            tpa: ip("192.0.2.1"), dst: RouterLab.routerMAC), on: 0)
        let sent = lab.out(0)
        XCTAssertEqual(sent.count, 3)
        XCTAssertEqual(sent.map { $0.u16(34) }, [4000, 4001, 4002], "in order")
        XCTAssertTrue(sent.allSatisfy { $0.dst == RouterLab.lanHostMAC && $0.ttl == 63 && $0.headerChecksumValid })
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .reachable)
    }

    func testFailedResolutionAnswersQueuedFramesWithHostUnreachable() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(lab.out(0).count, 1)
        lab.wait(milliseconds: 1100)
        lab.wait(milliseconds: 1000)
        XCTAssertEqual(lab.out(0).map(\.arpOp), [1, 1], "3 requests in all, 1 s apart")
        lab.wait(milliseconds: 1000)
        let unreachable = lab.out(1)
        XCTAssertEqual(unreachable.count, 1)
        XCTAssertEqual(unreachable.first?.icmpType, 3)
        XCTAssertEqual(unreachable.first?.icmpCode, 1)
        XCTAssertEqual(unreachable.first?.ipDestination, guestIP)
        XCTAssertEqual(unreachable.first?.ipSource, ip("192.0.2.1"))
        XCTAssertEqual(unreachable.first?.icmpChecksumValid, true)
        XCTAssertEqual(lab.drops(.neighbourUnreachable), 1)
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .failed)
    }

    func testReachableGoesStaleThenDelayThenProbe() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.send(Packet.arp(op: 2, sha: RouterLab.lanHostMAC, spa: ip("192.0.2.7"), tha: RouterLab.routerMAC,
                            tpa: ip("192.0.2.1"), dst: RouterLab.routerMAC), on: 0)
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .reachable)
        lab.wait(milliseconds: 46_000) // beyond 1.5 x 30 s
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .stale)
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(lab.out(0).count, 1, "a stale entry is used as it is")
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .delay)
        lab.wait(milliseconds: 5100)
        XCTAssertEqual(lab.engine.neighbours.entries().first?.state, .probe)
        let probe = lab.out(0)
        XCTAssertEqual(probe.first?.arpOp, 1)
        XCTAssertEqual(probe.first?.dst, RouterLab.lanHostMAC, "PROBE asks unicast")
    }

    // MARK: ICMP

    func testTTLOfOneGetsTimeExceededFromTheRouter() throws {
        let lab = try RouterLab(guests: [guest()])
        let f = Packet.udp(src: guestIP, dst: ip("198.51.100.9"), ttl: 1, from: guestMAC, to: RouterLab.routerMAC)
        lab.send(f, on: 1)
        let r = lab.out(1)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.first?.icmpType, 11)
        XCTAssertEqual(r.first?.ipSource, ip("192.0.2.1"))
        XCTAssertEqual(r.first?.ipDestination, guestIP)
        XCTAssertEqual(r.first?.headerChecksumValid, true)
        XCTAssertEqual(r.first?.icmpChecksumValid, true)
        XCTAssertEqual(Array(r.first!.bytes[42..<62]), Array(f[14..<34]), "the offending header is quoted")
        XCTAssertEqual(lab.drops(.ttlExceeded), 1)
        XCTAssertEqual(lab.out(0).count, 0)
    }

    func testNoRouteGetsNetUnreachableAndErrorsAreNeverSentAboutErrors() throws {
        let lab = try RouterLab(guests: [guest()], gateway: false)
        lab.send(Packet.udp(src: guestIP, dst: ip("198.51.100.9"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = lab.out(1)
        XCTAssertEqual(r.map(\.icmpType), [3])
        XCTAssertEqual(r.map(\.icmpCode), [0])
        // An ICMP error that cannot be routed gets no error back.
        var error = r[0].bytes
        error[26...29] = [10, 1, 0, 5][...]  // from the guest's address, as a guest would relay it
        error[30...33] = [198, 51, 100, 9][...]
        let c = Packet.checksum(Array(error[14..<24]) + [0, 0] + Array(error[26..<34]))
        error[24] = UInt8(c >> 8); error[25] = UInt8(c & 0xFF)
        error[0...5] = RouterLab.routerMAC.bytes[...]
        error[6...11] = guestMAC.bytes[...]
        lab.send(error, on: 1)
        XCTAssertEqual(lab.out(1).count, 0)
        XCTAssertEqual(lab.drops(.noRoute), 2)
    }

    func testRouterAnswersPingOnItsAddress() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.send(Packet.echoRequest(src: guestIP, dst: ip("192.0.2.1"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        let r = lab.out(1)
        XCTAssertEqual(r.map(\.icmpType), [0])
        XCTAssertEqual(r.first?.ipSource, ip("192.0.2.1"))
        XCTAssertEqual(r.first?.ipDestination, guestIP)
        XCTAssertEqual(r.first?.icmpChecksumValid, true)
        XCTAssertEqual(r.first?.headerChecksumValid, true)
        XCTAssertEqual(r.first?.dst, guestMAC)
    }

    func testICMPErrorsAreRateLimitedPerDestination() throws {
        let lab = try RouterLab(guests: [guest()])
        let f = Packet.udp(src: guestIP, dst: ip("198.51.100.9"), ttl: 1, from: guestMAC, to: RouterLab.routerMAC)
        lab.send(Array(repeating: f, count: 20), on: 1)
        XCTAssertEqual(lab.out(1).count, 6, "a burst of 6, then one a second")
        XCTAssertEqual(lab.engine.events.icmpRateLimited, 14)
        lab.now += 1000
        lab.send(f, on: 1)
        XCTAssertEqual(lab.out(1).count, 1)
        XCTAssertEqual(lab.drops(.ttlExceeded), 21)
    }

    // MARK: MTU

    func testDontFragmentLongerThanTheMTUGetsFragmentationNeededWithTheMTU() throws {
        let lab = try RouterLab(guests: [guest()], uplinkMTU: 1400)
        lab.engine.addNeighbour(ip("192.0.2.254"), mac: RouterLab.gatewayMAC, port: 0)
        let f = Packet.udp(src: guestIP, dst: ip("198.51.100.9"), payload: Array(repeating: 1, count: 1400),
                           dontFragment: true, from: guestMAC, to: RouterLab.routerMAC)
        lab.send(f, on: 1)
        let r = lab.out(1)
        XCTAssertEqual(r.map(\.icmpType), [3])
        XCTAssertEqual(r.map(\.icmpCode), [4])
        XCTAssertEqual(r.first?.u16(40), 1400, "the next-hop MTU")
        XCTAssertEqual(lab.out(0).count, 0)
        XCTAssertEqual(lab.drops(.fragmentationNeeded), 1)
    }

    func testWithoutDontFragmentALongPacketGoesAsFragmentsThatReassemble() throws {
        let lab = try RouterLab(guests: [guest()], uplinkMTU: 1400)
        lab.engine.addNeighbour(ip("192.0.2.254"), mac: RouterLab.gatewayMAC, port: 0)
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let f = Packet.udp(src: guestIP, dst: ip("198.51.100.9"), payload: payload, from: guestMAC, to: RouterLab.routerMAC)
        lab.send(f, on: 1)
        let frags = lab.out(0)
        XCTAssertEqual(frags.count, 3)
        var data: [UInt8] = []
        for (k, fr) in frags.enumerated() {
            XCTAssertLessThanOrEqual(fr.totalLength, 1400)
            XCTAssertTrue(fr.headerChecksumValid)
            XCTAssertEqual(fr.ttl, 63)
            XCTAssertEqual(Int(fr.u16(20) & 0x1FFF) * 8, data.count, "offsets in 8-byte units")
            XCTAssertEqual(fr.u16(20) & 0x2000 != 0, k < 2, "MF on all but the last")
            data += fr.bytes[34..<(14 + fr.totalLength)]
        }
        XCTAssertEqual(data, Array(f[34..<(14 + 20 + 8 + payload.count)]), "the payload, whole, in order")
        XCTAssertEqual(lab.engine.events.fragmentsMade, 3)
    }

    func testGSOSuperFrameWhoseSegmentsFitCrossesWholeWithItsOffloadHeader() throws {
        let lab = try RouterLab(guests: [guest()], uplinkMTU: 1500)
        lab.engine.addNeighbour(ip("192.0.2.254"), mac: RouterLab.gatewayMAC, port: 0)
        // A TCP super-frame of 20,000 bytes with 1448-byte segments and a partial checksum.
        let tcp: [UInt8] = Packet.be16(40000) + Packet.be16(80) + Packet.be32(1) + Packet.be32(0) + [0x50, 0x10] + Packet.be16(512) + [0x12, 0x34, 0, 0]
        let payload = [UInt8](repeating: 0x42, count: 20_000)
        let f = Packet.ethernet(dst: RouterLab.routerMAC, src: guestMAC, type: 0x0800,
                                Packet.ipv4Header(src: guestIP, dst: ip("198.51.100.9"), proto: 6, payloadLength: 20 + payload.count,
                                                  dontFragment: true) + tcp + payload)
        let vnet = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: 1, hdrLen: 54, gsoSize: 1448,
                                   csumStart: 34, csumOffset: 16)
        lab.send(f, on: 1, vnet: vnet)
        let r = lab.outWithHeaders(0)
        XCTAssertEqual(r.count, 1, "one frame, not segmented")
        XCTAssertEqual(r.first?.1, vnet, "offload header intact")
        XCTAssertEqual(r.first?.0.ttl, 63)
        XCTAssertEqual(r.first?.0.headerChecksumValid, true)
        XCTAssertEqual(Array(r.first!.0.bytes[34...]), Array(f[34...]), "the TCP header and its partial checksum untouched")
        // Segments of 1448 + 40 = 1488 fit 1500, but not 1480: DF gets fragmentation needed.
        lab.engine.setMTU(0, 1480)
        lab.send(f, on: 1, vnet: vnet)
        XCTAssertEqual(lab.out(0).count, 0)
        XCTAssertEqual(lab.out(1).map(\.icmpCode), [4])
    }

    // MARK: anti-spoofing and reverse path

    func testSpoofedSourcesFromAGuestAreDroppedAndCounted() throws {
        let lab = try RouterLab(guests: [guest()])
        lab.engine.addNeighbour(ip("192.0.2.7"), mac: RouterLab.lanHostMAC, port: 0)
        lab.send(Packet.udp(src: ip("10.1.0.99"), dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: mac("02:00:00:00:00:66"), to: RouterLab.routerMAC), on: 1)
        lab.send(Packet.arp(op: 1, sha: guestMAC, spa: ip("10.1.0.99"), tpa: ip("10.1.0.1")), on: 1)
        XCTAssertEqual(lab.out(0).count + lab.out(1).count, 0)
        XCTAssertEqual(lab.drops(.spoofedSourceIP), 1)
        XCTAssertEqual(lab.drops(.spoofedSourceMAC), 1)
        XCTAssertEqual(lab.drops(.spoofedARP), 1)
    }

    func testUplinkFramesFromAGuestsAddressFailTheReversePathCheck() throws {
        let lab = try RouterLab(guests: [guest(), guest(["10.1.0.6"], known: false)])
        lab.send(Packet.udp(src: guestIP, dst: ip("10.1.0.6"), from: RouterLab.lanHostMAC, to: RouterLab.routerMAC), on: 0)
        XCTAssertEqual(lab.drops(.reversePath), 1)
        XCTAssertEqual(lab.out(2).count, 0)
    }

    func testGuestToGuestIsRoutedWithTheTapsRouteWinning() throws {
        // Port 1: the guest's PV vif (metric 2), port 2 its emulated tap (metric 1), port 3 another guest.
        var vif = guest(["10.1.0.5"]); vif.metric = 2
        var tap = guest(["10.1.0.5"]); tap.metric = 1
        let lab = try RouterLab(guests: [vif, tap, guest(["10.1.0.6"], known: false)])
        let other = mac("02:00:00:00:00:06")
        lab.send(Packet.udp(src: ip("10.1.0.6"), dst: guestIP, from: other, to: RouterLab.routerMAC), on: 3)
        XCTAssertEqual(lab.out(2).count, 1, "the tap's route wins while it exists")
        XCTAssertEqual(lab.out(1).count, 0)
        _ = try lab.engine.removePort(2)
        lab.send(Packet.udp(src: ip("10.1.0.6"), dst: guestIP, from: other, to: RouterLab.routerMAC), on: 3)
        XCTAssertEqual(lab.out(1).count, 1, "then the vif's")
    }

    // MARK: filtering

    func testTheForwardChainJudgesRoutedFramesByIngressAndEgressPort() throws {
        let lab = try RouterLab(guests: [guest(), guest(["10.1.0.6"], known: false)])
        lab.engine.addNeighbour(ip("192.0.2.7"), mac: RouterLab.lanHostMAC, port: 0)
        lab.engine.bridgeName = "rt0"
        // Guest 1 may not reach the LAN over UDP; everything else passes.
        let rules = try FilterRuleSet.restore(text: """
            *filter
            :INPUT ACCEPT
            :FORWARD ACCEPT
            :OUTPUT ACCEPT
            -A FORWARD -i vif1.0 -o uplink -p IPv4 --ip-proto udp -j DROP
            """)
        lab.engine.setFilter(rules)
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(lab.out(0).count, 0)
        XCTAssertEqual(lab.drops(.filtered), 1)
        XCTAssertEqual(lab.engine.currentFilterRules.chains.first { $0.name == "FORWARD" }?.counters.first?.packets, 1)
        // ICMP from guest 1, and UDP from guest 2, are not matched.
        lab.send(Packet.echoRequest(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        lab.send(Packet.udp(src: ip("10.1.0.6"), dst: ip("192.0.2.7"), from: mac("02:00:00:00:00:06"), to: RouterLab.routerMAC), on: 2)
        XCTAssertEqual(lab.out(0).count, 2)
        // The rule follows port names: a port added later is compiled in.
        lab.engine.setFilter(FilterRuleSet())
        lab.send(Packet.udp(src: guestIP, dst: ip("192.0.2.7"), from: guestMAC, to: RouterLab.routerMAC), on: 1)
        XCTAssertEqual(lab.out(0).count, 1, "no rules: forwarded")
    }

    // MARK: the route table

    func testLongestPrefixMatchAgreesWithALinearSearch() {
        var routes: [IPv4Route] = []
        for k in 0..<300 {
            let len = [0, 8, 16, 24, 28, 32][k % 6]
            let m: UInt32 = len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len)
            routes.append(IPv4Route(prefix: IPv4Prefix(address: UInt32.random(in: 0...UInt32.max), mask: m), port: k % 7,
                                    metric: Int.random(in: 0...3), kind: .static))
        }
        let table = IPv4RouteTable(routes)
        for _ in 0..<5000 {
            // Half the probes inside a route's prefix, half anywhere.
            let a = Bool.random() ? UInt32.random(in: 0...UInt32.max)
                                  : routes.randomElement()!.prefix.address | (UInt32.random(in: 0...UInt32.max) & ~routes.randomElement()!.prefix.mask)
            let matching = routes.filter { $0.prefix.contains(a) }
            let longest = matching.map(\.prefixLength).max()
            let best = matching.filter { $0.prefixLength == longest }.min { $0.metric < $1.metric }
            let r = table.lookup(a)
            if let best {
                XCTAssertGreaterThanOrEqual(r, 0)
                XCTAssertEqual(table.routes[r].prefix, best.prefix)
                XCTAssertEqual(table.routes[r].metric, best.metric)
            } else {
                XCTAssertEqual(r, -1)
            }
        }
    }
}
