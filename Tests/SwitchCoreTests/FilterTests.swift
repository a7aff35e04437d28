// Filter: the ebtables parser (with columns), rule-set semantics (chains, loops, references,
// save/restore), the compiled evaluator against ebtables' kernel semantics, and the engine's filter
// and anti-spoofing stages through MemoryPorts.

import SwitchCore
import SwitchTesting
import XCTest

private func cmd(_ line: String) throws -> FilterCommand { try FilterParser.parseCommand(line: line) }

private func ruleSet(_ lines: [String]) throws -> FilterRuleSet {
    var s = FilterRuleSet()
    for l in lines { try s.apply(try cmd(l)) }
    return s
}

private func parseError(_ line: String) -> FilterError? {
    do { _ = try FilterParser.parseCommand(line: line); return nil } catch { return error }
}

private func ipv4Frame(src: MACAddress = Frame.host(1), dst: MACAddress = Frame.host(2), from: [UInt8], to: [UInt8],
                       proto: UInt8 = 17, sport: UInt16 = 1000, dport: UInt16 = 2000, tos: UInt8 = 0, fragment: UInt16 = 0) -> [UInt8] {
    var ip: [UInt8] = [0x45, tos] + Frame.be16(28) + [0, 0] + Frame.be16(fragment) + [64, proto, 0, 0] + from + to
    ip += Frame.be16(sport) + Frame.be16(dport) + [0, 8, 0, 0]
    return Frame.ethernet(dst: dst, src: src, type: 0x0800, payload: ip + [UInt8](repeating: 0, count: 18))
}

private func ipv6Frame(src: MACAddress = Frame.host(1), dst: MACAddress = Frame.host(2), from: [UInt8], next: UInt8 = 17,
                       l4: [UInt8] = Frame.be16(1000) + Frame.be16(2000) + [0, 8, 0, 0]) -> [UInt8] {
    let to: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [9]
    let hdr: [UInt8] = [0x60, 0, 0, 0] + Frame.be16(UInt16(l4.count)) + [next, 64] + from + to
    return Frame.ethernet(dst: dst, src: src, type: 0x86DD, payload: hdr + l4)
}

private let ports: [String?] = ["vif1.0", "vif2.0", "eth0", "tap0"]

/// Runs one frame through a compiled rule set; returns the verdict and the program (counters).
private func judge(_ set: FilterRuleSet, _ frame: [UInt8], chain: Int = FilterProgram.forward,
                   inPort: Int = 0, outPort: Int = 1) -> (Bool, FilterProgram) {
    let p = FilterProgram(set, portNames: ports, bridgeName: "xenbr0")
    let v = frame.withUnsafeBytes { b in
        p.allows(chain: chain, frame: b.baseAddress!, length: frame.count,
                 info: FrameInfo(parsing: b.baseAddress!, length: frame.count), inPort: inPort, outPort: outPort)
    }
    return (v, p)
}

final class FilterParserTests: XCTestCase {
    func testBothInversionStylesAndKeywords() throws {
        let a = try cmd("-A FORWARD -i vif1.0 -s ! 00:16:3e:00:00:01 -j DROP")
        let b = try cmd("-A FORWARD -i vif1.0 ! -s 0:16:3e:0:0:1 -j DROP")
        XCTAssertEqual(a, b)
        guard case .append(_, let r, _) = a else { return XCTFail() }
        XCTAssertEqual(r.source?.inverted, true)
        XCTAssertEqual(r.text, "-s ! 00:16:3e:00:00:01 -i vif1.0 -j DROP")
        guard case .append(_, let k, _) = try cmd("-A INPUT -d Multicast -s ! Broadcast -j ACCEPT") else { return XCTFail() }
        XCTAssertEqual(k.destination?.value, .multicast)
        XCTAssertEqual(k.source?.value, .broadcast)
        guard case .append(_, let m, _) = try cmd("-A FORWARD -s 02:00:00:00:00:00/ff:00:00:00:00:00 -d BGA -j DROP") else { return XCTFail() }
        XCTAssertEqual(m.source?.value.mask, MACAddress("ff:00:00:00:00:00"))
        XCTAssertEqual(m.destination?.value, .bga)
    }

