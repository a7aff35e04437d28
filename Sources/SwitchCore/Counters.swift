// Counters: every frame that enters the switch is either sent or counted under one drop reason.
// One list of reasons (as in VPP), one counter each, bumped next to the code that drops.
// Per port, the engine counts traffic and the transmit entries a port did not queue
// (`PortCounters`); what only a backend sees is in its `PortEvents` (FramePort.swift).

/// Why a frame did not leave the switch.
public enum DropReason: Int, CaseIterable, Sendable {
    /// Shorter than an Ethernet header (or a VLAN header that does not fit).
    case runt
    /// Source MAC is multicast, broadcast or all zeros: never learned, never forwarded.
    case invalidSourceMAC
    /// Destination is an IEEE 802.1D link-local group address (01:80:C2:00:00:0x), PAUSE included.
    case linkLocalDestination
    /// An 802.1Q-tagged frame (non-zero VID) arrived on an access port.
    case taggedOnAccessPort
    /// An untagged or priority-tagged frame arrived on a trunk port that has no native VLAN.
    case untaggedOnTrunk
    /// A tagged frame's VLAN is not in the trunk's allowed set (or is 4095).
    case vlanNotAllowed
    /// The destination was learned on the port the frame came from.
    case sameSegment
    /// Broadcast, multicast or unknown unicast with no other port in its VLAN.
    case noEgressPort
    /// The destination's port is down (its interface is gone).
    case egressPortDown
    /// The egress port's transmit ring or queue was full.
    case txQueueFull
    /// The frame (after a tag push) is larger than the egress port's transmit slot or buffer.
    case txOversize
    /// The egress port could not send at all (its interface went away, its output is closed).
    case txError
    /// Larger than the ingress port's receive slot: the sum of the ports' `rxTruncated` events.
    case truncated
    /// An ebtables-style filter rule or chain policy (INPUT, FORWARD, OUTPUT) dropped it.
    case filtered
    /// Anti-spoofing: the source MAC is not one the port's guest may use.
    case spoofedSourceMAC
    /// Anti-spoofing: an IPv4/IPv6 source address the port's guest may not use.
    case spoofedSourceIP
    /// Anti-spoofing: ARP with a sender MAC or IP the port's guest may not use.
    case spoofedARP
    /// Anti-spoofing: a router advertisement sent by a guest.
    case rogueRouterAdvertisement
    /// Anti-spoofing: a DHCP (or DHCPv6) server reply sent by a guest.
    case rogueDHCPServer
    /// The kernel found the port's receive ring full and dropped the frame before the switch saw it
    /// (PACKET_STATISTICS): the bridge thread was behind or off the CPU. The sum of the ports'
    /// `rxRingFull` events.
    case rxRingFull
    /// A source MAC that is one of the switch's own addresses (a TAP port's MAC, a local entry),
    /// arriving on another port: on a Xen host only a spoof or a loop sends it.
    case ownAddressSource
    /// Port security: a new source MAC on a port that already holds its `max-macs` learned ones.
    case macLimit
    /// Storm control: broadcast, multicast or unknown unicast beyond the ingress port's limit
    /// (`storm-broadcast=`, `storm-multicast=`, `storm-unknown=` frames/s).
    case stormBroadcast
    case stormMulticast
    case stormUnknown

    public var name: String {
        switch self {
        case .runt: return "runt"
        case .invalidSourceMAC: return "invalid-source-mac"
        case .linkLocalDestination: return "link-local-destination"
        case .taggedOnAccessPort: return "tagged-on-access-port"
        case .untaggedOnTrunk: return "untagged-on-trunk"
        case .vlanNotAllowed: return "vlan-not-allowed"
        case .sameSegment: return "same-segment"
        case .noEgressPort: return "no-egress-port"
        case .egressPortDown: return "egress-port-down"
        case .txQueueFull: return "tx-queue-full"
        case .txOversize: return "tx-oversize"
        case .txError: return "tx-error"
        case .truncated: return "truncated"
        case .filtered: return "filtered"
        case .spoofedSourceMAC: return "spoofed-source-mac"
        case .spoofedSourceIP: return "spoofed-source-ip"
        case .spoofedARP: return "spoofed-arp"
        case .rogueRouterAdvertisement: return "rogue-router-advertisement"
        case .rogueDHCPServer: return "rogue-dhcp-server"
        case .rxRingFull: return "rx-ring-full"
        case .ownAddressSource: return "own-address-source"
        case .macLimit: return "mac-limit"
        case .stormBroadcast: return "storm-broadcast"
        case .stormMulticast: return "storm-multicast"
        case .stormUnknown: return "storm-unknown"
        }
    }
}

/// Per-reason drop counters of one bridge.
public struct DropCounters: Sendable, Equatable {
    public var values: [UInt64] = Array(repeating: 0, count: DropReason.allCases.count)
    public init() {}
    @inline(__always)
    public subscript(reason: DropReason) -> UInt64 {
        get { values[reason.rawValue] }
        set { values[reason.rawValue] = newValue }
    }
    public var total: UInt64 { values.reduce(0, &+) }
    public var byName: [String: UInt64] {
        var d: [String: UInt64] = [:]
        for r in DropReason.allCases { d[r.name] = values[r.rawValue] }
        return d
    }
}

/// What the engine counts for one port, as `ip -s link` counts traffic: frames and bytes as they
/// crossed the wire (tags included), and the entries the port's backend did not queue, by reason.
public struct PortCounters: Sendable, Equatable {
    public var rxFrames: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txFrames: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Frames not queued: the port's transmit ring or queue was full (`tx-queue-full`).
    public var txQueueFull: UInt64 = 0
    /// Frames not queued: larger than the port's transmit slot (`tx-oversize`).
    public var txOversize: UInt64 = 0
    /// Frames not queued: the port could not send at all (`tx-error`).
    public var txErrors: UInt64 = 0
    /// Times the port's interface vanished while attached.
    public var downEvents: UInt64 = 0
    public init() {}
}
