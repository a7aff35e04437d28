// RouterEngine+IPv4: forwarding an IPv4 packet, and the ICMP the router sends (Linux's ip_rcv_core,
// ip_forward and icmp_send as the oracle).
//
// In order, as Linux checks them: the header (version 4, header length at least 20 and within
// the frame, total length within the frame: `bad-ipv4-header`), its checksum
// (`bad-ipv4-checksum`), martian addresses, the reverse path on the uplink (strict rp_filter: a
// source routed out a guest port cannot arrive on the uplink), the router's own address (echo
// requests answered, UDP answered port unreachable, the rest dropped), TTL (at most 1: time
// exceeded), the route (none: net unreachable), the egress port (down: host unreachable), the
// egress MTU. For the MTU a GSO super-frame counts by the segments it will become: the network
// header, the TCP header (or UDP's 8 bytes) and gso_size, as skb_gso_validate_network_len; its
// total length is never compared. A packet longer than the MTU with DF set gets fragmentation
// needed with the egress MTU, which is what path MTU discovery needs; without DF it is sent as
// fragments (a partial checksum is completed first, as ip_do_fragment does with
// skb_checksum_help). TTL and header checksum are rewritten in place with RFC 1624's update; the
// Ethernet header gets the next hop's MAC and the router's.
// The ebtables-style FORWARD chain (the router's filter rules) runs after those checks and before
// the frame is changed: rules match the frame as it arrived, its ingress port (-i) and the port the
// route chose (-o). A refused frame is `filtered`, without an ICMP error (as a DROP target).
// ICMP errors come from the router's own address, quote the offending header and up to 576 bytes
// in all (RFC 1812 4.3.2.3), go back the way the packet came, are never sent about an ICMP error,
// a non-first fragment or a packet from a broadcast, multicast or zero source, and are
// rate-limited (ICMPRateLimit.swift).

import SwitchCore

extension RouterEngine {
    @inline(__always)
    static func isMartian(_ a: UInt32) -> Bool {
        let top = a >> 24
        return top == 0 || top == 127 || a >> 28 >= 0xE
    }

