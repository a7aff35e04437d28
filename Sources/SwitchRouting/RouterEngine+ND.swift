// RouterEngine+ND: IPv6 neighbour discovery on the router's ports (RFC 4861; Linux's ndisc.c with
// proxy_ndp as the oracle), the IPv6 counterpart of RouterEngine+ARP.swift.
//
// Every message is checked as RFC 4861 7.1 asks: hop limit 255 (so it came from the link), code 0,
// a valid ICMPv6 checksum, options of non-zero length, no source link-layer option from the
// unspecified address (`bad-nd` otherwise).
// Neighbour solicitations:
//   - for one of the router's own addresses (its link-local address on any port, its uplink
//     address on the uplink): answered with the override flag, duplicate-address probes too
//     (sender ::; the answer goes to all-nodes), which is how a conflict shows;
//   - on a guest port, for any other target that is not one of the guest's own addresses: answered
//     with the router's MAC, as ARP is (the guest's gateway may be any address); never a probe;
//   - on the uplink, by proxy, for every address routed out a guest port, without the override
//     flag (RFC 4861 7.2.8, as Linux's proxy answers); never a probe.
// Advertisements feed the cache: solicited ones make the entry REACHABLE, and one without the
// override flag does not replace a usable entry's MAC. Router solicitations on a guest port with
// `ra=on` are answered with a router advertisement; a router advertisement is never accepted from
// any port (`router-advertisement`): the router's IPv6 gateway is configured, and guests are never
// routers. Redirects are ignored (`nd-ignored`).
// Router advertisements (ra=on): the router as default router (lifetime 1800 s), the port's MTU,
// the router's MAC, and each prefix of the guest's `ip=` shorter than /128 as on-link, with the
// autonomous flag for a /64 so SLAAC works; sent when the port comes up, then after 16 s twice
// more, then every 200-600 s at random (RFC 4861 6.2.4 and 6.2.1's defaults), and when asked.

import SwitchCore

extension RouterEngine {
    @inline(__always)
    func isNeighbourDiscovery(_ type: UInt8) -> Bool { type >= 133 && type <= 137 }

    /// The MAC of an IPv6 multicast address (RFC 2464 7).
    static func multicastMAC(_ a: IPAddress) -> MACAddress { MACAddress(rawValue: 0x3333_0000_0000 | (a.low & 0xFFFF_FFFF)) }

    static var allNodes: IPAddress { IPAddress(high: 0xFF02_0000_0000_0000, low: 1) }

    static func solicitedNode(_ a: IPAddress) -> IPAddress {
        IPAddress(high: 0xFF02_0000_0000_0000, low: 0x0000_0001_FF00_0000 | (a.low & 0xFF_FFFF))
    }

    /// The link-layer address option of `type` (1 source, 2 target) among the options from
    /// `start` to `end`; `valid` false when an option has length 0 or runs past the end.
    static func linkLayerOption(_ f: UnsafeRawPointer, from start: Int, to end: Int, type: UInt8) -> (mac: MACAddress?, valid: Bool) {
        var o = start
        var found: MACAddress? = nil
        while o + 2 <= end {
            let t = HeaderBytes.byte(f, o), units = Int(HeaderBytes.byte(f, o + 1))
            guard units > 0, o + units * 8 <= end else { return (nil, false) }
            if t == type && units == 1 { found = MACAddress(loadingFrom: f + o + 2) }
            o += units * 8
        }
        return (found, o == end)
    }