    func testProtocolNumbersAreHexAndNames() throws {
        guard case .append(_, let r, _) = try cmd("-A FORWARD -p 0800 -j DROP") else { return XCTFail() }
        XCTAssertEqual(r.proto?.value, .type(0x0800))
        guard case .append(_, let n, _) = try cmd("-A FORWARD -p ! ipv6 -j DROP") else { return XCTFail() }
        XCTAssertEqual(n.proto, Negatable(.type(0x86DD), inverted: true))
        guard case .append(_, let l, _) = try cmd("-A FORWARD -p LENGTH -j DROP") else { return XCTFail() }
        XCTAssertEqual(l.proto?.value, .length)
        XCTAssertEqual(parseError("-A FORWARD -p 0100 -j DROP")?.column, 15)
    }

    func testErrorsCarryTheColumn() {
        XCTAssertEqual(parseError("-A FORWARD -i vif1.0 --bogus x -j DROP")?.column, 22)
        XCTAssertEqual(parseError("-A FORWARD -s 00:16:3e:zz:00:01 -j DROP")?.column, 15)
        let e = parseError("-A FORWARD --ip-src 10.0.0.1 -j DROP")
        XCTAssertEqual(e?.column, 12)
        XCTAssertTrue(e?.message.contains("IPv4") ?? false)
        XCTAssertEqual(parseError("-A FORWARD -p IPv4 --ip-proto tcp --ip-dport 99999 -j DROP")?.column, 46)
        XCTAssertEqual(parseError("-A FORWARD -p IPv4 --ip-dport 80 -j DROP")?.column, 20) // port needs --ip-proto
        XCTAssertEqual(parseError("-A OUTPUT -i eth0 -j DROP")?.column, 11)
        XCTAssertEqual(parseError("-A INPUT -o eth0 -j DROP")?.column, 10)
        XCTAssertNotNil(parseError("-A FORWARD -j RETURN"))
        XCTAssertEqual(parseError("-t nat -A PREROUTING -j DROP")?.column, 4)
        XCTAssertEqual(parseError("-A FORWARD --vlan-id 5 -j DROP")?.column, 12)
        XCTAssertEqual(parseError("-A FORWARD -p ARP --arp-ip-src 1.2.3 -j DROP")?.column, 32)
        XCTAssertEqual(parseError("-A FORWARD -j snat")?.column, 15)
        XCTAssertEqual(parseError("-A FORWARD -i a -i b -j DROP")?.column, 17)
        XCTAssertTrue(parseError("-A FORWARD -i a -i b -j DROP")!.description.hasPrefix("column 17: "))
    }

    func testCommands() throws {
        XCTAssertEqual(try cmd("-L FORWARD --Ln --Lc"), .list(chain: "FORWARD", options: FilterListOptions(numbers: true, counters: true)))
        XCTAssertEqual(try cmd("-D FORWARD 2:3"), .deleteNumbers(chain: "FORWARD", from: 2, to: 3))
        XCTAssertEqual(try cmd("-P FORWARD DROP"), .policy(chain: "FORWARD", policy: .drop))
        XCTAssertEqual(try cmd("-N guests -P DROP"), .newChain(name: "guests", policy: .drop))
        XCTAssertEqual(try cmd("-E guests vms"), .renameChain(from: "guests", to: "vms"))
        XCTAssertEqual(try cmd("-C FORWARD 1 +5 -3"), .changeCounters(chain: "FORWARD", from: 1, to: 1, packets: .add(5), bytes: .subtract(3)))
        XCTAssertEqual(try cmd("-t filter -F"), .flush(chain: nil))
        XCTAssertEqual(try cmd("-X"), .deleteChain(name: nil))
        guard case .insert(_, 2, _, let c) = try cmd("-I FORWARD 2 -j ACCEPT -c 10 640") else { return XCTFail() }
        XCTAssertEqual(c, FilterCounter(packets: 10, bytes: 640))
    }
}