    func forwardIPv4(_ i: Int, from p: Int) {
        let f = batch.frames[i]
        let len = Int(batch.lengths[i])
        let vhl = HeaderBytes.byte(f, 14)
        let ihl = Int(vhl & 0x0F) * 4
        guard vhl >> 4 == 4, ihl >= 20, len >= 14 + ihl else { drop(.badIPv4Header); return }
        let total = Int(HeaderBytes.be16(f, 16))
        guard total >= ihl, 14 + total <= len else { drop(.badIPv4Header); return }
        guard Checksum.fold(Checksum.sum(f + 14, count: ihl)) == 0xFFFF else { drop(.badIPv4Checksum); return }
        let src = HeaderBytes.be32(f, 26), dst = HeaderBytes.be32(f, 30)
        if RouterEngine.isMartian(src) || RouterEngine.isMartian(dst) { drop(.martian); return }
        if p == 0 {
            let r = routes.lookup(src)
            if r >= 0 && routes.route(r).port != 0 { drop(.reversePath); return }
        }
        if let own = address, dst == own {
            deliverLocally(wholeFrame(i, from: p), length: 14 + total, ihl: ihl, from: p)
            return
        }
        let ttl = HeaderBytes.byte(f, 22)
        if ttl <= 1 {
            drop(.ttlExceeded)
            sendICMPError(about: f, length: len, type: 11, code: 0, info: 0, port: p)
            return
        }
        let r = routes.lookup(dst)
        guard r >= 0 else {
            drop(.noRoute)
            sendICMPError(about: f, length: len, type: 3, code: 0, info: 0, port: p)
            return
        }
        let route = routes.route(r)
        let q = route.port
        guard inUse[q], up[q] else {
            drop(.egressPortDown)
            sendICMPError(about: f, length: len, type: 3, code: 1, info: 0, port: p)
            return
        }
        let egressMTU = Int(mtu[q])
        let dontFragment = HeaderBytes.be16(f, 20) & 0x4000 != 0
        let vnet = batch.vnet[i]
        var fragment = false
        if vnet.gsoType != VirtioNetHeader.gsoNone {
            if RouterEngine.segmentLength(f, ihl: ihl, vnet: vnet) > egressMTU {
                if dontFragment {
                    drop(.fragmentationNeeded)
                    sendICMPError(about: f, length: len, type: 3, code: 4, info: UInt32(egressMTU), port: p)
                } else {
                    drop(.gsoTooLong)
                }
                return
            }
        } else if total > egressMTU {
            if dontFragment {
                drop(.fragmentationNeeded)
                sendICMPError(about: f, length: len, type: 3, code: 4, info: UInt32(egressMTU), port: p)
                return
            }
            fragment = true
        }
        // The FORWARD chain, after the checks a router makes and before the frame is changed, so
        // rules see it as the guest or LAN host sent it (their MACs, the TTL they set).
        if let prog = filterProgram, !prog.forwardIsTrivial,
           !prog.allows(chain: FilterProgram.forward, frame: f, length: len, info: batch.info[i], inPort: p, outPort: q) {
            drop(.filtered)
            return
        }
        // TTL - 1, and the header checksum after it (RFC 1624 over the TTL|protocol word).
        let word = HeaderBytes.be16(f, 22)
        let check = HeaderBytes.be16(f, 24)
        f.storeBytes(of: (word &- 0x0100).bigEndian, toByteOffset: 22, as: UInt16.self)
        f.storeBytes(of: Checksum.update(check, old: word, new: word &- 0x0100).bigEndian, toByteOffset: 24, as: UInt16.self)
        let hop = route.gateway != 0 ? route.gateway : dst
        switch nextHopMAC(hop, port: q) {
        case .mac(let m):
            if fragment {
                sendFragments(wholeFrame(i, from: p), length: 14 + total, ihl: ihl, vnet: vnet, on: q, to: m)
            } else {
                m.store(to: f)
                mac.store(to: f + 6)
                sendForwarded(i, on: q)
            }
        case .pending(let entry, let request):
            if request { sendARPRequest(for: hop, on: q, to: nil) }
            if !neighbours.enqueue(entry, frame: wholeFrame(i, from: p), length: 14 + total, vnet: vnet) { drop(.neighbourQueueFull) }
        case .full:
            drop(.neighbourTableFull)
        }
    }

    /// The MAC of next hop `hop` on port `q`: on a guest port whose guest's MAC is known, that MAC
    /// without asking (the link is point-to-point: the guest is the only host on it), else the cache.
    @inline(__always)
    func nextHopMAC(_ hop: UInt32, port q: Int) -> NeighbourTable.Resolution {
        let m = guestMAC[q]
        if m != 0 { return .mac(MACAddress(rawValue: m)) }
        let key = UInt64(q) << 32 | UInt64(hop)
        if key == cachedHop { return .mac(cachedMAC) }
        let r = neighbours.resolve(hop, port: q, now: clock)
        if case .mac(let found) = r { cachedHop = key; cachedMAC = found }
        return r
    }

    /// The network-layer length of each segment a GSO super-frame becomes.
    static func segmentLength(_ f: UnsafeRawPointer, ihl: Int, vnet: VirtioNetHeader) -> Int {
        let l4 = 14 + ihl
        let transport: Int
        if HeaderBytes.byte(f, 23) == 6 {
            transport = Int(HeaderBytes.byte(f, l4 + 12) >> 4) * 4
        } else {
            transport = 8
        }
        return ihl + transport + Int(vnet.gsoSize)
    }

    // MARK: the router's own address

    func deliverLocally(_ f: UnsafeMutableRawPointer, length: Int, ihl: Int, from p: Int) {
        let proto = HeaderBytes.byte(f, 23)
        let offset = HeaderBytes.be16(f, 20) & 0x3FFF
        if proto == 1 && offset == 0 && length >= 14 + ihl + 8 && HeaderBytes.byte(f, 14 + ihl) == 8 {
            sendEchoReply(f, length: length, ihl: ihl, on: p)
            return
        }
        drop(.localDelivery)
        if proto == 17 { sendICMPError(about: f, length: length, type: 3, code: 3, info: 0, port: p) }
    }

