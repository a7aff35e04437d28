// FrameBuilder: crafts the frames the SwitchCore tests feed to the pipeline, as plain [UInt8], and
// Lab, a tiny network of MemoryPorts wired to one BridgeEngine.
//
// Every builder returns the exact bytes of the frame on the wire (no FCS), so a test can compute the
// bytes it expects out of an egress port with the same builders (an untagged frame in on an access
// port must come out of a trunk as `Frame.tagged(...)` of the same addresses, type and payload).

import SwitchCore
import SwitchTesting
import XCTest

enum Frame {
    /// 02:00:00:00:HH:LL, a locally administered unicast address for test host `n`.
    static func host(_ n: Int) -> MACAddress {
        MACAddress(rawValue: 0x0200_0000_0000 | UInt64(n & 0xFFFF))
    }

    static func mac(_ text: String) -> MACAddress { MACAddress(text)! }

    /// A payload whose bytes identify the frame (`seed` repeated, then a counter), at least
    /// `length` bytes so that untagged frames reach the 60-byte Ethernet minimum.
    static func payload(_ seed: UInt8, length: Int = 46) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: Int(seed) &+ $0 * 7) }
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    static func tci(vid: UInt16, pcp: UInt8 = 0, dei: Bool = false) -> UInt16 {
        UInt16(pcp & 7) << 13 | (dei ? 0x1000 : 0) | (vid & 0xFFF)
    }

    /// Ethernet II: destination, source, ethertype, payload.
    static func ethernet(dst: MACAddress, src: MACAddress, type: UInt16 = 0x0800,
                         payload: [UInt8] = payload(0x11)) -> [UInt8] {
        dst.bytes + src.bytes + be16(type) + payload
    }

    /// 802.1Q-tagged (TPID 0x8100) frame with an inner ethertype.
    static func tagged(dst: MACAddress, src: MACAddress, vid: UInt16, pcp: UInt8 = 0, dei: Bool = false,
                       type: UInt16 = 0x0800, payload: [UInt8] = payload(0x11)) -> [UInt8] {
        dst.bytes + src.bytes + be16(0x8100) + be16(tci(vid: vid, pcp: pcp, dei: dei)) + be16(type) + payload
    }

    /// 802.1ad (QinQ): an S-tag (TPID 0x88a8) with VLAN `sVID`, then an 802.1Q C-tag with `cVID`.
    static func qinq(dst: MACAddress, src: MACAddress, sVID: UInt16, cVID: UInt16, type: UInt16 = 0x0800,
                     payload: [UInt8] = payload(0x11)) -> [UInt8] {
        dst.bytes + src.bytes + be16(0x88A8) + be16(tci(vid: sVID)) + be16(0x8100) + be16(tci(vid: cVID))
            + be16(type) + payload
    }

    /// IEEE 802.3 frame: a length field (not an ethertype) then LLC (DSAP, SSAP, control) + data.
    static func ieee8023(dst: MACAddress, src: MACAddress, dsap: UInt8 = 0x42, ssap: UInt8 = 0x42,
                         data: [UInt8] = payload(0x33, length: 43)) -> [UInt8] {
        let llc: [UInt8] = [dsap, ssap, 0x03] + data
        return dst.bytes + src.bytes + be16(UInt16(llc.count)) + llc
    }

    /// An ARP request (broadcast) or reply (unicast) for IPv4, optionally 802.1Q-tagged.
    static func arp(request: Bool, senderMAC: MACAddress, senderIP: [UInt8], targetMAC: MACAddress,
                    targetIP: [UInt8], vid: UInt16? = nil, pcp: UInt8 = 0) -> [UInt8] {
        var body: [UInt8] = be16(1) + be16(0x0800) + [6, 4] + be16(request ? 1 : 2)
        body += senderMAC.bytes + senderIP
        body += (request ? MACAddress.zero : targetMAC).bytes + targetIP
        body += [UInt8](repeating: 0, count: 18) // pad to the 60-byte minimum
        let dst = request ? MACAddress.broadcast : targetMAC
        if let vid {
            return tagged(dst: dst, src: senderMAC, vid: vid, pcp: pcp, type: 0x0806, payload: body)
        }
        return ethernet(dst: dst, src: senderMAC, type: 0x0806, payload: body)
    }

    /// The same frame with its 802.1Q tag removed (bytes 12..<16 dropped).
    static func untag(_ f: [UInt8]) -> [UInt8] { Array(f[0..<12]) + Array(f[16...]) }

    /// The same frame with an 802.1Q tag inserted at offset 12.
    static func pushTag(_ f: [UInt8], tci: UInt16) -> [UInt8] {
        Array(f[0..<12]) + be16(0x8100) + be16(tci) + Array(f[12...])
    }

    /// The TCI of a frame tagged with 0x8100 at offset 12, or nil.
    static func tciOf(_ f: [UInt8]) -> UInt16? {
        guard f.count >= 16, f[12] == 0x81, f[13] == 0x00 else { return nil }
        return UInt16(f[14]) << 8 | UInt16(f[15])
    }
}

/// SplitMix64: a seeded generator so that randomised tests replay exactly.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A bridge with one MemoryPort per port; port i of the lab is port index i of the engine.
final class Lab {
    let engine: BridgeEngine<MemoryPort>
    var ports: [MemoryPort] = []

    init(_ modes: [VLANMode], settings: BridgeSettings = BridgeSettings()) throws {
        engine = BridgeEngine<MemoryPort>(settings: settings, maxPorts: 16)
        for (i, m) in modes.enumerated() {
            let p = MemoryPort()
            let index = try engine.addPort(name: "p\(i)", mode: m, device: p)
            precondition(index == i)
            ports.append(p)
        }
    }

    /// Convenience: `n` access ports in VLAN 1.
    convenience init(accessPorts n: Int, settings: BridgeSettings = BridgeSettings()) throws {
        try self.init(Array(repeating: VLANMode.defaultAccess, count: n), settings: settings)
    }

    /// Injects `frames` on port `p` and runs the engine over that port until they are consumed.
    func send(_ frames: [[UInt8]], on p: Int, now: UInt32 = 0, vnet: VirtioNetHeader = .none) {
        for f in frames { precondition(ports[p].inject(f, vnet: vnet)) }
        while ports[p].pendingReceive > 0 { engine.poll(port: p, now: now) }
    }

    func send(_ frame: [UInt8], on p: Int, now: UInt32 = 0, vnet: VirtioNetHeader = .none) {
        send([frame], on: p, now: now, vnet: vnet)
    }

    /// Frames transmitted by port `p` since the last call.
    func out(_ p: Int) -> [[UInt8]] { ports[p].drain() }

    /// Frames transmitted by every port since the last call, indexed by port.
    func outAll() -> [[[UInt8]]] { ports.map { $0.drain() } }

    var drops: DropCounters { engine.dropCounters }
    func counters(_ p: Int) -> PortCounters { engine.portCounters(p) }

    /// Sum of the drop counters, by name, that are not zero (readable failure messages).
    var nonZeroDrops: [String: UInt64] { drops.byName.filter { $0.value != 0 } }
}

/// Asserts that exactly `expected` drops were counted, each under its reason, and nothing else.
func assertDrops(_ lab: Lab, _ expected: [DropReason: UInt64], file: StaticString = #filePath, line: UInt = #line) {
    let d = lab.drops
    for r in DropReason.allCases {
        XCTAssertEqual(d[r], expected[r] ?? 0, "drop reason \(r.name)", file: file, line: line)
    }
}
