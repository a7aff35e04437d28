// Text output of userswitchctl, as pure functions so that the layout is tested and documented
// from the same code.
//
// The listings follow what people already read every day: `show` looks like `brctl show` (one
// line per port, the bridge's name only on its first line), `fdb` like `brctl showmacs` with a
// VLAN column, since this switch learns per (MAC, VLAN). Columns are separated by two spaces and
// aligned; numbers are right-aligned. Lines carry no trailing blanks, so the output diffs cleanly.
// Rows are sorted (bridges by name, ports by number, FDB entries by port, VLAN, MAC) so that the
// same state always prints the same text, whatever order the daemon keeps things in.

import Foundation

public enum Format {
    /// `brctl show` style: bridge name, ageing, port, type, VLAN mode, state.
    public static func show(_ bridges: [BridgeInfo]) -> String {
        var rows: [[String]] = []
        for bridge in bridges.sorted(by: { $0.name < $1.name }) {
            let ports = bridge.ports.sorted { ($0.number, $0.name) < ($1.number, $1.name) }
            if ports.isEmpty {
                rows.append([bridge.name, String(bridge.ageingSeconds)])
            }
            for (i, port) in ports.enumerated() {
                rows.append([i == 0 ? bridge.name : "", i == 0 ? String(bridge.ageingSeconds) : "",
                             port.name, port.type.rawValue, port.vlan.summary, port.state,
                             port.antiSpoofing == true ? "on" : "off"])
            }
        }
        // The anti-spoofing column (docs/filtering.md) appears once any port enforces its addresses.
        let guarded = bridges.contains { $0.ports.contains { $0.antiSpoofing == true } }
        if !guarded { rows = rows.map { $0.count == 7 ? Array($0.prefix(6)) : $0 } }
        return table(header: ["bridge name", "ageing", "port", "type", "vlan", "state"] + (guarded ? ["anti-spoofing"] : []),
                     rows: rows, rightAligned: [])
    }

    /// `brctl showmacs` style: port number, port name, VLAN, MAC, static or learned, age.
    public static func fdb(_ entries: [FDBEntryInfo]) -> String {
        let sorted = entries.sorted {
            ($0.portNumber, $0.vlan, $0.mac.rawValue) < ($1.portNumber, $1.vlan, $1.mac.rawValue)
        }
        let rows = sorted.map { e in
            [String(e.portNumber), e.port, String(e.vlan), e.mac.description, e.isStatic ? "yes" : "no",
             seconds(e.ageSeconds)]
        }
        return table(header: ["port no", "port", "vlan", "mac addr", "is static?", "ageing timer"], rows: rows,
                     rightAligned: [0, 2, 5])
    }

    /// Per bridge: a title line, a table of port counters, then the drop reasons. Reasons with a
    /// count come first (largest first); reasons at zero are listed only with `allDrops`,
    /// otherwise summed up in one line.
    public static func stats(_ bridges: [BridgeStats], allDrops: Bool = false) -> String {
        var blocks: [String] = []
        for bridge in bridges.sorted(by: { $0.name < $1.name }) {
            var out = bridge.kind == "router"
                ? "router \(bridge.name): \(plural(bridge.ports.count, "port")), \(plural(bridge.fdbEntries, "neighbour"))\n"
                : "bridge \(bridge.name): \(plural(bridge.ports.count, "port")), \(plural(bridge.fdbEntries, "FDB entry", "FDB entries"))\n"
            let rows = bridge.ports.map { p in
                [p.name, p.state, String(p.rxFrames), String(p.rxBytes), String(p.txFrames), String(p.txBytes),
                 String(p.downEvents)]
            }
            out += table(header: ["port", "state", "rx frames", "rx bytes", "tx frames", "tx bytes", "down events"],
                         rows: rows, rightAligned: [2, 3, 4, 5, 6])
            // Each port's problem counters: the non-zero ones (every one with `allDrops`).
            var eventRows: [[String]] = []
            for p in bridge.ports {
                for name in PortStats.eventNames {
                    let v = p.events[name] ?? 0
                    if v != 0 || (allDrops && !p.events.isEmpty) { eventRows.append(["  " + p.name, name, String(v)]) }
                }
            }
            if !eventRows.isEmpty {
                out += "port events:\n"
                out += table(header: nil, rows: eventRows, rightAligned: [2])
            }
            if let events = bridge.routerEvents {
                let sent = events.filter { $0.value != 0 || allDrops }.sorted { $0.key < $1.key }
                out += sent.isEmpty ? "sent: none\n" : "sent:\n" + table(header: nil, rows: sent.map { ["  " + $0.key, String($0.value)] },
                                                                         rightAligned: [1])
            }
            let nonZero = bridge.drops.filter { $0.value != 0 }.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
            let zero = bridge.drops.filter { $0.value == 0 }.map(\.key).sorted()
            if nonZero.isEmpty && !allDrops {
                out += "drops: none\n"
            } else {
                out += "drops:\n"
                var dropRows = nonZero.map { ["  " + $0.key, String($0.value)] }
                if allDrops {
                    dropRows += zero.map { ["  " + $0, "0"] }
                }
                out += table(header: nil, rows: dropRows, rightAligned: [1])
                if !allDrops && !zero.isEmpty {
                    out += "  (\(plural(zero.count, "other reason")) at 0)\n"
                }
            }
            blocks.append(out)
        }
        return blocks.joined(separator: "\n")
    }

