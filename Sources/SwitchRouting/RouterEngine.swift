// RouterEngine: an IPv4 and IPv6 router over batches of frames, Xen's routed mode (vif-route) in
// the switch.
//
// Ports: port 0 is the uplink (the NIC in production), every other port is a guest's point-to-point
// link (a vif, an emulated `-emu` tap, or dom0's own TAP port), carrying that guest's addresses.
// On every port the router has one MAC (`mac`), one IPv4 address (`address`, held on the
// uplink; vif-route likewise gives each vif dom0's address as a /32), its IPv6 link-local address
// (fe80:: with the MAC's EUI-64) and, when set, one IPv6 address on the uplink (`address6`).
//
// A batch received on one port goes through these stages, each a loop over the batch:
//   1. classify     - the Ethernet header: frames for the router's MAC or broadcast, untagged,
//                     a valid source; ARP, IPv4 and IPv6 go on (FrameInfo in the batch, as the
//                     bridge records it; for IPv6 also the 33:33 multicast MACs neighbour
//                     discovery uses), everything else is counted and dropped.
//   2. anti-spoofing- on guest ports whose addresses are enforced: the same AntiSpoofTable as a
//                     bridge's ports (source MAC, IPv4 source, ARP sender).
//   3. ARP          - answered here (RouterEngine+ARP.swift): on a guest port for any address but
//                     the guest's own, on the uplink for the router's address and, by proxy ARP,
//                     for every address routed out a guest port; replies and requests feed the
//                     neighbour cache.
//   4. DHCP         - on `dhcp=on` guest ports, requests to UDP port 67 are answered by the
//                     router's stateless server (RouterEngine+DHCP.swift) before IPv4's checks,
//                     which would drop their 0.0.0.0 source and broadcast destination as martian.
//   5. IPv4 / IPv6  - (IPv6 in RouterEngine+IPv6.swift, its neighbour discovery in
//                     RouterEngine+ND.swift, in the same order as IPv4) header checks, reverse path on the uplink, the router's own address (ping),
//                     TTL, longest-prefix route, egress MTU (fragmentation needed, or fragments),
//                     TTL and header checksum rewritten in place (RFC 1624), the next hop's MAC
//                     from the neighbour cache; frames for an unresolved next hop wait in its
//                     queue (RouterEngine+IPv4.swift).
//   6. transmit     - forwarded frames (rewritten in place in the ingress port's memory), then the
//                     frames the router made (ARP, ICMP, fragments) and queued frames whose next
//                     hop resolved, each egress port kicked once.
// Offloads: a GSO super-frame or a CHECKSUM_PARTIAL frame keeps its virtio-net header; only the
// Ethernet addresses, the TTL and the IPv4 header checksum change, none of which the header's
// offsets or the partial checksum cover, so it crosses as one frame, never segmented here. Its MTU
// check is per segment (Linux's skb_gso_validate_network_len).
//
// Everything the router drops is counted under a RouterDropReason; ICMP errors are rate-limited
// (ICMPRateLimit.swift). Timers (neighbour probes, reachable time) run in `housekeeping`, which the
// dataplane thread calls between batches.
//
// Threading: as a bridge's engine, the router belongs to one dataplane thread; configuration
// changes are calls made on that thread between batches. Memory for the per-frame path is
// allocated when the engine is made; the per-frame path neither allocates nor retains, except
// the rare paths that make frames (ARP answers, ICMP), which write into a preallocated pool.

import SwitchCore

public struct RouterSettings: Sendable, Equatable {
    public var batchSize: Int = 128
    public var neighbourCapacity: Int = 4096
    /// Frames that may wait for their next hop, router-wide, and per next hop.
    public var queuedFrames: Int = 64
    public var queuePerNeighbour: Int = 3
    public var timings = NeighbourTimings()
    public init() {}
}

public enum RouterError: Error, Equatable, CustomStringConvertible {
    case tooManyPorts(Int)
    case noSuchPort(Int)
    public var description: String {
        switch self {
        case .tooManyPorts(let n): return "router already has the maximum of \(n) ports"
        case .noSuchPort(let i): return "no port \(i)"
        }
    }
}

