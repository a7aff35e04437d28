// FilterProgram+Evaluate: the per-frame half of the filter program (compiling it:
// FilterProgram.swift). A frame walks the rule lists of its chain and ingress port, as
// ebt_do_table does, and every match reads the frame's header where classification found it.

extension FilterProgram {
    /// Judges one frame in built-in `chain` (0 INPUT, 1 FORWARD, 2 OUTPUT), arriving on port
    /// `inPort` (-1: the bridge's own port sent it) and leaving on `outPort` (-1: to the bridge's
    /// own port). Returns true to let it pass. Bumps the counters of the rules that match.
    @inline(__always)
    public func allows(chain: Int, frame: UnsafeRawPointer, length: Int, info: FrameInfo, inPort: Int, outPort: Int) -> Bool {
        let slot = inPort >= 0 && inPort < portSlots - 1 ? inPort : portSlots - 1
        let bytes = UInt64(max(0, length - Int(info.l3Offset)))
        // ebtables matches the ethertype as the wire has it at offset 12 (802_1Q for a tagged frame).
        let type = info.outerEtherType
        var c = chain
        var pos: Int32 = 0
        var sp = 0
        while true {
            let li = c &* portSlots &+ slot
            let start = Int(listStart[li]), count = listCount[li]
            var jumped = false
            while pos < count {
                let ri = Int(lists[start &+ Int(pos)])
                pos &+= 1
                let counter = matches(rules.base + ri, frame, length, type, outPort)
                if counter < 0 { continue }
                packetCounts[Int(counter)] &+= 1
                byteCounts[Int(counter)] &+= bytes
                let t = rules[ri].target
                if t == FilterProgram.continueTarget { continue }
                if t == FilterProgram.accept { return true }
                if t == FilterProgram.drop { return false }
                if t == FilterProgram.returnTarget {
                    if sp == 0 { continue } // only reachable through a hand-made set: like the kernel, CONTINUE
                    sp -= 1
                    (c, pos) = (Int(stack[sp].0), stack[sp].1)
                    jumped = true
                    break
                }
                stack[sp] = (Int32(c), pos)
                sp += 1
                c = Int(t)
                pos = 0
                jumped = true
                break
            }
            if jumped { continue }
            let p = policies[c]
            if p == FilterProgram.accept { return true }
            if p == FilterProgram.drop { return false }
            if sp == 0 { return true }
            sp -= 1
            (c, pos) = (Int(stack[sp].0), stack[sp].1)
        }
    }

    /// The counter slot of the rule when all its matches hold, or -1.
    @inline(__always)
    func matches(_ rp: UnsafePointer<CompiledRule>, _ f: UnsafeRawPointer, _ len: Int, _ type: UInt16, _ outPort: Int) -> Int32 {
        let checks = rp.pointee.checks
        let inv = rp.pointee.inverts
        @inline(__always) func fails(_ bit: UInt32, _ mismatch: Bool) -> Bool { checks & bit != 0 && (mismatch != (inv & bit != 0)) }
        // Egress port (-o, --logical-out).
        if checks & (Check.out | Check.logicalOut) != 0 {
            if checks & Check.logicalOut != 0 && outPort >= 0 { return -1 }
            if checks & Check.out != 0 {
                let mismatch = outPort < 0
                    || bitmaps[Int(rp.pointee.outBitmap) &+ outPort >> 6] & (1 << UInt64(outPort & 63)) == 0
                if mismatch != (inv & Check.out != 0) { return -1 }
            }
        }
        if fails(Check.proto, type != rp.pointee.proto) { return -1 }
        if fails(Check.length, type >= 0x0600) { return -1 }
        if fails(Check.src, (HeaderBytes.mac(f, 6) ^ rp.pointee.srcMAC) & rp.pointee.srcMask != 0) { return -1 }
        if fails(Check.dst, (HeaderBytes.mac(f, 0) ^ rp.pointee.dstMAC) & rp.pointee.dstMask != 0) { return -1 }
        if checks & ~(Check.proto | Check.length | Check.src | Check.dst | Check.out | Check.logicalOut) != 0 {
            if !matchesPayload(rp, f, len, type) { return -1 }
        }
        var counter = rp.pointee.counter
        if rp.pointee.setKey != .none {
            let key: UInt64
            switch rp.pointee.setKey {
            case .srcMAC: key = HeaderBytes.mac(f, 6)
            case .dstMAC: key = HeaderBytes.mac(f, 0)
            case .ipSrc: if len < 34 { return -1 }; key = UInt64(HeaderBytes.be32(f, 26))
            case .ipDst: if len < 34 { return -1 }; key = UInt64(HeaderBytes.be32(f, 30))
            case .none: key = 0
            }
            let (off, mask) = (Int(rp.pointee.setTable.0), UInt64(rp.pointee.setTable.1))
            var h = FilterProgram.hash(key) & mask
            while true {
                let k = setKeys[off &+ Int(h)]
                if k == 0 { return -1 }
                if k == key &+ 1 { counter = setValues[off &+ Int(h)]; break }
                h = (h &+ 1) & mask
            }
        }
        return counter
    }