    func handleND(_ f: UnsafeMutableRawPointer, length: Int, from p: Int, source: IPAddress, destination: IPAddress) {
        forgetCachedHops()
        let icmpLength = length - 54
        let type = HeaderBytes.byte(f, 54)
        guard HeaderBytes.byte(f, 21) == 255, HeaderBytes.byte(f, 55) == 0, icmpLength >= 8,
              Checksum.fold(Checksum.sum(f + 54, count: icmpLength,
                                         initial: RouterEngine.pseudoHeaderSum(source, destination, length: icmpLength, next: 58))) == 0xFFFF
        else { drop(.badND); return }
        let probe = RouterEngine.isUnspecified(source)
        switch type {
        case 135:
            guard icmpLength >= 24 else { drop(.badND); return }
            let target = RouterEngine.loadIPv6(f, 62)
            let (sll, valid) = RouterEngine.linkLayerOption(f, from: 78, to: length, type: 1)
            guard valid, !RouterEngine.isMulticast(target), !(probe && sll != nil) else { drop(.badND); return }
            var answer = isOwnIPv6(target), proxied = false
            if !answer && !probe {
                if p == 0 {
                    let r = routes6.lookup(high: target.high, low: target.low)
                    answer = r >= 0 && routes6.port(r) != 0
                } else {
                    let guest = portConfigurations[p]?.addresses6 ?? []
                    answer = !guest.contains { $0.contains(high: target.high, low: target.low) } && target != source
                }
                proxied = answer
            }
            if !probe, let sll {
                releaseQueued(neighbours.confirm(source, port: p, mac: sll, solicited: false, create: answer, now: clock))
            }
            if !answer { drop(.ndIgnored); return }
            if probe {
                sendNeighbourAdvertisement(on: p, to: RouterEngine.multicastMAC(RouterEngine.allNodes), destination: RouterEngine.allNodes,
                                           target: target, solicited: false, override: true)
            } else {
                sendNeighbourAdvertisement(on: p, to: sll ?? MACAddress(loadingFrom: f + 6), destination: source,
                                           target: target, solicited: true, override: !proxied)
            }
        case 136:
            guard icmpLength >= 24 else { drop(.badND); return }
            let target = RouterEngine.loadIPv6(f, 62)
            let flags = HeaderBytes.byte(f, 58)
            let solicited = flags & 0x40 != 0, override = flags & 0x20 != 0
            let (tll, valid) = RouterEngine.linkLayerOption(f, from: 78, to: length, type: 2)
            guard valid, !RouterEngine.isMulticast(target), !(solicited && RouterEngine.isMulticast(destination)) else {
                drop(.badND); return
            }
            if let tll {
                releaseQueued(neighbours.confirm(target, port: p, mac: tll, solicited: solicited, create: false,
                                                 override: override, now: clock))
            }
            drop(.ndIgnored)
        case 133:
            let (sll, valid) = RouterEngine.linkLayerOption(f, from: 62, to: length, type: 1)
            guard valid, !(probe && sll != nil) else { drop(.badND); return }
            guard p != 0, portConfigurations[p]?.routerAdvertisements == true else { drop(.ndIgnored); return }
            if let sll { releaseQueued(neighbours.confirm(source, port: p, mac: sll, solicited: false, create: true, now: clock)) }
            sendRouterAdvertisement(on: p)
        case 134:
            drop(.routerAdvertisement)
        default:
            drop(.ndIgnored)
        }
    }

    /// A neighbour advertisement for `target` (with the router's MAC) to `destination`.
    func sendNeighbourAdvertisement(on p: Int, to ethernet: MACAddress, destination: IPAddress, target: IPAddress,
                                    solicited: Bool, override: Bool) {
        guard let b = makeFrame(port: p) else { return }
        ethernet.store(to: b)
        mac.store(to: b + 6)
        let source = isOwnIPv6(target) ? target : sourceAddress(towards: destination)
        writeIPv6Header(b, payload: 32, next: 58, hopLimit: 255, source: source, destination: destination)
        let flags: UInt32 = 0x8000_0000 | (solicited ? 0x4000_0000 : 0) | (override ? 0x2000_0000 : 0)
        b.storeBytes(of: UInt32(0x8800_0000).bigEndian, toByteOffset: 54, as: UInt32.self) // type 136, code 0, checksum 0
        b.storeBytes(of: flags.bigEndian, toByteOffset: 58, as: UInt32.self)
        RouterEngine.storeIPv6(b, 62, target)
        b.storeBytes(of: UInt16(0x0201).bigEndian, toByteOffset: 78, as: UInt16.self) // target link-layer address
        mac.store(to: b + 80)
        finishICMPv6(b, payload: 32, source: source, destination: destination)
        commitFrame(length: 86)
        events.neighbourAdvertisementsSent &+= 1
    }

    /// A neighbour solicitation for `target` on port `p`: to its solicited-node group, or unicast
    /// to `to` (a PROBE of a known neighbour).
    func sendNeighbourSolicitation(for target: IPAddress, on p: Int, to: MACAddress?) {
        guard let b = makeFrame(port: p) else { return }
        let destination = to == nil ? RouterEngine.solicitedNode(target) : target
        (to ?? RouterEngine.multicastMAC(destination)).store(to: b)
        mac.store(to: b + 6)
        let source = sourceAddress(towards: target)
        writeIPv6Header(b, payload: 32, next: 58, hopLimit: 255, source: source, destination: destination)
        b.storeBytes(of: UInt32(0x8700_0000).bigEndian, toByteOffset: 54, as: UInt32.self) // type 135
        b.storeBytes(of: UInt32(0), toByteOffset: 58, as: UInt32.self)
        RouterEngine.storeIPv6(b, 62, target)
        b.storeBytes(of: UInt16(0x0101).bigEndian, toByteOffset: 78, as: UInt16.self) // source link-layer address
        mac.store(to: b + 80)
        finishICMPv6(b, payload: 32, source: source, destination: destination)
        commitFrame(length: 86)
        events.neighbourSolicitationsSent &+= 1
    }

