// AntiSpoofing: what a guest behind a port may send, checked on ingress before learning.
//
// A port may carry the guest's MACs and IPv4/IPv6 addresses (Xen's vif `mac` and `ip` keys).
// When anti-spoofing is on (the default for a port that carries any address) the switch drops,
// and counts under its own reason:
//   - frames whose source MAC is not one of the port's MACs (when it has MACs);
//   - IPv4 packets whose source is not one of its IPv4 addresses or prefixes (when it has any),
//     except DHCP requests from 0.0.0.0 (UDP 68 -> 67), which a guest sends before it has one;
//   - IPv6 packets whose source is not one of its IPv6 addresses (when it has any), except the
//     unspecified address (duplicate address detection) and link-local fe80::/10;
//   - ARP whose sender MAC is not one of its MACs or whose sender IP is not one of its IPv4
//     addresses (0.0.0.0, an ARP probe, passes);
//   - router advertisements (ICMPv6 134) and DHCP server replies (UDP from port 67, DHCPv6 from
//     547): a guest is never a router or a DHCP server for the others.
// These checks run before learning, so a spoofed source never enters the FDB (unlike ebtables
// FORWARD rules, which the kernel bridge runs after learning).

public struct PortAddresses: Equatable, Sendable {
    public var macs: [MACAddress]
    public var ipv4: [IPv4Prefix]
    public var ipv6: [IPv6Prefix]
    /// nil: on when the port carries any address.
    public var antiSpoofing: Bool?

    public init(macs: [MACAddress] = [], ipv4: [IPv4Prefix] = [], ipv6: [IPv6Prefix] = [], antiSpoofing: Bool? = nil) {
        self.macs = macs; self.ipv4 = ipv4; self.ipv6 = ipv6; self.antiSpoofing = antiSpoofing
    }

    public var isEmpty: Bool { macs.isEmpty && ipv4.isEmpty && ipv6.isEmpty }
    /// Whether the switch enforces the addresses.
    public var enforced: Bool { antiSpoofing ?? !isEmpty }

    /// Parses Xen-style address words: `10.0.0.5`, `10.0.1.0/24`, `2001:db8::5`, `2001:db8::/64`,
    /// several in one word separated by blanks or commas. Returns nil and the bad word on error.
    public static func parseIPs(_ words: [String]) -> (v4: [IPv4Prefix], v6: [IPv6Prefix], bad: String?) {
        var v4: [IPv4Prefix] = [], v6: [IPv6Prefix] = []
        for w in words {
            for item in w.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }) {
                if item.contains(":") {
                    guard let p = IPv6Prefix(item) else { return ([], [], String(item)) }
                    v6.append(p)
                } else {
                    guard let p = IPv4Prefix(item) else { return ([], [], String(item)) }
                    v4.append(p)
                }
            }
        }
        return (v4, v6, nil)
    }

    /// The addresses as words (`10.0.0.5`, `2001:db8::/64`).
    public var ipWords: [String] { ipv4.map(\.description) + ipv6.map(\.description) }
}

/// The enforced address sets of every port, in flat memory for the per-frame check.
public final class AntiSpoofTable {
    let maxPorts: Int
    /// Per port: enforced, and (start, count) into each pool.
    let enforced: FixedArray<Bool>
    let macRange: FixedArray<(Int32, Int32)>
    let v4Range: FixedArray<(Int32, Int32)>
    let v6Range: FixedArray<(Int32, Int32)>
    let macs: FixedArray<UInt64>
    let v4: FixedArray<IPv4Prefix>
    let v6: FixedArray<IPv6Prefix>
    public let anyEnforced: Bool

    public init(_ ports: [PortAddresses?]) {
        maxPorts = ports.count
        enforced = FixedArray(repeating: false, count: ports.count)
        macRange = FixedArray(repeating: (0, 0), count: ports.count)
        v4Range = FixedArray(repeating: (0, 0), count: ports.count)
        v6Range = FixedArray(repeating: (0, 0), count: ports.count)
        var m: [UInt64] = [], a: [IPv4Prefix] = [], b: [IPv6Prefix] = []
        var any = false
        for (i, p) in ports.enumerated() {
            let on = p?.enforced ?? false
            enforced[i] = on
            any = any || on
            macRange[i] = (Int32(m.count), Int32(p?.macs.count ?? 0)); m += p?.macs.map(\.rawValue) ?? []
            v4Range[i] = (Int32(a.count), Int32(p?.ipv4.count ?? 0)); a += p?.ipv4 ?? []
            v6Range[i] = (Int32(b.count), Int32(p?.ipv6.count ?? 0)); b += p?.ipv6 ?? []
        }
        anyEnforced = any
        macs = FixedArray(m)
        v4 = FixedArray(a)
        v6 = FixedArray(b)
    }

