// BridgeSpec: the port spec of Xen's `bridge` key and vif-openvswitch, parsed into a bridge name
// and the port's VLAN mode (VLANMode.swift).

/// The port spec that Xen's `bridge` key and vif-openvswitch use: `BRIDGE[.VLAN][:TRUNK[:TRUNK...]]`.
/// `xenbr0` is a plain port, `xenbr0.102` an access port in VLAN 102, `xenbr1:101:202` a trunk of
/// VLANs 101 and 202. With both, `xenbr0.5:10:20`, VLAN 5 is the trunk's native (untagged) VLAN.
public struct BridgeSpec: Equatable, Sendable {
    public var bridge: String
    public var vlan: UInt16?
    public var trunks: [UInt16]

    public init(bridge: String, vlan: UInt16? = nil, trunks: [UInt16] = []) {
        self.bridge = bridge
        self.vlan = vlan
        self.trunks = trunks
    }

    /// Parses the spec; mirrors `^([^.:]+)(\.([0-9]+))?(:([0-9]+(:[0-9]+)*))?$` with VLAN IDs
    /// additionally checked to be in 1...4094.
    public static func parse(_ text: String) throws(VLANConfigError) -> BridgeSpec {
        let colon = text.split(separator: ":", omittingEmptySubsequences: false)
        let head = colon[0]
        let dot = head.split(separator: ".", omittingEmptySubsequences: false)
        guard dot.count <= 2, let name = dot.first, !name.isEmpty else { throw .badBridgeSpec(text) }
        var spec = BridgeSpec(bridge: String(name))
        if dot.count == 2 {
            guard dot[1].allSatisfy(\.isASCII), dot[1].allSatisfy(\.isNumber), let v = VLANID.parse(dot[1]) else { throw .badBridgeSpec(text) }
            spec.vlan = v
        }
        for t in colon.dropFirst() {
            guard !t.isEmpty, t.allSatisfy(\.isASCII), t.allSatisfy(\.isNumber), let v = VLANID.parse(t) else { throw .badBridgeSpec(text) }
            spec.trunks.append(v)
        }
        return spec
    }

    /// The port's VLAN mode: trunk when trunks are listed (native = the `.VLAN` part), access in
    /// `.VLAN` otherwise, the default VLAN when neither is given.
    public var mode: VLANMode {
        if !trunks.isEmpty { return .trunk(allowed: Array(Set(trunks)).sorted(), native: vlan) }
        if let v = vlan { return .access(v) }
        return .defaultAccess
    }
}