/// How a routed port is configured.
public struct RouterPortConfiguration: Equatable, Sendable {
    /// The guest's addresses: host routes to the port, and what anti-spoofing allows.
    public var addresses: [IPv4Prefix]
    /// The guest's MAC, used without asking (a permanent neighbour) and enforced as its source.
    public var guestMAC: MACAddress?
    /// Route metric of the port's host routes: 1 for an emulated `-emu` tap, 2 for a PV vif, as
    /// vif-route sets them, so the tap's routes win while it exists.
    public var metric: Int
    /// Anti-spoofing (nil: on when the port has an address).
    public var antiSpoofing: Bool?
    /// The guest's IPv6 addresses or prefixes: routes to the port, and what anti-spoofing allows.
    public var addresses6: [IPv6Prefix]
    /// Router advertisements on this port (`ra=on`).
    public var routerAdvertisements: Bool
    /// The DHCP server hands the guest its first address (`dhcp=on`, RouterEngine+DHCP.swift).
    public var dhcp: Bool
    public init(addresses: [IPv4Prefix] = [], guestMAC: MACAddress? = nil, metric: Int = 2, antiSpoofing: Bool? = nil,
                addresses6: [IPv6Prefix] = [], routerAdvertisements: Bool = false, dhcp: Bool = false) {
        self.addresses = addresses; self.guestMAC = guestMAC; self.metric = metric; self.antiSpoofing = antiSpoofing
        self.addresses6 = addresses6; self.routerAdvertisements = routerAdvertisements; self.dhcp = dhcp
    }
}

public final class RouterEngine<Port: FramePort> {
    public let maxPorts: Int
    public let settings: RouterSettings
    public let batch: PacketBatch
    /// The router's MAC on every port.
    public internal(set) var mac: MACAddress
    /// The router's own address (nil: not set yet), and the mask of the uplink's prefix.
    public internal(set) var address: UInt32?
    public internal(set) var addressMask: UInt32 = 0xFFFF_FFFF
    /// The next hop of the default route, on the uplink.
    public internal(set) var gateway: UInt32?
    public internal(set) var staticRoutes: [IPv4Route] = []
    public internal(set) var routes: IPv4RouteTable
    /// IPv6: the link-local address (from the MAC), the uplink address and its prefix length
    /// (`hasAddress6` false: none), the default route's next hop, static routes and the table.
    public internal(set) var linkLocal: IPAddress
    public internal(set) var address6 = IPAddress(high: 0, low: 0)
    public internal(set) var hasAddress6 = false
    public internal(set) var prefixLength6 = 64
    public internal(set) var gateway6: IPAddress?
    public internal(set) var staticRoutes6: [IPv6Route] = []
    public internal(set) var routes6: IPv6RouteTable
    public let neighbours: NeighbourTable
    let rateLimit: ICMPRateLimit

    // Ports.
    public internal(set) var devices: [Port?]
    public internal(set) var portNames: [String?]
    public internal(set) var portConfigurations: [RouterPortConfiguration?]
    let inUse: FixedArray<Bool>
    let up: FixedArray<Bool>
    /// Egress MTU per port (the interface's MTU; the daemon follows its changes).
    let mtu: FixedArray<Int32>
    /// The guest's MAC per port (`MACAddress.rawValue`, 0: not known), for the per-frame path.
    let guestMAC: FixedArray<UInt64>
    /// Guest ports that enforce anti-spoofing and have no IPv6 address: only link-local IPv6 with
    /// the router (neighbour discovery, ping) is taken from them.
    let noIPv6: FixedArray<Bool>
    /// Guest ports whose DHCP requests the router answers (`dhcp=on`).
    let servesDHCP: FixedArray<Bool>
    /// Lease time and DNS servers the DHCP server hands out.
    public internal(set) var dhcpSettings = DHCPSettings()
    /// Unsolicited router advertisements: when the next is due per port, and how many went.
    let advertisementDeadline: FixedArray<UInt32>
    let advertisementsSent: FixedArray<UInt8>
    var anyRouterAdvertisements = false
    var neighbourRandom = UInt64.random(in: 1...UInt64.max)
    var portCount = 0
    public internal(set) var antiSpoofTable: AntiSpoofTable?
    // The ebtables-style rule set (its FORWARD chain judges routed frames) and its compiled form;
    // nil when there are no rules: one branch per frame.
    /// The router's name, for --logical-in/--logical-out.
    public var bridgeName: String = ""
    public internal(set) var filterRules = FilterRuleSet()
    public internal(set) var filterProgram: FilterProgram?
    var antiSpoofAddresses: [PortAddresses?]

