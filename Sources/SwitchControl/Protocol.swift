// The control protocol between userswitchctl and userswitchd.
//
// One JSON object per line over a Unix stream socket (root only, mode 0600). The client sends a
// `ControlRequest` and reads one `ControlResponse`; then either side may close. `version` lets a
// newer daemon refuse an older client with a clear message instead of misreading it. Every
// command answers success or a precise error, and a command that fails changes nothing.

import SwitchCore

public let controlProtocolVersion = 1
public let defaultSocketPath = "/run/userswitch/userswitchd.sock"

/// How a port reaches its frames.
public enum PortType: String, Codable, Sendable, CaseIterable {
    /// An existing kernel interface (vif, emulated tap made by QEMU, NIC, veth), read and
    /// written through AF_PACKET rings.
    case system
    /// A TAP device the switch creates and removes (the bridge's own port for the host's stack).
    case tap
}

public enum ControlCommand: Codable, Sendable, Equatable {
    case addBridge(name: String, ageingSeconds: UInt32?, fdbCapacity: Int?)
    case delBridge(name: String)
    case addPort(bridge: String, port: String, type: PortType, vlan: VLANMode)
    case delPort(bridge: String, port: String)
    case show
    case fdb(bridge: String)
    case fdbAdd(bridge: String, mac: MACAddress, vlan: UInt16, port: String)
    case fdbDel(bridge: String, mac: MACAddress, vlan: UInt16)
    case setAgeing(bridge: String, seconds: UInt32)
    /// Counters of every bridge (bridge nil), one bridge, or one port (found in any bridge).
    case stats(bridge: String?, port: String?)
    /// Records (or, with nil, forgets) who is behind a port; vif-userswitch sets it from xenstore.
    case setPortGuest(bridge: String, port: String, guest: GuestInfo?)
    /// Brings the running switch to this configuration (userswitchctl apply FILE).
    case apply(SwitchConfiguration)
    /// The running configuration, as it would be saved.
    case configuration
    // Filtering (Daemon+Filter.swift). `bridge` nil: the only bridge there is.
    /// One ebtables command as its words (`-A FORWARD -i vif1.0 -s ! 00:16:3e:00:00:01 -j DROP`).
    case filter(bridge: String?, arguments: [String])
    /// The filter table in ebtables-save format (with `-c PACKETS BYTES` when `counters`).
    case filterSave(bridge: String?, counters: Bool)
    /// Replaces the whole filter table with ebtables-save text, atomically.
    case filterRestore(bridge: String?, text: String)
    /// Sets a port's guest MACs, IP addresses (`10.0.0.5`, `10.0.1.0/24`, `2001:db8::5`) and
    /// anti-spoofing (nil: on when it has an address); a nil list leaves that list unchanged.
    case setPort(bridge: String, port: String, macs: [MACAddress]?, ips: [String]?, antiSpoofing: Bool?, maxMACs: Int? = nil,
                 storm: StormLimits? = nil)
    /// add-port with the guest's addresses (`mac=`, `ip=`, `anti-spoofing=`): enforced from the
    /// port's first frame.
    case addPortWithAddresses(bridge: String, port: String, type: PortType, vlan: VLANMode, addresses: PortAddressInfo)
    // Routers (Daemon+Router.swift). Bridges and routers share one namespace of names; add-port and
    // del-port on a router's name add or remove a routed port.
    /// A router on `uplink` with its own address `A/P`, default gateway and MAC (nil: derived from
    /// the name), and optionally its IPv6 address `A6/P6` and IPv6 default gateway, and the DNS
    /// servers its DHCP server hands out.
    case addRouter(name: String, uplink: String, address: String, gateway: String?, mac: MACAddress?,
                   address6: String? = nil, gateway6: String? = nil, dns: [String] = [])
    case delRouter(name: String)
    /// A static route to `prefix` via a next hop, or out of a port (`dev`).
    case routeAdd(router: String, prefix: String, via: String?, dev: String?)
    case routeDel(router: String, prefix: String)
    case routes(router: String)
    case neighbours(router: String)
    case neighbourAdd(router: String, address: String, mac: MACAddress, port: String)
    case neighbourDel(router: String, address: String)
    /// Forgets the dynamic neighbours (of one port, or all).
    case neighbourFlush(router: String, port: String?)
    /// Every router with its ports (`show` lists them after the bridges).
    case showRouters
}