    func sendEchoReply(_ f: UnsafeRawPointer, length: Int, ihl: Int, on p: Int) {
        guard length <= RouterEngine.madeSlotSize, let b = makeFrame(port: p) else { return }
        b.copyMemory(from: f, byteCount: length)
        // Back to the sender's MAC, from ours; addresses swapped; TTL 64.
        MACAddress(loadingFrom: f + 6).store(to: b)
        mac.store(to: b + 6)
        let src = HeaderBytes.be32(f, 26), dst = HeaderBytes.be32(f, 30)
        b.storeBytes(of: dst.bigEndian, toByteOffset: 26, as: UInt32.self)
        b.storeBytes(of: src.bigEndian, toByteOffset: 30, as: UInt32.self)
        b.storeBytes(of: UInt8(64), toByteOffset: 22, as: UInt8.self)
        b.storeBytes(of: UInt16(0), toByteOffset: 24, as: UInt16.self)
        b.storeBytes(of: Checksum.of(b + 14, count: ihl).bigEndian, toByteOffset: 24, as: UInt16.self)
        // ICMP type 0, checksum updated for the type change (8 -> 0 in the type|code word).
        let icmp = 14 + ihl
        let word = HeaderBytes.be16(f, icmp)
        let check = HeaderBytes.be16(f, icmp + 2)
        b.storeBytes(of: UInt8(0), toByteOffset: icmp, as: UInt8.self)
        b.storeBytes(of: Checksum.update(check, old: word, new: word & 0x00FF).bigEndian, toByteOffset: icmp + 2, as: UInt16.self)
        commitFrame(length: length)
        events.echoRepliesSent &+= 1
    }

    // MARK: ICMP errors

    /// Sends ICMP `type`/`code` about the IPv4 packet in `f` (an Ethernet frame) back towards its
    /// source: on port `port` (where it came from) or, when nil, on the port of the route to its
    /// source, to the frame's Ethernet source (the previous hop). `info` is the second word of the
    /// ICMP header (the next-hop MTU for fragmentation needed).
    func sendICMPError(about f: UnsafeRawPointer, length: Int, type: UInt8, code: UInt8, info: UInt32, port: Int? = nil) {
        guard let own = address, length >= 34 else { return }
        let ihl = Int(HeaderBytes.byte(f, 14) & 0x0F) * 4
        let src = HeaderBytes.be32(f, 26), dst = HeaderBytes.be32(f, 30)
        // Never about an error, a non-first fragment, or to a source that is not one host.
        if HeaderBytes.be16(f, 20) & 0x1FFF != 0 { return }
        if src == 0 || src == 0xFFFF_FFFF || src >> 28 == 0xE || dst >> 28 == 0xE || dst == 0xFFFF_FFFF { return }
        if HeaderBytes.byte(f, 23) == 1 && length >= 14 + ihl + 1 {
            let t = HeaderBytes.byte(f, 14 + ihl)
            if t == 3 || t == 4 || t == 5 || t == 11 || t == 12 { return }
        }
        let q: Int
        if let port { q = port } else {
            let r = routes.lookup(src)
            guard r >= 0 else { return }
            q = routes.route(r).port
        }
        let pmtu = type == 3 && code == 4
        guard rateLimit.allow(src, now: clock, perDestination: !pmtu) else { events.icmpRateLimited &+= 1; return }
        guard let b = makeFrame(port: q) else { return }
        let quoted = min(length - 14, 576 - 28)
        MACAddress(loadingFrom: f + 6).store(to: b)
        mac.store(to: b + 6)
        b.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
        let totalLength = 20 + 8 + quoted
        writeIPv4Header(b + 14, totalLength: totalLength, protocol: 1, source: own, destination: src, tos: 0xC0)
        let icmp = b + 34
        icmp.storeBytes(of: type, as: UInt8.self)
        icmp.storeBytes(of: code, toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: info.bigEndian, toByteOffset: 4, as: UInt32.self)
        (icmp + 8).copyMemory(from: f + 14, byteCount: quoted)
        icmp.storeBytes(of: Checksum.of(icmp, count: 8 + quoted).bigEndian, toByteOffset: 2, as: UInt16.self)
        commitFrame(length: max(60, 14 + totalLength))
        events.icmpErrorsSent &+= 1
    }