final class FilterRuleSetTests: XCTestCase {
    func testLoopsAndReferencesAreRefused() throws {
        var s = try ruleSet(["-N a", "-N b", "-A a -j b"])
        let before = s
        XCTAssertThrowsError(try s.apply(try cmd("-A b -j a")))
        XCTAssertThrowsError(try s.apply(try cmd("-A a -j a")))
        XCTAssertThrowsError(try s.apply(try cmd("-X b")))           // referenced by a
        XCTAssertThrowsError(try s.apply(try cmd("-A FORWARD -j nochain")))
        XCTAssertThrowsError(try s.apply(try cmd("-P FORWARD RETURN")))
        XCTAssertThrowsError(try s.apply(try cmd("-X FORWARD")))
        XCTAssertEqual(s, before)
        try s.apply(try cmd("-E b c"))
        XCTAssertEqual(s.chain("a")?.rules.first?.target, .jump("c"))
        try s.apply(try cmd("-A FORWARD -j a"))
        XCTAssertThrowsError(try s.apply(try cmd("-X")))              // FORWARD refers to a user chain
        try s.apply(try cmd("-F FORWARD"))
        try s.apply(try cmd("-X"))
        XCTAssertEqual(s.chains.count, 3)
    }

    func testEditingKeepsOtherRulesCounters() throws {
        var s = try ruleSet(["-A FORWARD -p IPv4 -j CONTINUE -c 5 500", "-A FORWARD -p ARP -j ACCEPT"])
        try s.apply(try cmd("-I FORWARD 1 -p IPv6 -j DROP"))
        XCTAssertEqual(s.chain("FORWARD")?.counters.map(\.packets), [0, 5, 0])
        try s.apply(try cmd("-D FORWARD -p IPv4 -j CONTINUE"))
        XCTAssertEqual(s.chain("FORWARD")?.rules.count, 2)
        try s.apply(try cmd("-C FORWARD 1 7 70"))
        try s.apply(try cmd("-Z FORWARD"))
        XCTAssertEqual(s.chain("FORWARD")?.counters, [FilterCounter(), FilterCounter()])
        try s.apply(try cmd("-D FORWARD -1"))
        XCTAssertEqual(s.chain("FORWARD")?.rules.map(\.target), [.drop])
    }

    func testSaveRestoreRoundTripAndErrors() throws {
        let s = try ruleSet([
            "-N guests -P DROP", "-P FORWARD DROP",
            "-A FORWARD -i vif+ -j guests -c 3 300",
            "-A guests -p IPv4 --ip-src 10.0.0.0/24 --ip-proto tcp --ip-dport 22:80 -j ACCEPT",
            "-A guests -p ARP --arp-op Request --arp-ip-dst 10.0.0.1 --arp-mac-src 02:00:00:00:00:01 -j ACCEPT",
            "-A guests -p 802_1Q --vlan-id 10 --vlan-prio 3 --vlan-encap IPv4 -j ACCEPT",
            "-A guests -p IPv6 --ip6-src 2001:db8::/64 --ip6-proto udp --ip6-sport 547 -j DROP",
            "-A guests --among-src 02:00:00:00:00:01=10.0.0.1,02:00:00:00:00:02 -j RETURN",
            "-A guests -p ARP ! --arp-gratuitous -d Broadcast -j CONTINUE",
        ])
        let text = s.saveText(counters: true)
        XCTAssertTrue(text.contains("-A FORWARD -i vif+ -j guests -c 3 300\n"), text)
        XCTAssertEqual(try FilterRuleSet.restore(text: text), s)
        XCTAssertEqual(try FilterRuleSet.restore(text: s.saveText()).chain("FORWARD")?.counters, [FilterCounter()])
        let bad = "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n-A FORWARD -p IPv4 --ip-dst 10.0.0.300 -j DROP\n"
        XCTAssertThrowsError(try FilterRuleSet.restore(text: bad)) { e in
            XCTAssertEqual((e as? FilterError)?.line, 5)
            XCTAssertEqual((e as? FilterError)?.column, 29)
        }
        XCTAssertThrowsError(try FilterRuleSet.restore(text: "*nat\n"))
        XCTAssertThrowsError(try FilterRuleSet.restore(text: "*filter\n:a RETURN\n:b RETURN\n-A a -j b\n-A b -j a\n"))
        XCTAssertThrowsError(try FilterRuleSet.restore(text: "*filter\n:FORWARD RETURN\n"))
    }

