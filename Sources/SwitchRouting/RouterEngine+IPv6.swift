// RouterEngine+IPv6: forwarding an IPv6 packet, and the ICMPv6 the router sends (Linux's
// ip6_rcv_core, ip6_forward and icmp6_send as the oracle). vif-route has no IPv6 at all; here a
// guest's IPv6 addresses in `ip=` are routed as its IPv4 ones are.
//
// In order: the header (version 6, payload length within the frame: `bad-ipv6-header`), a
// multicast source (`martian`), a multicast destination (neighbour discovery goes to
// RouterEngine+ND.swift; everything else, MLD included, is `ipv6-multicast`), the router's own
// addresses (its link-local address on every port and its address on the uplink: echo answered,
// UDP answered port unreachable, neighbour discovery handled, the rest `local-delivery`), then
// for forwarding: the unspecified and loopback addresses and link-local destinations (`martian`),
// a link-local source (`martian`, with destination unreachable "beyond scope" as Linux sends),
// a guest port whose guest has no IPv6 address (`spoofed-source-ip`: only link-local traffic with
// the router), the reverse path on the uplink, the hop limit (at most 1: time exceeded), the
// route (none: unreachable "no route"), the egress port (down: "address unreachable"), and the
// egress MTU: a router never fragments IPv6, so a longer packet gets packet too big with the
// egress MTU (a GSO super-frame counts by its segments, as for IPv4). Then the FORWARD chain, the
// hop limit lowered in place (IPv6 has no header checksum and no transport checksum covers the
// hop limit, so offloaded frames stay valid untouched), and the next hop's MAC from the neighbour
// cache (resolved by neighbour solicitation).
// ICMPv6 errors (RFC 4443) come from the router's address on the uplink, or its link-local
// address when the packet's source is link-local (or the router has no IPv6 address), quote as
// much of the packet as fits in 1280 bytes, are never sent about an ICMPv6 error or to a
// multicast or unspecified source, and share IPv4's rate limit (Linux shares icmp_global; packet
// too big is exempt per destination, as its ratemask leaves it out).

import SwitchCore

extension RouterEngine {
    @inline(__always)
    static func loadIPv6(_ f: UnsafeRawPointer, _ o: Int) -> IPAddress {
        let a = HeaderBytes.ipv6(f, o)
        return IPAddress(high: a.high, low: a.low)
    }

    @inline(__always)
    static func storeIPv6(_ b: UnsafeMutableRawPointer, _ o: Int, _ a: IPAddress) {
        b.storeBytes(of: a.high.bigEndian, toByteOffset: o, as: UInt64.self)
        b.storeBytes(of: a.low.bigEndian, toByteOffset: o + 8, as: UInt64.self)
    }

    @inline(__always) static func isMulticast(_ a: IPAddress) -> Bool { a.high >> 56 == 0xFF }
    @inline(__always) static func isLinkLocal(_ a: IPAddress) -> Bool { a.high >> 54 == 0x3FA } // fe80::/10
    @inline(__always) static func isUnspecified(_ a: IPAddress) -> Bool { a.high == 0 && a.low == 0 }

    /// The router's own IPv6 addresses: its link-local one (every port) and its uplink address.
    @inline(__always)
    func isOwnIPv6(_ a: IPAddress) -> Bool {
        (a.high == linkLocal.high && a.low == linkLocal.low) || (hasAddress6 && a.high == address6.high && a.low == address6.low)
    }

    /// The source the router uses towards `peer`: link-local for a link-local peer, else its
    /// uplink address when it has one.
    func sourceAddress(towards peer: IPAddress) -> IPAddress {
        if RouterEngine.isLinkLocal(peer) || !hasAddress6 { return linkLocal }
        return address6
    }

    /// The pseudo-header sum of RFC 8200 8.1.
    static func pseudoHeaderSum(_ s: IPAddress, _ d: IPAddress, length: Int, next: UInt8) -> UInt64 {
        @inline(__always) func words(_ w: UInt64) -> UInt64 { (w >> 32) &+ (w & 0xFFFF_FFFF) }
        return words(s.high) &+ words(s.low) &+ words(d.high) &+ words(d.low) &+ UInt64(length) &+ UInt64(next)
    }