    // Counters.
    let counters: FixedArray<PortCounters>
    let retiredEvents: FixedArray<PortEvents>
    let drops: FixedArray<UInt64>
    public internal(set) var events = RouterEventCounters()

    // The batch in flight: per port the frames to send (`batchSize` entries a port), and the
    // ports that have something to send (forwarded, made or released frames), so transmit visits
    // only those, however many ports the router has.
    let egress: FixedArray<EgressEntry>
    let egressCount: FixedArray<Int32>
    let touched: FixedArray<UInt16>
    let isTouched: FixedArray<Bool>
    var touchedCount = 0
    let entries: FixedArray<EgressEntry>
    let status: FixedArray<TransmitStatus>

    // Frames the router makes (ARP, ICMP, fragments): a pool of slots and the egress port of each.
    let made: PacketBatch
    let madePool: FixedBytes
    let madePort: FixedArray<Int32>
    static var madeSlotSize: Int { 9232 }
    // Queued frames whose next hop resolved, to send with this batch.
    let released: PacketBatch
    let releasedPort: FixedArray<Int32>
    let releasedSlot: FixedArray<Int32>
    var clock: UInt32 = 0
    /// The last next hop resolved in this batch ((port << 32 | address), .max: none) and its MAC:
    /// consecutive frames to one next hop (the common case) skip the neighbour table's hash.
    /// Forgotten at every batch and whenever ARP or the timers may have changed the table.
    var cachedHop: UInt64 = .max
    var cachedMAC = MACAddress.zero
    /// The same for IPv6 (port -1: none).
    var cachedPort6 = -1
    var cachedHop6 = IPAddress(high: 0, low: 0)
    var cachedMAC6 = MACAddress.zero
    /// IPv4 identification of the packets the router makes.
    var identification: UInt16 = 0

    public init(mac: MACAddress, settings: RouterSettings = RouterSettings(), maxPorts: Int = 256) {
        precondition(maxPorts >= 1 && maxPorts <= Int(UInt16.max))
        self.mac = mac
        self.settings = settings
        self.maxPorts = maxPorts
        batch = PacketBatch(capacity: settings.batchSize)
        routes = IPv4RouteTable([])
        routes6 = IPv6RouteTable([])
        linkLocal = RouterEngine.linkLocalAddress(mac)
        neighbours = NeighbourTable(capacity: settings.neighbourCapacity, queueLength: settings.queuePerNeighbour,
                                    poolFrames: settings.queuedFrames, timings: settings.timings)
        rateLimit = ICMPRateLimit()
        devices = Array(repeating: nil, count: maxPorts)
        portNames = Array(repeating: nil, count: maxPorts)
        portConfigurations = Array(repeating: nil, count: maxPorts)
        antiSpoofAddresses = Array(repeating: nil, count: maxPorts)
        inUse = FixedArray(repeating: false, count: maxPorts)
        up = FixedArray(repeating: false, count: maxPorts)
        mtu = FixedArray(repeating: 1500, count: maxPorts)
        guestMAC = FixedArray(repeating: 0, count: maxPorts)
        noIPv6 = FixedArray(repeating: false, count: maxPorts)
        servesDHCP = FixedArray(repeating: false, count: maxPorts)
        advertisementDeadline = FixedArray(repeating: 0, count: maxPorts)
        advertisementsSent = FixedArray(repeating: 0, count: maxPorts)
        counters = FixedArray(repeating: PortCounters(), count: maxPorts)
        retiredEvents = FixedArray(repeating: PortEvents(), count: maxPorts)
        drops = FixedArray(repeating: 0, count: RouterDropReason.allCases.count)
        egress = FixedArray(repeating: EgressEntry(frame: 0, tci: 0), count: maxPorts * settings.batchSize)
        egressCount = FixedArray(repeating: 0, count: maxPorts)
        touched = FixedArray(repeating: 0, count: maxPorts)
        isTouched = FixedArray(repeating: false, count: maxPorts)
        let entryCount = max(settings.batchSize, 64, settings.queuedFrames)
        entries = FixedArray(repeating: EgressEntry(frame: 0, tci: 0), count: entryCount)
        status = FixedArray(repeating: .queued, count: entryCount)
        let madeCount = 64
        made = PacketBatch(capacity: madeCount)
        madePool = FixedBytes(byteCount: madeCount * RouterEngine.madeSlotSize, zeroed: false)
        madePort = FixedArray(repeating: -1, count: madeCount)
        released = PacketBatch(capacity: settings.queuedFrames)
        releasedPort = FixedArray(repeating: -1, count: settings.queuedFrames)
        releasedSlot = FixedArray(repeating: -1, count: settings.queuedFrames)
    }