/// A router as `show` lists it.
public struct RouterInfo: Codable, Sendable, Equatable {
    public var name: String
    public var mode: String
    public var mac: MACAddress
    public var address: String?
    public var gateway: String?
    public var ports: [RouterPortInfo]
    /// IPv6: the uplink address `A6/P6`, the default gateway, and the link-local address every
    /// port has.
    public var address6: String?
    public var gateway6: String?
    public var linkLocal: String?
    /// DNS servers the DHCP server hands out; nil: none.
    public var dns: [String]?
    public init(name: String, mode: String, mac: MACAddress, address: String?, gateway: String?, ports: [RouterPortInfo],
                address6: String? = nil, gateway6: String? = nil, linkLocal: String? = nil, dns: [String]? = nil) {
        self.name = name; self.mode = mode; self.mac = mac; self.address = address; self.gateway = gateway; self.ports = ports
        self.address6 = address6; self.gateway6 = gateway6; self.linkLocal = linkLocal; self.dns = dns
    }
}

public struct RouterPortInfo: Codable, Sendable, Equatable {
    public var name: String
    public var number: Int
    /// `uplink` or `guest`.
    public var role: String
    public var type: PortType
    public var state: String
    public var addresses: [String]
    public var mac: MACAddress?
    public var metric: Int
    public var mtu: Int
    /// Router advertisements on the port (`ra=on`).
    public var routerAdvertisements: Bool?
    /// The DHCP server answers on the port (`dhcp=on`).
    public var dhcp: Bool?
    public init(name: String, number: Int, role: String, type: PortType, state: String, addresses: [String],
                mac: MACAddress?, metric: Int, mtu: Int, routerAdvertisements: Bool? = nil, dhcp: Bool? = nil) {
        self.name = name; self.number = number; self.role = role; self.type = type; self.state = state
        self.addresses = addresses; self.mac = mac; self.metric = metric; self.mtu = mtu
        self.routerAdvertisements = routerAdvertisements; self.dhcp = dhcp
    }
}

/// One route as `routes` lists it (like `ip route`).
public struct RouteInfo: Codable, Sendable, Equatable {
    public var destination: String
    public var via: String?
    public var dev: String
    /// connected, host, static or default.
    public var kind: String
    public var metric: Int
    /// `ipv6` for an IPv6 route; nil: IPv4.
    public var family: String?
    public init(destination: String, via: String?, dev: String, kind: String, metric: Int, family: String? = nil) {
        self.destination = destination; self.via = via; self.dev = dev; self.kind = kind; self.metric = metric; self.family = family
    }
}

/// One neighbour as `neigh` lists it (like `ip neigh`).
public struct NeighbourInfo: Codable, Sendable, Equatable {
    public var address: String
    public var mac: MACAddress?
    public var port: String
    public var state: String
    public var queued: Int
    public init(address: String, mac: MACAddress?, port: String, state: String, queued: Int) {
        self.address = address; self.mac = mac; self.port = port; self.state = state; self.queued = queued
    }
}

/// A port's guest addresses and anti-spoofing setting, as the control protocol carries them.
public struct PortAddressInfo: Codable, Sendable, Equatable {
    public var macs: [MACAddress]
    public var ips: [String]
    /// nil: on when the port has any address.
    public var antiSpoofing: Bool?
    /// Router advertisements (`ra=on`), for a port on a router only; nil: not given.
    public var routerAdvertisements: Bool?
    /// The router's DHCP server on the port (`dhcp=on`), for a port on a router only; nil: not given.
    public var dhcp: Bool?
    /// Port security (`max-macs=N`): at most N learned source MACs on a bridge port, 0 no limit;
    /// nil: not given (no limit).
    public var maxMACs: Int?
    /// Storm control (`storm-broadcast=`, `storm-multicast=`, `storm-unknown=`); nil: not given.
    public var storm: StormLimits?
    public init(macs: [MACAddress] = [], ips: [String] = [], antiSpoofing: Bool? = nil, routerAdvertisements: Bool? = nil,
                dhcp: Bool? = nil, maxMACs: Int? = nil, storm: StormLimits? = nil) {
        self.macs = macs; self.ips = ips; self.antiSpoofing = antiSpoofing; self.routerAdvertisements = routerAdvertisements
        self.dhcp = dhcp; self.maxMACs = maxMACs; self.storm = storm
    }
}