    /// VLAN, ARP, IPv4, IPv6 and among matches (the extensions), as the kernel's ebt_* modules.
    func matchesPayload(_ rp: UnsafePointer<CompiledRule>, _ f: UnsafeRawPointer, _ len: Int, _ type: UInt16) -> Bool {
        let r = rp.pointee
        let checks = r.checks, inv = r.inverts
        @inline(__always) func fails(_ bit: UInt32, _ mismatch: Bool) -> Bool { checks & bit != 0 && (mismatch != (inv & bit != 0)) }
        if checks & Check.vlanAll != 0 {
            // ebt_vlan: the tag (the frame carries it inline here), and the ethertype behind it.
            if len < 18 { return false }
            let tci = HeaderBytes.be16(f, 14)
            if fails(Check.vlanID, tci & 0xFFF != r.vlanID) { return false }
            if fails(Check.vlanPrio, UInt8(tci >> 13) != r.vlanPrio) { return false }
            if fails(Check.vlanEncap, HeaderBytes.be16(f, 16) != r.vlanEncap) { return false }
        }
        if checks & Check.arpAll != 0 {
            // ebt_arp: the fixed ARP header after the Ethernet header.
            if len < 14 + 8 { return false }
            let hrd = HeaderBytes.be16(f, 14), pro = HeaderBytes.be16(f, 16)
            let hln = Int(f.load(fromByteOffset: 18, as: UInt8.self)), pln = Int(f.load(fromByteOffset: 19, as: UInt8.self))
            if fails(Check.arpOp, HeaderBytes.be16(f, 20) != r.arpOp) { return false }
            if fails(Check.arpHType, hrd != r.arpHType) { return false }
            if fails(Check.arpPType, pro != r.arpPType) { return false }
            if checks & Check.arpIPAll != 0 {
                if pln != 4 || pro != 0x0800 { return false }
                let so = 22 + hln, dof = 22 + 2 * hln + 4
                if len < so + 4 || len < dof + 4 { return false }
                let sip = HeaderBytes.be32(f, so), dip = HeaderBytes.be32(f, dof)
                if fails(Check.arpIPSrc, sip & r.arpIPSrcMask != r.arpIPSrc) { return false }
                if fails(Check.arpIPDst, dip & r.arpIPDstMask != r.arpIPDst) { return false }
                if fails(Check.arpGrat, dip != sip) { return false }
            }
            if checks & Check.arpMACAll != 0 {
                if hln != 6 || hrd != 1 { return false }
                if checks & Check.arpMACSrc != 0 {
                    if len < 22 + 6 { return false }
                    if fails(Check.arpMACSrc, (HeaderBytes.mac(f, 22) ^ r.arpMACSrc) & r.arpMACSrcMask != 0) { return false }
                }
                if checks & Check.arpMACDst != 0 {
                    let o = 22 + 6 + pln
                    if len < o + 6 { return false }
                    if fails(Check.arpMACDst, (HeaderBytes.mac(f, o) ^ r.arpMACDst) & r.arpMACDstMask != 0) { return false }
                }
            }
        }
        if checks & Check.ipAll != 0 || r.setKey == .ipSrc || r.setKey == .ipDst {
            // ebt_ip: a 20-byte header must be there; the version field is not looked at.
            if len < 14 + 20 { return false }
            if fails(Check.ipTOS, f.load(fromByteOffset: 15, as: UInt8.self) != r.ipTOS) { return false }
            if fails(Check.ipSrc, HeaderBytes.be32(f, 26) & r.ipSrcMask != r.ipSrc) { return false }
            if fails(Check.ipDst, HeaderBytes.be32(f, 30) & r.ipDstMask != r.ipDst) { return false }
            if checks & Check.ipProto != 0 {
                if fails(Check.ipProto, f.load(fromByteOffset: 23, as: UInt8.self) != r.ipProto) { return false }
                if checks & (Check.ipSport | Check.ipDport) != 0 {
                    if HeaderBytes.be16(f, 20) & 0x1FFF != 0 { return false } // not the first fragment
                    let o = 14 + Int(f.load(fromByteOffset: 14, as: UInt8.self) & 0x0F) * 4
                    if len < o + 4 { return false }
                    let sport = HeaderBytes.be16(f, o), dport = HeaderBytes.be16(f, o + 2)
                    if fails(Check.ipDport, dport < r.ipDport.0 || dport > r.ipDport.1) { return false }
                    if fails(Check.ipSport, sport < r.ipSport.0 || sport > r.ipSport.1) { return false }
                }
            }
        }
        if checks & Check.ip6All != 0 {
            // ebt_ip6: a 40-byte header must be there.
            if len < 14 + 40 { return false }
            let tclass = UInt8(truncatingIfNeeded: HeaderBytes.be16(f, 14) >> 4)
            if fails(Check.ip6TClass, tclass != r.ip6TClass) { return false }
            let sh = UInt64(HeaderBytes.be32(f, 22)) << 32 | UInt64(HeaderBytes.be32(f, 26))
            let sl = UInt64(HeaderBytes.be32(f, 30)) << 32 | UInt64(HeaderBytes.be32(f, 34))
            if fails(Check.ip6Src, !r.ip6Src.contains(high: sh, low: sl)) { return false }
            let dh = UInt64(HeaderBytes.be32(f, 38)) << 32 | UInt64(HeaderBytes.be32(f, 42))
            let dl = UInt64(HeaderBytes.be32(f, 46)) << 32 | UInt64(HeaderBytes.be32(f, 50))
            if fails(Check.ip6Dst, !r.ip6Dst.contains(high: dh, low: dl)) { return false }
            if checks & Check.ip6Proto != 0 {
                let (next, offset) = FilterProgram.skipIPv6ExtensionHeaders(f, len)
                if offset < 0 { return false }
                if fails(Check.ip6Proto, next != r.ip6Proto) { return false }
                if checks & (Check.ip6Sport | Check.ip6Dport) != 0 {
                    if len < offset + 4 { return false }
                    let sport = HeaderBytes.be16(f, offset), dport = HeaderBytes.be16(f, offset + 2)
                    if fails(Check.ip6Dport, dport < r.ip6Dport.0 || dport > r.ip6Dport.1) { return false }
                    if fails(Check.ip6Sport, sport < r.ip6Sport.0 || sport > r.ip6Sport.1) { return false }
                }
            }
        }
        if checks & Check.amongSrc != 0 {
            // ebt_among: the IPv4 source of an IPv4 packet or the sender of an ARP packet, else 0.
            guard let ip = FilterProgram.amongIP(f, len, type, destination: false) else { return false }
            if contains(r.amongSrc, HeaderBytes.mac(f, 6), ip) == (inv & Check.amongSrc != 0) { return false }
        }
        if checks & Check.amongDst != 0 {
            guard let ip = FilterProgram.amongIP(f, len, type, destination: true) else { return false }
            if contains(r.amongDst, HeaderBytes.mac(f, 0), ip) == (inv & Check.amongDst != 0) { return false }
        }
        return true
    }

