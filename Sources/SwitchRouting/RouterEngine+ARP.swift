// RouterEngine+ARP: ARP on the router's ports (Linux's arp_process with proxy_arp as the oracle).
//
// On a guest port the guest's gateway may be any address (vif-route gives each vif dom0's address,
// so guests are set up with that as their gateway): the router answers every request whose target
// is not one of the guest's own addresses, with its MAC. It never answers a probe (sender 0.0.0.0)
// except for the router's own address, so the guest's duplicate-address detection passes, as
// Linux answers probes only for its local addresses.
// On the uplink it answers for its own address (probes included, which is how a conflict shows)
// and, by proxy ARP, for every address whose route leaves by a guest port, never for a probe.
// Unlike Linux it answers at once: Linux holds a proxied answer for a random 0-0.8 s (proxy_delay).
// Every answer is unicast to the requester's ARP sender address, with the router's MAC as the
// sender hardware address.
// The cache (NeighbourTable): a reply makes its sender REACHABLE; a request addressed to the
// router creates or updates its sender (STALE); other requests and gratuitous ARP update an
// existing entry only, as Linux with the default arp_accept=0.

import SwitchCore

extension RouterEngine {
    func handleARP(_ i: Int, from p: Int) {
        forgetCachedHops()
        let f = UnsafeRawPointer(batch.frames[i])
        let hrd = HeaderBytes.be16(f, 14), pro = HeaderBytes.be16(f, 16)
        let hln = HeaderBytes.byte(f, 18), pln = HeaderBytes.byte(f, 19), op = HeaderBytes.be16(f, 20)
        guard hrd == 1, pro == 0x0800, hln == 6, pln == 4, op == 1 || op == 2 else { drop(.badARP); return }
        let sha = MACAddress(loadingFrom: f + 22)
        let sip = HeaderBytes.be32(f, 28)
        let tip = HeaderBytes.be32(f, 38)
        let own = address
        if op == 2 {
            // A reply: solicited or not, it is the freshest word on that address.
            if sip != 0 { releaseQueued(neighbours.confirm(sip, port: p, mac: sha, solicited: true, create: false, now: clock)) }
            drop(.arpIgnored)
            return
        }
        var answer = false
        if p == 0 {
            if let own, tip == own {
                answer = true
            } else if sip != 0 && sip != tip {
                let r = routes.lookup(tip)
                answer = r >= 0 && routes.route(r).port != 0
            }
        } else {
            let guest = portConfigurations[p]?.addresses ?? []
            let isGuestsOwn = guest.contains { $0.contains(tip) }
            if sip == 0 {
                answer = own != nil && tip == own!
            } else {
                answer = !isGuestsOwn && sip != tip
            }
        }
        // The requester is a neighbour: update it (create it when the request is for us).
        if sip != 0 {
            releaseQueued(neighbours.confirm(sip, port: p, mac: sha, solicited: false, create: answer, now: clock))
        }
        if !answer { drop(.arpIgnored); return }
        sendARPReply(to: sha, ip: sip, for: tip, on: p)
    }

    /// An ARP reply `tip is-at mac` to `sha`/`sip`.
    func sendARPReply(to sha: MACAddress, ip sip: UInt32, for tip: UInt32, on p: Int) {
        guard let b = makeFrame(port: p) else { return }
        writeARP(b, op: 2, ethernetDestination: sha, sha: mac, spa: tip, tha: sha, tpa: sip)
        commitFrame(length: 60)
        events.arpRepliesSent &+= 1
    }

    /// An ARP request for `target` on port `p` from the router's address: broadcast, or unicast to
    /// `to` (a PROBE of a known neighbour).
    func sendARPRequest(for target: UInt32, on p: Int, to: MACAddress?) {
        guard let own = address, let b = makeFrame(port: p) else { return }
        writeARP(b, op: 1, ethernetDestination: to ?? .broadcast, sha: mac, spa: own, tha: .zero, tpa: target)
        commitFrame(length: 60)
        events.arpRequestsSent &+= 1
    }