/// A bridge port's storm limits in frames/s (0: off; nil: not given, unchanged by set-port).
public struct StormLimits: Codable, Sendable, Equatable {
    public var broadcast: Int?
    public var multicast: Int?
    public var unknown: Int?
    public init(broadcast: Int? = nil, multicast: Int? = nil, unknown: Int? = nil) {
        self.broadcast = broadcast; self.multicast = multicast; self.unknown = unknown
    }
    public var isEmpty: Bool { broadcast == nil && multicast == nil && unknown == nil }
    /// The largest limit a port takes, frames/s.
    public static let maximum = 100_000_000
}

/// The guest behind a port (a Xen domain's vif): shown by `show`, saved with the configuration.
public struct GuestInfo: Codable, Sendable, Equatable {
    public var name: String?
    public var uuid: String?
    public var mac: MACAddress?
    /// Addresses, optionally with a prefix length (`10.0.0.5`, `10.0.1.0/24`).
    public var ips: [String]
    public init(name: String? = nil, uuid: String? = nil, mac: MACAddress? = nil, ips: [String] = []) {
        self.name = name; self.uuid = uuid; self.mac = mac; self.ips = ips
    }
    private enum CodingKeys: String, CodingKey, CaseIterable { case name, uuid, mac, ips }
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue), in: "a guest")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        uuid = try c.decodeIfPresent(String.self, forKey: .uuid)
        mac = try c.decodeIfPresent(MACAddress.self, forKey: .mac)
        ips = try c.decodeIfPresent([String].self, forKey: .ips) ?? []
    }
}

public struct ControlRequest: Codable, Sendable, Equatable {
    public var version: Int
    public var command: ControlCommand
    public init(_ command: ControlCommand, version: Int = controlProtocolVersion) {
        self.version = version
        self.command = command
    }
}

public struct PortInfo: Codable, Sendable, Equatable {
    public var name: String
    /// The port's number in its bridge (as in `brctl showmacs`), from 1.
    public var number: Int
    public var type: PortType
    public var vlan: VLANMode
    /// `up`, or `down` while its interface is missing (it re-attaches when the interface returns).
    public var state: String
    /// The guest behind the port, when vif-userswitch (or setPortGuest) recorded one.
    public var guest: GuestInfo?
    /// Anti-spoofing in force on the port, and the addresses it allows (Daemon+Filter.swift).
    public var antiSpoofing: Bool? = nil
    public var addresses: PortAddressInfo? = nil
    public init(name: String, number: Int, type: PortType, vlan: VLANMode, state: String, guest: GuestInfo? = nil) {
        self.name = name; self.number = number; self.type = type; self.vlan = vlan; self.state = state
        self.guest = guest
    }
}

public struct BridgeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var ageingSeconds: UInt32
    public var fdbCapacity: Int
    public var ports: [PortInfo]
    public init(name: String, ageingSeconds: UInt32, fdbCapacity: Int, ports: [PortInfo]) {
        self.name = name; self.ageingSeconds = ageingSeconds; self.fdbCapacity = fdbCapacity; self.ports = ports
    }
}

public struct FDBEntryInfo: Codable, Sendable, Equatable {
    public var port: String
    public var portNumber: Int
    public var vlan: UInt16
    public var mac: MACAddress
    /// Static entries never age and never move.
    public var isStatic: Bool
    /// Seconds since the address was last seen (0 for static entries).
    public var ageSeconds: Double
    public init(port: String, portNumber: Int, vlan: UInt16, mac: MACAddress, isStatic: Bool, ageSeconds: Double) {
        self.port = port; self.portNumber = portNumber; self.vlan = vlan; self.mac = mac
        self.isStatic = isStatic; self.ageSeconds = ageSeconds
    }
}