    static func amongIP(_ f: UnsafeRawPointer, _ len: Int, _ type: UInt16, destination: Bool) -> UInt32? {
        if type == 0x0800 {
            if len < 34 { return nil }
            return HeaderBytes.be32(f, destination ? 30 : 26)
        }
        if type == 0x0806 {
            if len < 22 { return nil }
            if f.load(fromByteOffset: 19, as: UInt8.self) != 4 || f.load(fromByteOffset: 18, as: UInt8.self) != 6 { return nil }
            let o = destination ? 22 + 6 + 4 + 6 : 22 + 6
            if len < o + 4 { return nil }
            return HeaderBytes.be32(f, o)
        }
        return 0
    }

    @inline(__always)
    func contains(_ list: (Int32, Int32), _ mac: UInt64, _ ip: UInt32) -> Bool {
        // Sorted by MAC: binary search for the first entry of this MAC, then its IPs.
        var lo = Int(list.0), hi = Int(list.0 + list.1)
        let end = hi
        while lo < hi {
            let mid = (lo + hi) >> 1
            if amongMAC[mid] < mac { lo = mid + 1 } else { hi = mid }
        }
        while lo < end && amongMAC[lo] == mac {
            if amongIP[lo] == 0 || amongIP[lo] == ip { return true }
            lo += 1
        }
        return false
    }

    /// ipv6_skip_exthdr: the upper-layer protocol and its offset in the frame, offset -1 when the
    /// chain of extension headers ends in "no next header" or runs off the frame.
    static func skipIPv6ExtensionHeaders(_ f: UnsafeRawPointer, _ len: Int) -> (UInt8, Int) {
        var next = f.load(fromByteOffset: 20, as: UInt8.self)
        var o = 14 + 40
        while true {
            switch next {
            case 0, 43, 60, 44, 51:
                if len < o + 8 { return (next, -1) }
                let hdrNext = f.load(fromByteOffset: o, as: UInt8.self)
                let hlen: Int
                if next == 44 {
                    if HeaderBytes.be16(f, o + 2) & 0xFFF8 != 0 { return (next, o) } // not the first fragment
                    hlen = 8
                } else if next == 51 {
                    hlen = (Int(f.load(fromByteOffset: o + 1, as: UInt8.self)) + 2) << 2
                } else {
                    hlen = (Int(f.load(fromByteOffset: o + 1, as: UInt8.self)) + 1) << 3
                }
                next = hdrNext
                o += hlen
            case 59:
                return (next, -1)
            default:
                return (next, o)
            }
        }
    }
}