    @inline(__always)
    func drop(_ r: RouterDropReason) { drops[r.rawValue] &+= 1 }

    /// Frame `i` of the batch whole in memory, for a stage that reads past its headers (a long
    /// frame's body may still wait on ingress port `p`: PacketBatch.deferred). Returns its start.
    @inline(__always)
    func wholeFrame(_ i: Int, from p: Int) -> UnsafeMutableRawPointer {
        if batch.deferred[i] != 0 { devices[p]?.materialize(batch, through: i) }
        return batch.frames[i]
    }

    /// fe80:: with the modified EUI-64 of `mac` (RFC 4291 appendix A).
    public static func linkLocalAddress(_ mac: MACAddress) -> IPAddress {
        let m = mac.rawValue
        let eui = (m >> 24 ^ 0x02_0000) << 40 | 0xFF_FE00_0000 | (m & 0xFF_FFFF)
        return IPAddress(high: 0xFE80_0000_0000_0000, low: eui)
    }

    /// Forgets the last next hops remembered (ARP, ND or the timers may have changed the table).
    @inline(__always)
    func forgetCachedHops() { cachedHop = .max; cachedPort6 = -1 }

    // MARK: the dataplane

    /// Receives one batch from port `i`, routes it, and gives the frames back.
    @discardableResult
    public func poll(port i: Int, now: UInt32) -> Int {
        guard let device = devices[i] else { return 0 }
        batch.count = 0
        let n = device.receive(into: batch)
        batch.count = n
        if n > 0 { process(from: i, now: now) }
        device.releaseReceived()
        return n
    }

    /// Polls every up port once. Returns the frames received in all.
    @discardableResult
    public func pollAll(now: UInt32) -> Int {
        var total = 0
        for i in 0..<portCount where up[i] { total &+= poll(port: i, now: now) }
        return total
    }

    /// Runs the stages over `batch` (already filled) as received on port `p`.
    public func process(from p: Int, now: UInt32) {
        let n = batch.count
        if n == 0 { return }
        clock = now
        forgetCachedHops()
        classify(from: p, count: n)
        if let table = antiSpoofTable, table.isEnforced(p) { checkSources(from: p, count: n, table) }
        let info = batch.info.base
        let dhcp = servesDHCP[p]
        for i in 0..<n where info[i].vlan != 0 {
            switch info[i].etherType {
            case 0x0800:
                if dhcp {
                    // A DHCP port lets broadcast IPv4 through classify: only its requests go on.
                    let f = batch.frames[i]
                    if RouterEngine.isDHCPRequest(f, length: Int(batch.lengths[i])) { serveDHCP(i, from: p); continue }
                    if MACAddress(loadingFrom: f).isBroadcast { drop(.martian); continue }
                }
                forwardIPv4(i, from: p)
            case 0x86DD: handleIPv6(i, from: p)
            default: handleARP(i, from: p)
            }
        }
        transmit(count: n, from: p)
    }