    /// JSON for `--json`: pretty-printed with sorted keys, so that scripts and diffs see stable text.
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }

    /// Seconds with two decimals, as `brctl showmacs` prints its ageing timer (`12.34`).
    public static func seconds(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let hundredths = Int64((max(0, value) * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + String(fraction)
    }

    /// Aligned columns, two spaces apart, no trailing blanks; each line ends with a newline.
    /// Routers and their ports, after the bridges in `show`.
    public static func routers(_ routers: [RouterInfo]) -> String {
        var out = ""
        for r in routers {
            out += "router \(r.name) (mode \(r.mode)): address \(r.address ?? "none"), gateway \(r.gateway ?? "none"), mac \(r.mac)\n"
            if r.address6 != nil || r.gateway6 != nil {
                out += "  ipv6: address \(r.address6 ?? "none"), gateway \(r.gateway6 ?? "none"), link-local \(r.linkLocal ?? "-")\n"
            }
            if let dns = r.dns, !dns.isEmpty { out += "  dhcp: dns \(dns.joined(separator: " "))\n" }
            let rows = r.ports.map { p in
                [String(p.number), p.name, p.role + (p.routerAdvertisements == true ? " ra" : "") + (p.dhcp == true ? " dhcp" : ""), p.type.rawValue, p.state, String(p.mtu),
                 p.addresses.isEmpty ? "-" : p.addresses.joined(separator: " "), p.mac?.description ?? "-"]
            }
            out += table(header: ["port no", "port", "role", "type", "state", "mtu", "addresses", "guest mac"], rows: rows,
                         rightAligned: [0, 5])
        }
        return out
    }

    /// Routes as `ip route` prints them.
    public static func routes(_ routes: [RouteInfo]) -> String {
        routes.map { r in
            var line = r.destination
            if let v = r.via { line += " via \(v)" }
            line += " dev \(r.dev) proto \(r.kind)"
            if r.metric != 0 { line += " metric \(r.metric)" }
            return line + "\n"
        }.joined()
    }

    /// Neighbours as `ip neigh` prints them.
    public static func neighbours(_ list: [NeighbourInfo]) -> String {
        list.map { n in
            var line = "\(n.address) dev \(n.port)"
            if let m = n.mac { line += " lladdr \(m)" }
            line += " \(n.state)"
            if n.queued > 0 { line += " (\(n.queued) queued)" }
            return line + "\n"
        }.joined()
    }

    public static func table(header: [String]?, rows: [[String]], rightAligned: Set<Int>) -> String {
        let all = (header.map { [$0] } ?? []) + rows
        let columns = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in all {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var out = ""
        for row in all {
            var line = ""
            for (i, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                if i > 0 { line += "  " }
                line += rightAligned.contains(i) ? pad + cell : cell + pad
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    private static func plural(_ n: Int, _ one: String, _ many: String? = nil) -> String {
        "\(n) " + (n == 1 ? one : (many ?? one + "s"))
    }
}