    func testListing() throws {
        var s = try ruleSet(["-A FORWARD -p IPv4 -j DROP -c 2 100"])
        let l = try s.apply(try cmd("-L FORWARD --Ln --Lc"))!
        XCTAssertEqual(l.text, "Bridge table: filter\n\nBridge chain: FORWARD, entries: 1, policy: ACCEPT\n1. -p IPv4 -j DROP , pcnt = 2 -- bcnt = 100\n")
        XCTAssertEqual(try s.apply(try cmd("-L --Lx"))!.text, "-A FORWARD -p IPv4 -j DROP\n")
    }
}

final class FilterEvaluationTests: XCTestCase {
    let plain = Frame.ethernet(dst: Frame.host(2), src: Frame.host(1), type: 0x88b5, payload: Frame.payload(1))

    func testUserChainFallOffFollowsItsPolicy() throws {
        var s = try ruleSet(["-N c", "-A FORWARD -j c", "-A FORWARD -j DROP"])
        XCTAssertFalse(judge(s, plain).0)                 // c returns (policy RETURN), then DROP
        try s.apply(try cmd("-P c ACCEPT"))
        XCTAssertTrue(judge(s, plain).0)                  // falling off c accepts at once
        s = try ruleSet(["-N c", "-A c -j RETURN", "-A c -j DROP", "-A FORWARD -j c", "-P FORWARD DROP"])
        let (v, p) = judge(s, plain)
        XCTAssertFalse(v)                                 // RETURN, then FORWARD's policy
        XCTAssertEqual(p.counters.map(\.packets), [1, 1, 0]) // FORWARD's jump, then c's RETURN
    }

    func testContinueCountsAndBytesExcludeTheEthernetHeader() throws {
        let s = try ruleSet(["-A FORWARD -j CONTINUE", "-A FORWARD -s \(Frame.host(1)) -j CONTINUE", "-A FORWARD -j ACCEPT"])
        let (v, p) = judge(s, plain)
        XCTAssertTrue(v)
        XCTAssertEqual(p.counters, Array(repeating: FilterCounter(packets: 1, bytes: UInt64(plain.count - 14)), count: 3))
        let tagged = Frame.tagged(dst: Frame.host(2), src: Frame.host(1), vid: 5, payload: Frame.payload(1))
        XCTAssertEqual(judge(s, tagged).1.counters[0].bytes, UInt64(tagged.count - 18))
    }

    func testInterfacesWildcardsAndLogicalNames() throws {
        let s = try ruleSet(["-A FORWARD -i vif+ -o ! eth0 -j DROP"])
        XCTAssertFalse(judge(s, plain, inPort: 0, outPort: 1).0)
        XCTAssertTrue(judge(s, plain, inPort: 0, outPort: 2).0)
        XCTAssertTrue(judge(s, plain, inPort: 2, outPort: 1).0)
        let l = try ruleSet(["-A FORWARD --logical-in xenbr+ --logical-out ! other -j DROP"])
        XCTAssertFalse(judge(l, plain).0)
        let o = try ruleSet(["-N c", "-A c --logical-in other -o eth0 -j DROP", "-A OUTPUT -j c"])    // no in device: logical-in not looked at
        XCTAssertFalse(judge(o, plain, chain: FilterProgram.output, inPort: -1, outPort: 2).0)
        let inv = try ruleSet(["-N c", "-A c -i ! vif1.0 -j DROP", "-A OUTPUT -j c"]) // no in device: -i ! X holds
        XCTAssertFalse(judge(inv, plain, chain: FilterProgram.output, inPort: -1, outPort: 2).0)
    }