    /// Ethernet checks; sets `info[i].vlan` to 1 for frames that go on (0: dropped).
    func classify(from p: Int, count n: Int) {
        let frames = batch.frames.base, lengths = batch.lengths.base, info = batch.info.base
        let own = mac
        var rxBytes: UInt64 = 0
        for i in 0..<n {
            let f = UnsafeRawPointer(frames[i])
            let len = Int(lengths[i])
            rxBytes &+= UInt64(len)
            info[i] = .dropped
            if len < 14 { drop(.runt); continue }
            let dst = MACAddress(loadingFrom: f)
            let type = HeaderBytes.be16(f, 12)
            if dst != own && !dst.isBroadcast && !(type == 0x86DD && dst.rawValue >> 32 == 0x3333) {
                drop(dst.isMulticast ? .unsupportedProtocol : .otherHost); continue
            }
            let src = MACAddress(loadingFrom: f + 6)
            if src.isMulticast || src.isZero { drop(.invalidSourceMAC); continue }
            // The router's own MAC as a source: a spoof, or its own frames looped back.
            if src == own { drop(.ownAddressSource); continue }
            if type == 0x8100 || type == 0x88A8 { drop(.tagged); continue }
            if type == 0x0806 {
                if len < 42 { drop(.runt); continue }
            } else if type == 0x0800 {
                if dst.isBroadcast && !servesDHCP[p] { drop(.martian); continue }
                if len < 34 { drop(.runt); continue }
            } else if type == 0x86DD {
                if dst.isBroadcast { drop(.martian); continue }
                if len < 54 { drop(.runt); continue }
            } else {
                drop(.unsupportedProtocol); continue
            }
            info[i] = FrameInfo(vlan: 1, etherType: type, l3Offset: 14)
        }
        counters[p].rxFrames &+= UInt64(n)
        counters[p].rxBytes &+= rxBytes
    }

    func checkSources(from p: Int, count n: Int, _ table: AntiSpoofTable) {
        let frames = batch.frames.base, lengths = batch.lengths.base, info = batch.info.base
        for i in 0..<n where info[i].vlan != 0 {
            if let reason = table.violation(port: p, frame: frames[i], length: Int(lengths[i]), info: info[i]) {
                info[i].vlan = 0
                switch reason {
                case .spoofedSourceMAC: drop(.spoofedSourceMAC)
                case .spoofedARP: drop(.spoofedARP)
                case .rogueRouterAdvertisement: drop(.routerAdvertisement)
                case .rogueDHCPServer: drop(.rogueDHCPServer)
                default: drop(.spoofedSourceIP)
                }
            }
        }
    }

    // MARK: made frames

    /// A slot for a frame the router makes to send on `port`, or nil when all are taken this batch
    /// (the frame is not made; it is a reply or an error, never a guest's frame).
    @inline(__always)
    func makeFrame(port: Int) -> UnsafeMutableRawPointer? {
        let k = made.count
        guard k < made.capacity else { return nil }
        madePort[k] = Int32(port)
        markTouched(port)
        return madePool.base + k * RouterEngine.madeSlotSize
    }

    /// Commits the frame made in the last `makeFrame` slot with its length.
    @inline(__always)
    func commitFrame(length: Int, vnet: VirtioNetHeader = .none) {
        let k = made.count
        made.append(madePool.base + k * RouterEngine.madeSlotSize, length: length, vnet: vnet)
    }

    // MARK: transmit

    /// Frame `i` of the batch goes out of port `q`.
    @inline(__always)
    func sendForwarded(_ i: Int, on q: Int) {
        let c = Int(egressCount[q])
        egress[q &* settings.batchSize &+ c] = EgressEntry(frame: UInt16(truncatingIfNeeded: i), tci: 0)
        egressCount[q] = Int32(c &+ 1)
        markTouched(q)
    }

