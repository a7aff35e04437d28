// Routed traffic replayed from capture files without root: each port of a RouterEngine is a
// PcapPort reading its ingress frames from one file and writing its egress frames to another, and
// the test reads those files back (as PipelineReplayTests does for the bridge).

import Foundation
import SwitchCore
import SwitchIO
import SwitchRouting
import XCTest

final class RouterReplayTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("usw-rreplay-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func testRoutedTrafficReplayedFromCaptureFiles() throws {
        let routerMAC = mac("02:00:00:00:01:01"), lanHost = mac("02:00:00:00:02:07"), guest = mac("00:16:3e:00:00:05")
        // The uplink: the LAN host asks for the guest's address (proxy ARP), pings the guest, and
        // sends one packet with TTL 1 (time exceeded from the router).
        let uplinkIn = [
            Packet.arp(op: 1, sha: lanHost, spa: ip("192.0.2.7"), tpa: ip("192.0.2.10")),
            Packet.echoRequest(src: ip("192.0.2.7"), dst: ip("192.0.2.10"), from: lanHost, to: routerMAC),
            Packet.udp(src: ip("192.0.2.7"), dst: ip("192.0.2.10"), ttl: 1, from: lanHost, to: routerMAC),
        ]
        // The guest: a datagram to the LAN host, and one from an address it does not own.
        let guestIn = [
            Packet.udp(src: ip("192.0.2.10"), dst: ip("192.0.2.7"), from: guest, to: routerMAC),
            Packet.udp(src: ip("192.0.2.66"), dst: ip("192.0.2.7"), from: guest, to: routerMAC),
        ]
        let engine = RouterEngine<PcapPort>(mac: routerMAC, settings: RouterSettings(), maxPorts: 4)
        var ports: [PcapPort] = []
        for (k, input) in [uplinkIn, guestIn].enumerated() {
            let path = dir.appendingPathComponent("in\(k).pcap").path
            try PcapFile.write(frames: input, to: path)
            ports.append(try PcapPort(input: path, output: dir.appendingPathComponent("out\(k).pcap").path))
        }
        _ = try engine.addPort(name: "uplink", device: ports[0])
        engine.setAddress(ip("192.0.2.1"), mask: 0xFFFF_FF00, gateway: nil)
        _ = try engine.addPort(name: "vif5.0", configuration: RouterPortConfiguration(addresses: [IPv4Prefix("192.0.2.10")!], guestMAC: guest),
                               device: ports[1])
        engine.addNeighbour(ip("192.0.2.7"), mac: lanHost, port: 0)
        var rounds = 0
        while engine.pollAll(now: 1000) > 0 { rounds += 1; XCTAssertLessThan(rounds, 10) }
        for p in ports { p.close() }
        let up = try PcapFile.read(dir.appendingPathComponent("out0.pcap").path).map { Seen(bytes: $0) }
        let toGuest = try PcapFile.read(dir.appendingPathComponent("out1.pcap").path).map { Seen(bytes: $0) }

        // On the uplink: the proxied ARP reply, the time exceeded, the guest's datagram routed.
        XCTAssertEqual(up.count, 3, "\(up.map(\.type))")
        let reply = try XCTUnwrap(up.first { $0.type == 0x0806 })
        XCTAssertEqual(reply.arpOp, 2); XCTAssertEqual(reply.arpSPA, ip("192.0.2.10")); XCTAssertEqual(reply.arpSHA, routerMAC)
        let exceeded = try XCTUnwrap(up.first { $0.type == 0x0800 && $0.proto == 1 })
        XCTAssertEqual(exceeded.icmpType, 11); XCTAssertEqual(exceeded.ipSource, ip("192.0.2.1"))
        XCTAssertTrue(exceeded.icmpChecksumValid)
        let routed = try XCTUnwrap(up.first { $0.type == 0x0800 && $0.proto == 17 })
        XCTAssertEqual(routed.dst, lanHost); XCTAssertEqual(routed.src, routerMAC)
        XCTAssertEqual(routed.ttl, 63); XCTAssertTrue(routed.headerChecksumValid)
        XCTAssertEqual(routed.ipSource, ip("192.0.2.10"))
        // To the guest: the LAN host's ping, TTL decremented, at the guest's MAC.
        XCTAssertEqual(toGuest.count, 1)
        XCTAssertEqual(toGuest.first?.dst, guest); XCTAssertEqual(toGuest.first?.ttl, 63)
        XCTAssertEqual(toGuest.first?.icmpType, 8); XCTAssertEqual(toGuest.first?.headerChecksumValid, true)
        // The spoofed datagram is counted, nothing else dropped but the expired one.
        XCTAssertEqual(engine.dropCount(.spoofedSourceIP), 1)
        XCTAssertEqual(engine.dropCount(.ttlExceeded), 1)
        XCTAssertEqual(engine.dropCounters.values.reduce(0, +), 2)
        XCTAssertEqual(engine.portCounters(1).rxFrames, 2)
        XCTAssertEqual(engine.portCounters(0).txFrames, 3)
    }
}

final class RouterOwnAddressTests: XCTestCase {
    func testFramesWithTheRoutersOwnMACAsSourceAreDropped() throws {
        let l = try RouterLab(guests: [RouterPortConfiguration(addresses: [IPv4Prefix("192.0.2.10")!], antiSpoofing: false)])
        // On the uplink (a LAN host spoofing the router, or its own frames looped back) and on a guest port.
        l.send(Packet.udp(src: ip("192.0.2.7"), dst: ip("192.0.2.10"), from: RouterLab.routerMAC, to: RouterLab.routerMAC), on: 0)
        l.send(Packet.arp(op: 1, sha: RouterLab.routerMAC, spa: ip("192.0.2.10"), tpa: ip("192.0.2.1")), on: 1)
        XCTAssertTrue(l.out(0).isEmpty)
        XCTAssertTrue(l.out(1).isEmpty)
        XCTAssertEqual(l.drops(.ownAddressSource), 2)
    }
}