    @inline(__always)
    public func isEnforced(_ port: Int) -> Bool { port < maxPorts && enforced[port] }

    @inline(__always)
    func macAllowed(_ port: Int, _ mac: UInt64) -> Bool {
        let (s, n) = macRange[port]
        if n == 0 { return true }
        for k in Int(s)..<Int(s + n) where macs[k] == mac { return true }
        return false
    }

    @inline(__always)
    func v4Allowed(_ port: Int, _ a: UInt32) -> Bool {
        let (s, n) = v4Range[port]
        if n == 0 { return true }
        for k in Int(s)..<Int(s + n) where v4[k].contains(a) { return true }
        return false
    }

    @inline(__always)
    func v6Allowed(_ port: Int, _ h: UInt64, _ l: UInt64) -> Bool {
        let (s, n) = v6Range[port]
        if n == 0 { return true }
        if h == 0 && l == 0 { return true }                 // unspecified: DAD
        if h >> 54 == 0x3FA { return true }                 // fe80::/10 link-local
        for k in Int(s)..<Int(s + n) where v6[k].contains(high: h, low: l) { return true }
        return false
    }

    /// Why a frame from `port` must be dropped, or nil. `info` is what classification recorded:
    /// the payload's ethertype and where its network header starts (behind an 802.1Q tag or not).
    @inline(__always)
    public func violation(port: Int, frame f: UnsafeRawPointer, length len: Int, info: FrameInfo) -> DropReason? {
        if !macAllowed(port, MACAddress(loadingFrom: f + 6).rawValue) { return .spoofedSourceMAC }
        let o = Int(info.l3Offset)
        if len < o { return nil }
        let type = info.etherType
        switch type {
        case 0x0800:
            if len < o + 20 { return .spoofedSourceIP }
            let src = HeaderBytes.be32(f, o + 12)
            let proto = f.load(fromByteOffset: o + 9, as: UInt8.self)
            let ihl = Int(f.load(fromByteOffset: o, as: UInt8.self) & 0x0F) * 4
            var sport: UInt16 = 0, dport: UInt16 = 0
            if proto == 17 && len >= o + ihl + 4 {
                sport = HeaderBytes.be16(f, o + ihl); dport = HeaderBytes.be16(f, o + ihl + 2)
            }
            if proto == 17 && sport == 67 { return .rogueDHCPServer }
            if src == 0 && proto == 17 && sport == 68 && dport == 67 { return nil }
            if !v4Allowed(port, src) { return .spoofedSourceIP }
        case 0x0806:
            if len < o + 28 { return .spoofedARP }
            if HeaderBytes.be16(f, o) != 1 || f.load(fromByteOffset: o + 4, as: UInt8.self) != 6
                || f.load(fromByteOffset: o + 5, as: UInt8.self) != 4 { return nil }
            if !macAllowed(port, MACAddress(loadingFrom: f + o + 8).rawValue) { return .spoofedARP }
            let sip = HeaderBytes.be32(f, o + 14)
            if sip != 0 && !v4Allowed(port, sip) { return .spoofedARP }
        case 0x86DD:
            if len < o + 40 { return .spoofedSourceIP }
            let h = UInt64(HeaderBytes.be32(f, o + 8)) << 32 | UInt64(HeaderBytes.be32(f, o + 12))
            let l = UInt64(HeaderBytes.be32(f, o + 16)) << 32 | UInt64(HeaderBytes.be32(f, o + 20))
            let next = f.load(fromByteOffset: o + 6, as: UInt8.self)
            if next == 58 && len > o + 40 && f.load(fromByteOffset: o + 40, as: UInt8.self) == 134 { return .rogueRouterAdvertisement }
            if next == 17 && len >= o + 44 && HeaderBytes.be16(f, o + 40) == 547 { return .rogueDHCPServer }
            if !v6Allowed(port, h, l) { return .spoofedSourceIP }
        default:
            break
        }
        return nil
    }
}