public struct PortStats: Codable, Sendable, Equatable {
    public var name: String
    public var state: String
    public var rxFrames: UInt64
    public var rxBytes: UInt64
    public var txFrames: UInt64
    public var txBytes: UInt64
    /// Times the port's interface vanished while attached.
    public var downEvents: UInt64
    /// The port's problem counters by name (`PortStats.eventNames`, every name listed, zeros
    /// included): frames its backend lost before the pipeline (rx-runts, rx-truncated,
    /// rx-ring-full, rx-errors), entries it could not queue (tx-queue-full, tx-oversize,
    /// tx-errors) and failures after queueing (tx-send-errors, tx-wrong-format).
    public var events: [String: UInt64]
    public init(name: String, state: String, rxFrames: UInt64, rxBytes: UInt64, txFrames: UInt64, txBytes: UInt64,
                downEvents: UInt64, events: [String: UInt64] = [:]) {
        self.name = name; self.state = state; self.rxFrames = rxFrames; self.rxBytes = rxBytes
        self.txFrames = txFrames; self.txBytes = txBytes; self.downEvents = downEvents; self.events = events
    }

    /// A port's line of `stats` from what its engine and its backends counted.
    public init(name: String, up: Bool, counters c: PortCounters, events e: PortEvents) {
        self.init(name: name, state: up ? "up" : "down", rxFrames: c.rxFrames, rxBytes: c.rxBytes, txFrames: c.txFrames,
                  txBytes: c.txBytes, downEvents: c.downEvents, events: PortStats.events(c, e))
    }

    /// The names of `events`, in the order `stats` lists them.
    public static let eventNames = ["rx-runts", "rx-truncated", "rx-ring-full", "rx-errors", "tx-queue-full",
                                    "tx-oversize", "tx-errors", "tx-send-errors", "tx-wrong-format"]

    /// `events` from the engine's counters and the backends' events of one port.
    public static func events(_ c: PortCounters, _ e: PortEvents) -> [String: UInt64] {
        ["rx-runts": e.rxRunts, "rx-truncated": e.rxTruncated, "rx-ring-full": e.rxRingFull, "rx-errors": e.rxErrors,
         "tx-queue-full": c.txQueueFull, "tx-oversize": c.txOversize, "tx-errors": c.txErrors,
         "tx-send-errors": e.txSendErrors, "tx-wrong-format": e.txWrongFormat]
    }
}

public struct BridgeStats: Codable, Sendable, Equatable {
    public var name: String
    public var ports: [PortStats]
    /// Dropped frames per reason (`DropReason.name`), every reason listed, zeros included.
    public var drops: [String: UInt64]
    public var fdbEntries: Int
    /// nil for a bridge; `router` for a router, whose `fdbEntries` counts its neighbours.
    public var kind: String?
    /// A router's messages sent besides forwarding (ARP and ND answers, ICMP, fragments), by name.
    public var routerEvents: [String: UInt64]?
    public init(name: String, ports: [PortStats], drops: [String: UInt64], fdbEntries: Int, kind: String? = nil,
                routerEvents: [String: UInt64]? = nil) {
        self.name = name; self.ports = ports; self.drops = drops; self.fdbEntries = fdbEntries; self.kind = kind
        self.routerEvents = routerEvents
    }
}

public enum ControlResult: Codable, Sendable, Equatable {
    case done
    case show([BridgeInfo])
    case fdb([FDBEntryInfo])
    case stats([BridgeStats])
    case configuration(SwitchConfiguration)
    /// `filter -L`: chains, rules and counters.
    case filterListing(FilterListing)
    /// `filter-save`: ebtables-save text.
    case filterText(String)
    case routers([RouterInfo])
    case routes([RouteInfo])
    case neighbours([NeighbourInfo])
}

public struct ControlResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    public var error: String?
    public var result: ControlResult?
    public static func success(_ r: ControlResult = .done) -> ControlResponse { ControlResponse(ok: true, error: nil, result: r) }
    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message, result: nil) }
    public init(ok: Bool, error: String?, result: ControlResult?) { self.ok = ok; self.error = error; self.result = result }
}

/// What the daemon implements; the control server calls it once per request, on its own thread.
public protocol ControlHandler: AnyObject, Sendable {
    func handle(_ request: ControlRequest) -> ControlResponse
}