    func testMACsAndProtocols() throws {
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -d Unicast -j DROP"]), plain).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -d Multicast -j DROP"]), plain).0)
        let bcast = Frame.ethernet(dst: .broadcast, src: Frame.host(1), type: 0x88b5, payload: Frame.payload(1))
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -d Multicast -j DROP"]), bcast).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -s 02:00:00:00:00:00/ff:ff:00:00:00:00 -j DROP"]), plain).0)
        let llc = Frame.ieee8023(dst: Frame.host(2), src: Frame.host(1))
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p LENGTH -j DROP"]), llc).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p LENGTH -j DROP"]), plain).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p ! IPv4 -j DROP"]), plain).0)
    }

    func testVLANMatchesLookAtTheTag() throws {
        let tagged = Frame.tagged(dst: Frame.host(2), src: Frame.host(1), vid: 10, pcp: 5, type: 0x0806)
        let s = try ruleSet(["-A FORWARD -p 802_1Q --vlan-id 10 --vlan-prio 5 --vlan-encap ARP -j DROP"])
        XCTAssertFalse(judge(s, tagged).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p 802_1Q --vlan-id ! 10 -j DROP"]), tagged).0)
        XCTAssertTrue(judge(s, plain).0)                   // untagged: -p 802_1Q fails
        // A tagged IPv4 frame is not "-p IPv4" (the kernel sees 802_1Q), as with the Linux bridge.
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv4 -j DROP"]), Frame.tagged(dst: Frame.host(2), src: Frame.host(1), vid: 10)).0)
    }

    func testARPFieldsOnlyWhenTheFrameCarriesThem() throws {
        let arp = Frame.arp(request: true, senderMAC: Frame.host(1), senderIP: [10, 0, 0, 1], targetMAC: .zero, targetIP: [10, 0, 0, 1])
        let s = try ruleSet(["-A FORWARD -p ARP --arp-op Request --arp-ip-src 10.0.0.0/8 --arp-mac-src \(Frame.host(1)) --arp-gratuitous -j DROP"])
        XCTAssertFalse(judge(s, arp).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p ARP ! --arp-gratuitous -j DROP"]), arp).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p ARP --arp-ip-dst ! 10.0.0.1 -j DROP"]), arp).0)
        // A truncated ARP header does not match, not even an inverted field.
        let short = Array(arp[0..<20])
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p ARP --arp-op ! Reply -j DROP"]), short).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p ARP --arp-op ! Reply -j DROP"]), arp).0)
    }

    func testIPv4AndIPv6Fields() throws {
        let udp = ipv4Frame(from: [10, 0, 0, 5], to: [10, 1, 0, 1], sport: 68, dport: 67, tos: 0x10)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p IPv4 --ip-src 10.0.0.0/24 --ip-dst ! 10.2.0.0/16 --ip-proto udp --ip-sport 60:70 --ip-dport 67 --ip-tos 0x10 -j DROP"]), udp).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv4 --ip-proto tcp -j DROP"]), udp).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv4 --ip-proto udp --ip-dport ! 67 -j DROP"]), udp).0)
        // Later fragments carry no ports: a port match fails, even inverted.
        let frag = ipv4Frame(from: [10, 0, 0, 5], to: [10, 1, 0, 1], fragment: 0x0010)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv4 --ip-proto udp --ip-dport ! 1 -j DROP"]), frag).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p IPv4 --ip-proto udp -j DROP"]), frag).0)
        let src6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [5]
        let v6 = ipv6Frame(from: src6)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p IPv6 --ip6-src 2001:db8::/32 --ip6-dst 2001:db8::9 --ip6-proto udp --ip6-dport 2000 -j DROP"]), v6).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv6 --ip6-src ! 2001:db8::5 -j DROP"]), v6).0)
        // Through a hop-by-hop header to the UDP header.
        let hbh = ipv6Frame(from: src6, next: 0, l4: [17, 0, 1, 4, 0, 0, 0, 0] + Frame.be16(1000) + Frame.be16(2000) + [0, 8, 0, 0])
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD -p IPv6 --ip6-proto udp --ip6-sport 1000 -j DROP"]), hbh).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD -p IPv6 --ip6-tclass 1 -j DROP"]), v6).0)
    }

    func testAmongWithAndWithoutAddresses() throws {
        let udp = ipv4Frame(from: [10, 0, 0, 5], to: [10, 1, 0, 1])
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD --among-src \(Frame.host(1))=10.0.0.5 -j DROP"]), udp).0)
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD --among-src \(Frame.host(1))=10.0.0.6 -j DROP"]), udp).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD --among-dst \(Frame.host(7)),\(Frame.host(2)) -j DROP"]), udp).0)
        XCTAssertFalse(judge(try ruleSet(["-A FORWARD --among-src ! \(Frame.host(3)) -j DROP"]), udp).0)
        // MAC=IP entries never match frames without an IPv4 source (the kernel uses 0).
        XCTAssertTrue(judge(try ruleSet(["-A FORWARD --among-src \(Frame.host(1))=10.0.0.5 -j DROP"]), plain).0)
    }

    func testXenShapeIsIndexedAndMergedWithExactCounters() throws {
        var lines: [String] = []
        var names: [String?] = []
        for g in 0..<500 {
            names.append("vif\(g).0")
            lines.append("-A FORWARD -i vif\(g).0 -s ! \(Frame.host(g + 1)) -j DROP")
            lines.append("-A FORWARD -p IPv4 -i vif\(g).0 --ip-src ! 10.0.\(g / 250).\(g % 250 + 1) -j DROP")
        }
        for k in 0..<100 { lines.append("-A FORWARD -p IPv4 --ip-dst 10.9.0.\(k + 1) -j DROP") }
        let set = try FilterRuleSet.restore(text: "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n" + lines.map { "-A" + $0.dropFirst(2) }.joined(separator: "\n"))
        let p = FilterProgram(set, portNames: names, bridgeName: "xenbr0")
        for port in [0, 250, 499] { XCTAssertEqual(p.listLength(chain: FilterProgram.forward, inPort: port), 3) }
        // vif7.0's guest: allowed, then spoofed MAC, then a blocked destination (rule 1000 + 43).
        let ok = ipv4Frame(src: Frame.host(8), from: [10, 0, 0, 8], to: [10, 9, 1, 1])
        let spoof = ipv4Frame(src: Frame.host(9), from: [10, 0, 0, 8], to: [10, 9, 1, 1])
        let blocked = ipv4Frame(src: Frame.host(8), from: [10, 0, 0, 8], to: [10, 9, 0, 43])
        func run(_ f: [UInt8]) -> Bool {
            f.withUnsafeBytes {
                p.allows(chain: 1, frame: $0.baseAddress!, length: f.count,
                         info: FrameInfo(parsing: $0.baseAddress!, length: f.count), inPort: 7, outPort: 8)
            }
        }
        XCTAssertTrue(run(ok)); XCTAssertFalse(run(spoof)); XCTAssertFalse(run(blocked))
        let c = p.counters
        XCTAssertEqual(c[14].packets, 1)                 // -i vif7.0 -s ! MAC
        XCTAssertEqual(c[1042].packets, 1)               // --ip-dst 10.9.0.43
        XCTAssertEqual(c.reduce(0) { $0 + $1.packets }, 2)
    }
}

