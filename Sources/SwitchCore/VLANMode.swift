// VLAN configuration of a port (IEEE 802.1Q): VLAN IDs and the access / trunk modes.
//
// Every port is either an access port (one VLAN, untagged on the wire) or a trunk (a set of
// allowed VLANs, carried tagged, plus an optional native VLAN carried untagged). A port without
// any VLAN setting is an access port in VLAN 1, the default VLAN, as on the Linux bridge.

/// A 12-bit VLAN ID in 1...4094 (0 is "priority tag only", 4095 reserved).
public enum VLANID {
    public static let valid: ClosedRange<UInt16> = 1...4094
    public static let `default`: UInt16 = 1

    /// Decimal digits only: `UInt16.init` alone would also take `+5`.
    public static func parse(_ s: some StringProtocol) -> UInt16? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let v = UInt16(s), valid.contains(v) else { return nil }
        return v
    }
}

public enum VLANMode: Equatable, Hashable, Sendable {
    /// Untagged on the wire, member of exactly one VLAN.
    case access(UInt16)
    /// Tagged frames of `allowed` VLANs; untagged frames belong to `native` (dropped when nil).
    case trunk(allowed: [UInt16], native: UInt16?)

    public static let defaultAccess = VLANMode.access(VLANID.default)

    /// The VLANs this port is a member of, sorted.
    public var members: [UInt16] {
        switch self {
        case .access(let v): return [v]
        case .trunk(let allowed, let native):
            var s = Set(allowed)
            if let n = native { s.insert(n) }
            return s.sorted()
        }
    }

    /// Short text for `show`: `access 10`, `trunk 10,20 native 5`.
    public var summary: String {
        switch self {
        case .access(let v): return "access \(v)"
        case .trunk(let allowed, let native):
            var s = "trunk " + VLANMode.formatList(allowed)
            if let n = native { s += " native \(n)" }
            return s
        }
    }

    /// `10,20-22,30` style list, ranges collapsed.
    public static func formatList(_ vlans: [UInt16]) -> String {
        let v = Array(Set(vlans)).sorted()
        var out: [String] = []
        var i = 0
        while i < v.count {
            var j = i
            while j + 1 < v.count && v[j + 1] == v[j] + 1 { j += 1 }
            out.append(j > i + 1 ? "\(v[i])-\(v[j])" : (j == i + 1 ? "\(v[i]),\(v[j])" : "\(v[i])"))
            i = j + 1
        }
        return out.joined(separator: ",")
    }

    /// Parses `10,20,30-35` into VLAN IDs; throws on anything out of range or malformed.
    public static func parseList(_ text: String) throws(VLANConfigError) -> [UInt16] {
        var out = Set<UInt16>()
        for term in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = term.split(separator: "-", omittingEmptySubsequences: false)
            if bounds.count == 1, let v = VLANID.parse(bounds[0]) {
                out.insert(v)
            } else if bounds.count == 2, let a = VLANID.parse(bounds[0]), let b = VLANID.parse(bounds[1]), a <= b {
                for v in a...b { out.insert(v) }
            } else {
                throw .badVLANList(text, term: String(term))
            }
        }
        return out.sorted()
    }

    /// Builds a mode from the CLI keys `tag=`, `trunks=`, `native=` (as strings, nil when absent).
    public static func from(tag: String?, trunks: String?, native: String?) throws(VLANConfigError) -> VLANMode {
        if let tag {
            guard trunks == nil, native == nil else { throw .conflicting("tag= cannot be combined with trunks= or native=") }
            guard let v = VLANID.parse(tag) else { throw .badVLAN(tag) }
            return .access(v)
        }
        if let trunks {
            let allowed = try parseList(trunks)
            var n: UInt16? = nil
            if let native {
                guard let v = VLANID.parse(native) else { throw .badVLAN(native) }
                n = v
            }
            return .trunk(allowed: allowed, native: n)
        }
        if native != nil { throw .conflicting("native= needs trunks=") }
        return .defaultAccess
    }
}

/// JSON form, as `--json` listings and the control protocol show it:
/// `{"mode":"access","vlan":10}` or `{"mode":"trunk","trunks":[10,20],"native":5}`.
extension VLANMode: Codable {
    private enum Keys: String, CodingKey { case mode, vlan, trunks, native }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        switch try c.decode(String.self, forKey: .mode) {
        case "access": self = .access(try c.decode(UInt16.self, forKey: .vlan))
        case "trunk":
            self = .trunk(allowed: try c.decode([UInt16].self, forKey: .trunks),
                          native: try c.decodeIfPresent(UInt16.self, forKey: .native))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .mode, in: c,
                debugDescription: "unknown VLAN mode '\(other)' (expected access or trunk)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .access(let v):
            try c.encode("access", forKey: .mode)
            try c.encode(v, forKey: .vlan)
        case .trunk(let allowed, let native):
            try c.encode("trunk", forKey: .mode)
            try c.encode(allowed, forKey: .trunks)
            try c.encodeIfPresent(native, forKey: .native)
        }
    }
}

public enum VLANConfigError: Error, Equatable, CustomStringConvertible {
    case badVLAN(String)
    case badVLANList(String, term: String)
    case conflicting(String)
    case badBridgeSpec(String)

    public var description: String {
        switch self {
        case .badVLAN(let s): return "invalid VLAN ID '\(s)': expected a number from 1 to 4094"
        case .badVLANList(let s, let t): return "invalid VLAN list '\(s)': bad term '\(t)' (expected N or A-B, each 1-4094)"
        case .conflicting(let s): return s
        case .badBridgeSpec(let s): return "no valid bridge in '\(s)': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]"
        }
    }
}