    @inline(__always)
    func markTouched(_ q: Int) {
        if isTouched[q] { return }
        isTouched[q] = true
        touched[touchedCount] = UInt16(truncatingIfNeeded: q)
        touchedCount &+= 1
    }

    /// Sends, port by port, the forwarded frames, then the made ones, then the released ones.
    func transmit(count n: Int, from p: Int = -1) {
        let ingress = p >= 0 ? devices[p] : nil
        for t in 0..<touchedCount {
            let q = Int(touched[t])
            isTouched[q] = false
            var sent = false
            let c = Int(egressCount[q])
            if c > 0 {
                egressCount[q] = 0
                send(batch, entries: UnsafePointer(egress.base + q &* settings.batchSize), count: c, on: q, from: ingress)
                sent = true
            }
            var k = 0
            for m in 0..<made.count where Int(madePort[m]) == q {
                entries[k] = EgressEntry(frame: UInt16(truncatingIfNeeded: m), tci: 0)
                k += 1
            }
            if k > 0 { send(made, entries: UnsafePointer(entries.base), count: k, on: q); sent = true }
            k = 0
            for m in 0..<released.count where Int(releasedPort[m]) == q {
                entries[k] = EgressEntry(frame: UInt16(truncatingIfNeeded: m), tci: 0)
                k += 1
            }
            if k > 0 { send(released, entries: UnsafePointer(entries.base), count: k, on: q); sent = true }
            if sent { devices[q]?.flush() }
        }
        touchedCount = 0
        made.count = 0
        if released.count > 0 {
            neighbours.release((0..<released.count).map { releasedSlot[$0] })
            released.count = 0
        }
    }

    /// Queues `count` entries of `b` on port `q` and counts the outcome.
    func send(_ b: PacketBatch, entries list: UnsafePointer<EgressEntry>, count c: Int, on q: Int, from ingress: Port? = nil) {
        guard let device = devices[q], up[q] else {
            drops[RouterDropReason.egressPortDown.rawValue] &+= UInt64(c)
            return
        }
        let sent = device.transmit(b, entries: list, count: c, status: status.base, from: ingress)
        var bytes: UInt64 = 0
        let lengths = b.lengths.base
        for k in 0..<c {
            switch status[k] {
            case .queued: bytes &+= UInt64(lengths[Int(list[k].frame)])
            case .ringFull: counters[q].txQueueFull &+= 1; drop(.txQueueFull)
            case .oversize: counters[q].txOversize &+= 1; drop(.txOversize)
            case .error: counters[q].txErrors &+= 1; drop(.txError)
            }
        }
        counters[q].txFrames &+= UInt64(sent)
        counters[q].txBytes &+= bytes
    }

    // MARK: timers (between batches)

    /// Runs the neighbour timers and sends what they ask for (ARP requests, host unreachable for
    /// frames whose next hop failed). Call every 100 ms or so, between batches.
    public func housekeeping(now: UInt32) {
        clock = now
        forgetCachedHops()
        made.count = 0
        advertiseRouters(now: now)
        let actions = neighbours.tick(now: now)
        if actions.isEmpty && made.count == 0 { return }
        for a in actions {
            switch a {
            case .request(let address, let port, let unicast):
                if let v4 = address.ipv4 {
                    sendARPRequest(for: v4, on: port, to: unicast)
                } else {
                    sendNeighbourSolicitation(for: address, on: port, to: unicast)
                }
            case .failed(_, _, let slots):
                for s in slots {
                    let (f, len, _) = neighbours.slotFrame(s)
                    drop(.neighbourUnreachable)
                    if HeaderBytes.be16(f, 12) == 0x86DD {
                        sendICMPv6Error(about: f, length: len, type: 1, code: 3, info: 0)
                    } else {
                        sendICMPError(about: f, length: len, type: 3, code: 1, info: 0)
                    }
                }
                neighbours.release(slots)
            }
        }
        transmit(count: 0)
    }
}