    /// Gratuitous ARP for `address` on the uplink (`address` is-at the router's MAC), so LAN hosts
    /// that had it in their caches (a guest that moved here from another host) update at once.
    func sendGratuitousARP(for address: UInt32) {
        guard let b = makeFrame(port: 0) else { return }
        writeARP(b, op: 1, ethernetDestination: .broadcast, sha: mac, spa: address, tha: .zero, tpa: address)
        commitFrame(length: 60)
        events.arpRequestsSent &+= 1
    }

    func writeARP(_ b: UnsafeMutableRawPointer, op: UInt16, ethernetDestination: MACAddress, sha: MACAddress,
                  spa: UInt32, tha: MACAddress, tpa: UInt32) {
        ethernetDestination.store(to: b)
        mac.store(to: b + 6)
        b.storeBytes(of: UInt16(0x0806).bigEndian, toByteOffset: 12, as: UInt16.self)
        b.storeBytes(of: UInt16(1).bigEndian, toByteOffset: 14, as: UInt16.self)
        b.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 16, as: UInt16.self)
        b.storeBytes(of: UInt8(6), toByteOffset: 18, as: UInt8.self)
        b.storeBytes(of: UInt8(4), toByteOffset: 19, as: UInt8.self)
        b.storeBytes(of: op.bigEndian, toByteOffset: 20, as: UInt16.self)
        sha.store(to: b + 22)
        b.storeBytes(of: spa.bigEndian, toByteOffset: 28, as: UInt32.self)
        tha.store(to: b + 32)
        b.storeBytes(of: tpa.bigEndian, toByteOffset: 38, as: UInt32.self)
        (b + 42).initializeMemory(as: UInt8.self, repeating: 0, count: 18) // pad to 60 bytes
    }

    /// Queued frames whose next hop just resolved: their Ethernet header is written now and they
    /// go out with this batch.
    func releaseQueued(_ slots: [Int32]) {
        forgetCachedHops()
        for s in slots {
            let (f, len, vnet) = neighbours.slotFrame(s)
            let k = released.count
            if HeaderBytes.be16(f, 12) == 0x86DD {
                // IPv6: its MTU was checked before it was queued (a router never fragments IPv6).
                let dst = RouterEngine.loadIPv6(f, 38)
                let r = routes6.lookup(high: dst.high, low: dst.low)
                guard k < released.capacity, r >= 0 else { neighbours.release([s]); drop(.noRoute); continue }
                let q = routes6.port(r)
                guard case .mac(let m) = nextHopMAC6(routes6.gateway(r) ?? dst, port: q) else {
                    neighbours.release([s]); drop(.neighbourUnreachable); continue
                }
                m.store(to: f)
                mac.store(to: f + 6)
                released.append(f, length: len, vnet: vnet)
                releasedPort[k] = Int32(q)
                markTouched(q)
                releasedSlot[k] = s
                continue
            }
            let dst = HeaderBytes.be32(f, 30)
            let r = routes.lookup(dst)
            guard k < released.capacity, r >= 0 else { neighbours.release([s]); drop(.noRoute); continue }
            let route = routes.route(r)
            let hop = route.gateway != 0 ? route.gateway : dst
            guard case .mac(let m) = nextHopMAC(hop, port: route.port) else {
                neighbours.release([s]); drop(.neighbourUnreachable); continue
            }
            if len - 14 > Int(mtu[route.port]) {
                // Queued before its next hop was known, and longer than that port's MTU without DF
                // (with DF it got its ICMP error before it was queued): fragments, now.
                let ihl = Int(HeaderBytes.byte(f, 14) & 0x0F) * 4
                sendFragments(f, length: len, ihl: ihl, vnet: vnet, on: route.port, to: m)
                neighbours.release([s])
                continue
            }
            m.store(to: f)
            mac.store(to: f + 6)
            released.append(f, length: len, vnet: vnet)
            releasedPort[k] = Int32(route.port)
            markTouched(route.port)
            releasedSlot[k] = s
        }
    }
}