    func handleIPv6(_ i: Int, from p: Int) {
        let f = batch.frames[i]
        let len = Int(batch.lengths[i])
        guard HeaderBytes.byte(f, 14) >> 4 == 6 else { drop(.badIPv6Header); return }
        let payload = Int(HeaderBytes.be16(f, 18))
        guard 54 + payload <= len else { drop(.badIPv6Header); return }
        let src = RouterEngine.loadIPv6(f, 22), dst = RouterEngine.loadIPv6(f, 38)
        let next = HeaderBytes.byte(f, 20)
        if RouterEngine.isMulticast(src) { drop(.martian); return }
        if RouterEngine.isMulticast(dst) {
            if next == 58 && payload >= 4, isNeighbourDiscovery(HeaderBytes.byte(f, 54)) {
                handleND(f, length: 54 + payload, from: p, source: src, destination: dst)
            } else {
                drop(.ipv6Multicast)
            }
            return
        }
        if isOwnIPv6(dst) {
            deliverLocally6(wholeFrame(i, from: p), length: 54 + payload, from: p, source: src, destination: dst)
            return
        }
        if RouterEngine.isUnspecified(src) || RouterEngine.isUnspecified(dst) || (dst.high == 0 && dst.low == 1)
            || (src.high == 0 && src.low == 1) || RouterEngine.isLinkLocal(dst) {
            drop(.martian); return
        }
        if RouterEngine.isLinkLocal(src) {
            drop(.martian)
            sendICMPv6Error(about: f, length: len, type: 1, code: 2, info: 0, port: p)
            return
        }
        if p != 0 && noIPv6[p] { drop(.spoofedSourceIP); return }
        if p == 0 {
            let r = routes6.lookup(high: src.high, low: src.low)
            if r >= 0 && routes6.port(r) != 0 { drop(.reversePath); return }
        }
        if HeaderBytes.byte(f, 21) <= 1 {
            drop(.hopLimitExceeded)
            sendICMPv6Error(about: f, length: len, type: 3, code: 0, info: 0, port: p)
            return
        }
        let r = routes6.lookup(high: dst.high, low: dst.low)
        guard r >= 0 else {
            drop(.noRoute)
            sendICMPv6Error(about: f, length: len, type: 1, code: 0, info: 0, port: p)
            return
        }
        let q = routes6.port(r)
        guard inUse[q], up[q] else {
            drop(.egressPortDown)
            sendICMPv6Error(about: f, length: len, type: 1, code: 3, info: 0, port: p)
            return
        }
        let egressMTU = Int(mtu[q])
        let vnet = batch.vnet[i]
        let tooLong = vnet.gsoType != VirtioNetHeader.gsoNone
            ? RouterEngine.segmentLength6(f, payload: payload, vnet: vnet) > egressMTU
            : 40 + payload > egressMTU
        if tooLong {
            drop(.packetTooBig)
            sendICMPv6Error(about: f, length: len, type: 2, code: 0, info: UInt32(egressMTU), port: p)
            return
        }
        if let prog = filterProgram, !prog.forwardIsTrivial,
           !prog.allows(chain: FilterProgram.forward, frame: f, length: len, info: batch.info[i], inPort: p, outPort: q) {
            drop(.filtered)
            return
        }
        f.storeBytes(of: HeaderBytes.byte(f, 21) &- 1, toByteOffset: 21, as: UInt8.self)
        let hop = routes6.gateway(r) ?? dst
        switch nextHopMAC6(hop, port: q) {
        case .mac(let m):
            m.store(to: f)
            mac.store(to: f + 6)
            sendForwarded(i, on: q)
        case .pending(let entry, let request):
            if request { sendNeighbourSolicitation(for: hop, on: q, to: nil) }
            if !neighbours.enqueue(entry, frame: wholeFrame(i, from: p), length: 54 + payload, vnet: vnet) { drop(.neighbourQueueFull) }
        case .full:
            drop(.neighbourTableFull)
        }
    }

    /// As `nextHopMAC` for IPv6: the guest's MAC on its point-to-point port, else the cache.
    @inline(__always)
    func nextHopMAC6(_ hop: IPAddress, port q: Int) -> NeighbourTable.Resolution {
        let m = guestMAC[q]
        if m != 0 { return .mac(MACAddress(rawValue: m)) }
        if q == cachedPort6 && hop.low == cachedHop6.low && hop.high == cachedHop6.high { return .mac(cachedMAC6) }
        let r = neighbours.resolve(hop, port: q, now: clock)
        if case .mac(let found) = r { cachedPort6 = q; cachedHop6 = hop; cachedMAC6 = found }
        return r
    }

    /// The network-layer length of each segment of an IPv6 GSO super-frame: the IPv6 header, the
    /// headers up to the transport (csum_start says where it begins), the transport header, gso_size.
    static func segmentLength6(_ f: UnsafeRawPointer, payload: Int, vnet: VirtioNetHeader) -> Int {
        var l4 = 54
        if HeaderBytes.byte(f, 20) != 6 && HeaderBytes.byte(f, 20) != 17 && Int(vnet.csumStart) > 54 {
            l4 = Int(vnet.csumStart)
        }
        let proto = l4 == 54 ? HeaderBytes.byte(f, 20) : 6
        let transport = proto == 17 ? 8 : (l4 + 13 <= 54 + payload ? Int(HeaderBytes.byte(f, l4 + 12) >> 4) * 4 : 20)
        return l4 - 14 + transport + Int(vnet.gsoSize)
    }

    // MARK: the router's own addresses