final class FilterEngineTests: XCTestCase {
    func testForwardRulesDropAndCountInTheEngine() throws {
        let lab = try Lab(accessPorts: 3)
        lab.engine.setFilter(try ruleSet(["-A FORWARD -i p0 -o p2 -j DROP"]))
        let f = Frame.ethernet(dst: .broadcast, src: Frame.host(1))
        lab.send(f, on: 0)
        XCTAssertEqual(lab.out(1).count, 1)
        XCTAssertEqual(lab.out(2).count, 0)
        XCTAssertEqual(lab.engine.currentFilterRules.chain("FORWARD")?.counters.first?.packets, 1)
        // Counters survive a port being added (recompiled for the new names).
        _ = try lab.engine.addPort(name: "p3", mode: .access(1), device: MemoryPort())
        XCTAssertEqual(lab.engine.currentFilterRules.chain("FORWARD")?.counters.first?.packets, 1)
        lab.engine.setFilter(try ruleSet(["-P FORWARD DROP"]))
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll().map(\.count), [0, 0, 0])
        XCTAssertEqual(lab.drops[.filtered], 1)
    }

    func testTapPortsAreTheBridgesOwnPort() throws {
        let lab = try Lab(accessPorts: 3)
        lab.engine.setLocal(2, true)
        lab.engine.setFilter(try ruleSet(["-A INPUT -i p0 -j DROP", "-A OUTPUT -o p1 -j DROP", "-P FORWARD DROP"]))
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(1)), on: 0)
        XCTAssertEqual(lab.outAll().map(\.count), [0, 0, 0])  // FORWARD to p1 dropped, INPUT dropped
        lab.send(Frame.ethernet(dst: .broadcast, src: Frame.host(3)), on: 2)
        XCTAssertEqual(lab.outAll().map(\.count), [1, 0, 0])  // OUTPUT: p0 passes, p1 dropped
    }

    func testAntiSpoofingDropsBeforeLearning() throws {
        let lab = try Lab(accessPorts: 2)
        lab.engine.setPortAddresses(0, PortAddresses(macs: [Frame.host(1)], ipv4: [IPv4Prefix("10.0.0.1")!]))
        let good = ipv4Frame(src: Frame.host(1), dst: .broadcast, from: [10, 0, 0, 1], to: [10, 0, 0, 2])
        let badMAC = ipv4Frame(src: Frame.host(5), dst: .broadcast, from: [10, 0, 0, 1], to: [10, 0, 0, 2])
        let badIP = ipv4Frame(src: Frame.host(1), dst: .broadcast, from: [10, 0, 0, 9], to: [10, 0, 0, 2])
        let dhcpDiscover = ipv4Frame(src: Frame.host(1), dst: .broadcast, from: [0, 0, 0, 0], to: [255, 255, 255, 255], sport: 68, dport: 67)
        let dhcpOffer = ipv4Frame(src: Frame.host(1), dst: .broadcast, from: [10, 0, 0, 1], to: [255, 255, 255, 255], sport: 67, dport: 68)
        let arpBad = Frame.arp(request: true, senderMAC: Frame.host(1), senderIP: [10, 0, 0, 7], targetMAC: .zero, targetIP: [10, 0, 0, 2])
        let arpGood = Frame.arp(request: true, senderMAC: Frame.host(1), senderIP: [10, 0, 0, 1], targetMAC: .zero, targetIP: [10, 0, 0, 2])
        let ra = ipv6Frame(src: Frame.host(1), dst: .broadcast, from: [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1], next: 58, l4: [134, 0, 0, 0, 0, 0, 0, 0])
        lab.send([good, badMAC, badIP, dhcpDiscover, dhcpOffer, arpBad, arpGood, ra], on: 0)
        XCTAssertEqual(lab.out(1).count, 3)  // good, DHCP discover, good ARP
        assertDrops(lab, [.spoofedSourceMAC: 1, .spoofedSourceIP: 1, .rogueDHCPServer: 1, .spoofedARP: 1, .rogueRouterAdvertisement: 1])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: Frame.host(5)), -1)  // never learned
        // Off: everything passes; the other port was never checked.
        lab.engine.setPortAddresses(0, PortAddresses(macs: [Frame.host(1)], antiSpoofing: false))
        lab.send(badMAC, on: 0)
        XCTAssertEqual(lab.out(1).count, 1)
        XCTAssertNil(lab.engine.antiSpoofTable)
    }
}