    /// An unsolicited advertisement of `target` on the uplink with the override flag, so LAN hosts
    /// that had it (a guest that moved here) update at once: IPv6's gratuitous ARP.
    func sendUnsolicitedAdvertisement(for target: IPAddress) {
        sendNeighbourAdvertisement(on: 0, to: RouterEngine.multicastMAC(RouterEngine.allNodes), destination: RouterEngine.allNodes,
                                   target: target, solicited: false, override: true)
    }

    /// A router advertisement on guest port `p` to all nodes (on a point-to-point port that is the
    /// guest alone).
    func sendRouterAdvertisement(on p: Int) {
        guard let b = makeFrame(port: p) else { return }
        let prefixes = (portConfigurations[p]?.addresses6 ?? []).filter { $0.length < 128 }.prefix(16)
        let payload = 16 + 8 + 8 + 32 * prefixes.count
        RouterEngine.multicastMAC(RouterEngine.allNodes).store(to: b)
        mac.store(to: b + 6)
        writeIPv6Header(b, payload: payload, next: 58, hopLimit: 255, source: linkLocal, destination: RouterEngine.allNodes)
        let m = b + 54
        m.storeBytes(of: UInt32(0x8600_0000).bigEndian, as: UInt32.self)  // type 134, code 0
        m.storeBytes(of: UInt8(64), toByteOffset: 4, as: UInt8.self)       // current hop limit
        m.storeBytes(of: UInt8(0), toByteOffset: 5, as: UInt8.self)        // no M or O flag: no DHCPv6
        m.storeBytes(of: UInt16(1800).bigEndian, toByteOffset: 6, as: UInt16.self)
        m.storeBytes(of: UInt64(0), toByteOffset: 8, as: UInt64.self)      // reachable, retransmit: unspecified
        m.storeBytes(of: UInt16(0x0101).bigEndian, toByteOffset: 16, as: UInt16.self)
        mac.store(to: m + 18)
        m.storeBytes(of: UInt32(0x0501_0000).bigEndian, toByteOffset: 24, as: UInt32.self)
        m.storeBytes(of: UInt32(bitPattern: mtu[p]).bigEndian, toByteOffset: 28, as: UInt32.self)
        var o = 32
        for prefix in prefixes {
            m.storeBytes(of: UInt16(0x0304).bigEndian, toByteOffset: o, as: UInt16.self)
            m.storeBytes(of: UInt8(prefix.length), toByteOffset: o + 2, as: UInt8.self)
            m.storeBytes(of: UInt8(prefix.length == 64 ? 0xC0 : 0x80), toByteOffset: o + 3, as: UInt8.self) // L, A
            m.storeBytes(of: UInt32(2_592_000).bigEndian, toByteOffset: o + 4, as: UInt32.self)              // valid 30 d
            m.storeBytes(of: UInt32(604_800).bigEndian, toByteOffset: o + 8, as: UInt32.self)                // preferred 7 d
            m.storeBytes(of: UInt32(0), toByteOffset: o + 12, as: UInt32.self)
            RouterEngine.storeIPv6(m, o + 16, IPAddress(high: prefix.high, low: prefix.low))
            o += 32
        }
        finishICMPv6(b, payload: payload, source: linkLocal, destination: RouterEngine.allNodes)
        commitFrame(length: 54 + payload)
        events.routerAdvertisementsSent &+= 1
    }

    /// Unsolicited router advertisements that are due (between batches).
    func advertiseRouters(now: UInt32) {
        guard anyRouterAdvertisements else { return }
        for p in 1..<max(portCount, 1) where inUse[p] && up[p] && portConfigurations[p]?.routerAdvertisements == true {
            guard Int32(bitPattern: now &- advertisementDeadline[p]) >= 0 else { continue }
            sendRouterAdvertisement(on: p)
            advertisementsSent[p] &+= 1
            neighbourRandom ^= neighbourRandom << 13; neighbourRandom ^= neighbourRandom >> 7; neighbourRandom ^= neighbourRandom << 17
            let interval: UInt32 = advertisementsSent[p] < 3 ? 16_000 : 200_000 + UInt32(neighbourRandom % 400_001)
            advertisementDeadline[p] = now &+ interval
        }
    }
}