    func deliverLocally6(_ f: UnsafeMutableRawPointer, length: Int, from p: Int, source: IPAddress, destination: IPAddress) {
        let next = HeaderBytes.byte(f, 20)
        if next == 58 && length >= 58 {
            let type = HeaderBytes.byte(f, 54)
            if type == 128 { sendEchoReply6(f, length: length, on: p); return }
            if isNeighbourDiscovery(type) { handleND(f, length: length, from: p, source: source, destination: destination); return }
        }
        drop(.localDelivery)
        if next == 17 { sendICMPv6Error(about: f, length: length, type: 1, code: 4, info: 0, port: p) }
    }

    func sendEchoReply6(_ f: UnsafeRawPointer, length: Int, on p: Int) {
        guard length <= RouterEngine.madeSlotSize, let b = makeFrame(port: p) else { return }
        b.copyMemory(from: f, byteCount: length)
        MACAddress(loadingFrom: f + 6).store(to: b)
        mac.store(to: b + 6)
        // Addresses swapped (the pseudo-header's sum is the same), hop limit 64, type 129.
        (b + 22).copyMemory(from: f + 38, byteCount: 16)
        (b + 38).copyMemory(from: f + 22, byteCount: 16)
        b.storeBytes(of: UInt8(64), toByteOffset: 21, as: UInt8.self)
        let word = HeaderBytes.be16(f, 54)
        let check = HeaderBytes.be16(f, 56)
        b.storeBytes(of: UInt8(129), toByteOffset: 54, as: UInt8.self)
        b.storeBytes(of: Checksum.update(check, old: word, new: (word & 0x00FF) | 0x8100).bigEndian, toByteOffset: 56, as: UInt16.self)
        commitFrame(length: length)
        events.echoRepliesSent &+= 1
    }

    // MARK: ICMPv6 errors

    /// Sends ICMPv6 `type`/`code` about the IPv6 packet in `f` back towards its source, on port
    /// `port` or, when nil, the port of the route to its source. `info` is the word after the
    /// checksum (the MTU for packet too big).
    func sendICMPv6Error(about f: UnsafeRawPointer, length: Int, type: UInt8, code: UInt8, info: UInt32, port: Int? = nil) {
        guard length >= 54 else { return }
        let src = RouterEngine.loadIPv6(f, 22), dst = RouterEngine.loadIPv6(f, 38)
        if RouterEngine.isUnspecified(src) || RouterEngine.isMulticast(src) { return }
        if RouterEngine.isMulticast(dst) && type != 2 { return }
        if HeaderBytes.byte(f, 20) == 58 && length >= 55 && HeaderBytes.byte(f, 54) < 128 { return }
        let q: Int
        if let port { q = port } else {
            let r = routes6.lookup(high: src.high, low: src.low)
            guard r >= 0 else { return }
            q = routes6.port(r)
        }
        let folded = UInt32(truncatingIfNeeded: src.high ^ src.high >> 32 ^ src.low ^ src.low >> 32)
        guard rateLimit.allow(folded, now: clock, perDestination: type != 2) else { events.icmpRateLimited &+= 1; return }
        guard let b = makeFrame(port: q) else { return }
        let quoted = min(length - 14, 1280 - 48)
        MACAddress(loadingFrom: f + 6).store(to: b)
        mac.store(to: b + 6)
        let source = sourceAddress(towards: src)
        writeIPv6Header(b, payload: 8 + quoted, next: 58, hopLimit: 64, source: source, destination: src)
        let icmp = b + 54
        icmp.storeBytes(of: type, as: UInt8.self)
        icmp.storeBytes(of: code, toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: info.bigEndian, toByteOffset: 4, as: UInt32.self)
        (icmp + 8).copyMemory(from: f + 14, byteCount: quoted)
        finishICMPv6(b, payload: 8 + quoted, source: source, destination: src)
        commitFrame(length: 54 + 8 + quoted)
        events.icmpErrorsSent &+= 1
    }

    /// The Ethernet type and IPv6 header of a frame the router makes (addresses set by the caller
    /// for Ethernet).
    func writeIPv6Header(_ b: UnsafeMutableRawPointer, payload: Int, next: UInt8, hopLimit: UInt8,
                         source: IPAddress, destination: IPAddress) {
        b.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
        b.storeBytes(of: UInt32(0x6000_0000).bigEndian, toByteOffset: 14, as: UInt32.self)
        b.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 18, as: UInt16.self)
        b.storeBytes(of: next, toByteOffset: 20, as: UInt8.self)
        b.storeBytes(of: hopLimit, toByteOffset: 21, as: UInt8.self)
        RouterEngine.storeIPv6(b, 22, source)
        RouterEngine.storeIPv6(b, 38, destination)
    }

    /// Fills in the ICMPv6 checksum of the message at offset 54 (its field zeroed by the caller).
    func finishICMPv6(_ b: UnsafeMutableRawPointer, payload: Int, source: IPAddress, destination: IPAddress) {
        let sum = RouterEngine.pseudoHeaderSum(source, destination, length: payload, next: 58)
        b.storeBytes(of: Checksum.of(b + 54, count: payload, initial: sum).bigEndian, toByteOffset: 56, as: UInt16.self)
    }
}
