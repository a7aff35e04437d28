// RouterCounters: why the router did not forward a frame, one counter per reason (as the bridge's
// DropReason), bumped next to the code that drops.

public enum RouterDropReason: Int, CaseIterable, Sendable {
    /// Shorter than an Ethernet header, or than the header its ethertype promises.
    case runt
    /// Source MAC multicast, broadcast or zero.
    case invalidSourceMAC
    /// Unicast to another MAC: a promiscuous uplink sees the LAN's traffic (Linux's PACKET_OTHERHOST).
    case otherHost
    /// Carries an 802.1Q tag: routed ports are untagged.
    case tagged
    /// Neither ARP, IPv4 nor IPv6, or multicast that is not IPv6's.
    case unsupportedProtocol
    /// ARP that is not Ethernet/IPv4, or not a request or reply.
    case badARP
    /// ARP on the router's ports that needs no answer (for an address it does not own or proxy).
    case arpIgnored
    /// Anti-spoofing: a source MAC, IP or ARP sender the guest port does not own.
    case spoofedSourceMAC
    case spoofedSourceIP
    case spoofedARP
    /// IPv4 header invalid: version, header length, total length.
    case badIPv4Header
    /// IPv4 header checksum wrong.
    case badIPv4Checksum
    /// Source or destination a router never forwards (0.0.0.0/8 source, 127/8, multicast, broadcast,
    /// class E), as Linux's martian checks.
    case martian
    /// Arrived on the uplink from an address routed out a guest port (rp_filter).
    case reversePath
    /// TTL ran out here: time exceeded sent.
    case ttlExceeded
    /// No route: net unreachable sent.
    case noRoute
    /// The route's port is down.
    case egressPortDown
    /// Longer than the egress MTU with DF set: fragmentation needed sent.
    case fragmentationNeeded
    /// A GSO super-frame whose segments are longer than the egress MTU without DF: the router does
    /// not segment.
    case gsoTooLong
    /// The neighbour table is full: a new next hop was refused.
    case neighbourTableFull
    /// The next hop's queue (or the router's pool of queued frames) was full.
    case neighbourQueueFull
    /// Resolution of the next hop failed: host unreachable sent.
    case neighbourUnreachable
    /// For the router itself but not an echo request (UDP gets a port unreachable).
    case localDelivery
    /// The FORWARD chain of the router's filter rules dropped it.
    case filtered
    /// The egress port's transmit ring or queue was full.
    case txQueueFull
    /// Larger than the egress port's transmit slot.
    case txOversize
    /// The egress port could not send.
    case txError
    /// IPv6 header invalid: version, payload length.
    case badIPv6Header
    /// The hop limit ran out here: time exceeded sent.
    case hopLimitExceeded
    /// IPv6 longer than the egress MTU: packet too big sent (routers never fragment IPv6).
    case packetTooBig
    /// IPv6 multicast other than neighbour discovery (MLD, mDNS, ...): the router routes no multicast.
    case ipv6Multicast
    /// Neighbour discovery that fails RFC 4861's checks (hop limit, code, checksum, options).
    case badND
    /// Neighbour discovery that needs no answer (an advertisement taken into the cache, a
    /// solicitation for an address the router neither owns nor proxies, a redirect).
    case ndIgnored
    /// A router advertisement: never accepted, from the uplink or a guest.
    case routerAdvertisement
    /// A guest's DHCP or DHCPv6 server reply (anti-spoofing): guests are never servers.
    case rogueDHCPServer
    /// A DHCP request the server cannot read: BOOTP header, magic cookie, options running past the
    /// datagram, no message type, or a server's message.
    case badDHCP
    /// A DHCP request the server does not answer: for another server, relayed, or on a port with no
    /// IPv4 address to hand out.
    case dhcpIgnored
    /// The router's own MAC as a frame's source: a spoof, or the router's frames looped back.
    case ownAddressSource