    /// An IPv4 header without options at `h`, its checksum filled in.
    func writeIPv4Header(_ h: UnsafeMutableRawPointer, totalLength: Int, protocol proto: UInt8, source: UInt32,
                         destination: UInt32, tos: UInt8 = 0, ttl: UInt8 = 64) {
        identification &+= 1
        h.storeBytes(of: UInt8(0x45), as: UInt8.self)
        h.storeBytes(of: tos, toByteOffset: 1, as: UInt8.self)
        h.storeBytes(of: UInt16(totalLength).bigEndian, toByteOffset: 2, as: UInt16.self)
        h.storeBytes(of: identification.bigEndian, toByteOffset: 4, as: UInt16.self)
        h.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        h.storeBytes(of: ttl, toByteOffset: 8, as: UInt8.self)
        h.storeBytes(of: proto, toByteOffset: 9, as: UInt8.self)
        h.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        h.storeBytes(of: source.bigEndian, toByteOffset: 12, as: UInt32.self)
        h.storeBytes(of: destination.bigEndian, toByteOffset: 16, as: UInt32.self)
        h.storeBytes(of: Checksum.of(h, count: 20).bigEndian, toByteOffset: 10, as: UInt16.self)
    }

    // MARK: fragmentation

    /// Sends the IPv4 packet in `f` (TTL already decremented) as fragments that fit port `q`'s MTU,
    /// to `next`. A partial checksum is completed first: a fragment cannot carry one.
    func sendFragments(_ f: UnsafeMutableRawPointer, length: Int, ihl: Int, vnet: VirtioNetHeader, on q: Int, to next: MACAddress) {
        if vnet.flags & VirtioNetHeader.needsChecksum != 0 {
            let start = Int(vnet.csumStart), field = start + Int(vnet.csumOffset)
            if field + 2 <= length && start < length {
                let c = Checksum.of(f + start, count: length - start)
                f.storeBytes(of: c.bigEndian, toByteOffset: field, as: UInt16.self)
            }
        }
        let total = length - 14
        let payload = total - ihl
        let step = ((Int(mtu[q]) - ihl) / 8) * 8
        guard step >= 8 else { drop(.fragmentationNeeded); return }
        let flagsOffset = HeaderBytes.be16(f, 20)
        let baseOffset = Int(flagsOffset & 0x1FFF)
        let moreAfter = flagsOffset & 0x2000 != 0
        var done = 0
        var count = 0
        while done < payload {
            let size = min(step, payload - done)
            guard 14 + ihl + size <= RouterEngine.madeSlotSize, let b = makeFrame(port: q) else {
                drop(.txQueueFull); return
            }
            next.store(to: b)
            mac.store(to: b + 6)
            b.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
            (b + 14).copyMemory(from: f + 14, byteCount: ihl)
            (b + 14 + ihl).copyMemory(from: f + 14 + ihl + done, byteCount: size)
            let last = done + size == payload
            let fo = UInt16(baseOffset + done / 8) | ((!last || moreAfter) ? 0x2000 : 0)
            b.storeBytes(of: UInt16(ihl + size).bigEndian, toByteOffset: 16, as: UInt16.self)
            b.storeBytes(of: fo.bigEndian, toByteOffset: 20, as: UInt16.self)
            b.storeBytes(of: UInt16(0), toByteOffset: 24, as: UInt16.self)
            b.storeBytes(of: Checksum.of(b + 14, count: ihl).bigEndian, toByteOffset: 24, as: UInt16.self)
            commitFrame(length: max(60, 14 + ihl + size))
            done += size
            count += 1
        }
        events.fragmented &+= 1
        events.fragmentsMade &+= UInt64(count)
    }
}