    public var name: String {
        switch self {
        case .runt: return "runt"
        case .invalidSourceMAC: return "invalid-source-mac"
        case .otherHost: return "other-host"
        case .tagged: return "tagged"
        case .unsupportedProtocol: return "unsupported-protocol"
        case .badARP: return "bad-arp"
        case .arpIgnored: return "arp-ignored"
        case .spoofedSourceMAC: return "spoofed-source-mac"
        case .spoofedSourceIP: return "spoofed-source-ip"
        case .spoofedARP: return "spoofed-arp"
        case .badIPv4Header: return "bad-ipv4-header"
        case .badIPv4Checksum: return "bad-ipv4-checksum"
        case .martian: return "martian"
        case .reversePath: return "reverse-path"
        case .ttlExceeded: return "ttl-exceeded"
        case .noRoute: return "no-route"
        case .egressPortDown: return "egress-port-down"
        case .fragmentationNeeded: return "fragmentation-needed"
        case .gsoTooLong: return "gso-too-long"
        case .neighbourTableFull: return "neighbour-table-full"
        case .neighbourQueueFull: return "neighbour-queue-full"
        case .neighbourUnreachable: return "neighbour-unreachable"
        case .localDelivery: return "local-delivery"
        case .filtered: return "filtered"
        case .txQueueFull: return "tx-queue-full"
        case .txOversize: return "tx-oversize"
        case .txError: return "tx-error"
        case .badIPv6Header: return "bad-ipv6-header"
        case .hopLimitExceeded: return "hop-limit-exceeded"
        case .packetTooBig: return "packet-too-big"
        case .ipv6Multicast: return "ipv6-multicast"
        case .badND: return "bad-nd"
        case .ndIgnored: return "nd-ignored"
        case .routerAdvertisement: return "router-advertisement"
        case .rogueDHCPServer: return "rogue-dhcp-server"
        case .badDHCP: return "bad-dhcp"
        case .dhcpIgnored: return "dhcp-ignored"
        case .ownAddressSource: return "own-address-source"
        }
    }
}

/// What the router did besides forwarding, for `stats`.
public struct RouterEventCounters: Equatable, Sendable {
    public var arpRepliesSent: UInt64 = 0
    public var arpRequestsSent: UInt64 = 0
    public var icmpErrorsSent: UInt64 = 0
    /// ICMP errors the rate limit held back.
    public var icmpRateLimited: UInt64 = 0
    public var echoRepliesSent: UInt64 = 0
    /// Frames sent as fragments, and the fragments made.
    public var fragmented: UInt64 = 0
    public var fragmentsMade: UInt64 = 0
    public var neighbourSolicitationsSent: UInt64 = 0
    public var neighbourAdvertisementsSent: UInt64 = 0
    public var routerAdvertisementsSent: UInt64 = 0
    /// DHCP server replies, and the declines and releases guests sent.
    public var dhcpOffers: UInt64 = 0
    public var dhcpAcks: UInt64 = 0
    public var dhcpNaks: UInt64 = 0
    public var dhcpDeclines: UInt64 = 0
    public var dhcpReleases: UInt64 = 0
    public init() {}

    /// Every counter by the name `stats` shows.
    public var byName: [String: UInt64] {
        ["arp-replies": arpRepliesSent, "arp-requests": arpRequestsSent, "icmp-errors": icmpErrorsSent,
         "icmp-rate-limited": icmpRateLimited, "echo-replies": echoRepliesSent, "fragmented": fragmented,
         "fragments": fragmentsMade, "neighbour-solicitations": neighbourSolicitationsSent,
         "neighbour-advertisements": neighbourAdvertisementsSent, "router-advertisements": routerAdvertisementsSent,
         "dhcp-offers": dhcpOffers, "dhcp-acks": dhcpAcks, "dhcp-naks": dhcpNaks, "dhcp-declines": dhcpDeclines,
         "dhcp-releases": dhcpReleases]
    }
}
