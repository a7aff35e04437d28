// VLANConfig: the CLI keys tag= / trunks= / native=, VLAN lists, and the Xen / Open vSwitch port
// spec BRIDGE[.VLAN][:TRUNK[:TRUNK...]].

import Foundation
import SwitchCore
import XCTest

final class VLANConfigTests: XCTestCase {
    // MARK: BridgeSpec

    func testPlainBridge() throws {
        let s = try BridgeSpec.parse("xenbr0")
        XCTAssertEqual(s, BridgeSpec(bridge: "xenbr0"))
        XCTAssertEqual(s.mode, .access(1))
    }

    func testAccessVLAN() throws {
        let s = try BridgeSpec.parse("xenbr0.102")
        XCTAssertEqual(s, BridgeSpec(bridge: "xenbr0", vlan: 102))
        XCTAssertEqual(s.mode, .access(102))
    }

    func testTrunk() throws {
        let s = try BridgeSpec.parse("xenbr1:101:202")
        XCTAssertEqual(s, BridgeSpec(bridge: "xenbr1", vlan: nil, trunks: [101, 202]))
        XCTAssertEqual(s.mode, .trunk(allowed: [101, 202], native: nil))
    }

    func testTrunkWithNativeVLAN() throws {
        let s = try BridgeSpec.parse("xenbr0.5:10:20")
        XCTAssertEqual(s, BridgeSpec(bridge: "xenbr0", vlan: 5, trunks: [10, 20]))
        XCTAssertEqual(s.mode, .trunk(allowed: [10, 20], native: 5))
        XCTAssertEqual(s.mode.members, [5, 10, 20])
    }

    func testTrunkListIsSortedAndDeduplicatedInTheMode() throws {
        XCTAssertEqual(try BridgeSpec.parse("br:30:10:30").mode, .trunk(allowed: [10, 30], native: nil))
        XCTAssertEqual(try BridgeSpec.parse("br.1:4094").mode, .trunk(allowed: [4094], native: 1))
    }

    func testMalformedSpecsAreRejected() {
        for s in ["a.b", "br:", "br.0", "br.4095", ".5", "br:x", "", ":10", "br.", "br..5", "br.5.6",
                  "br:10:", "br::10", "br:0", "br:4095", "br.+5", "br:-3", "br.١٢", "br. 5", "br:10,20"] {
            XCTAssertThrowsError(try BridgeSpec.parse(s), "'\(s)'") { e in
                XCTAssertEqual(e as? VLANConfigError, .badBridgeSpec(s))
            }
        }
        XCTAssertEqual(VLANConfigError.badBridgeSpec("a.b").description,
                       "no valid bridge in 'a.b': expected BRIDGE[.VLAN][:TRUNK[:TRUNK...]]")
    }

    // MARK: VLAN lists

    func testParseList() throws {
        XCTAssertEqual(try VLANMode.parseList("10"), [10])
        XCTAssertEqual(try VLANMode.parseList("20,10,10"), [10, 20])
        XCTAssertEqual(try VLANMode.parseList("10,20,30-33"), [10, 20, 30, 31, 32, 33])
        XCTAssertEqual(try VLANMode.parseList("1,4094"), [1, 4094])
        XCTAssertEqual(try VLANMode.parseList("7-7"), [7])
    }

    func testParseListErrorsNameTheBadTerm() {
        let bad: [(String, String)] = [("", ""), ("0", "0"), ("4095", "4095"), ("10,", ""), (",10", ""),
                                      ("10,x", "x"), ("5-3", "5-3"), ("1-2-3", "1-2-3"), ("10-", "10-"),
                                      ("-10", "-10"), ("10,20;30", "20;30"), ("+5", "+5"), (" 5", " 5")]
        for (text, term) in bad {
            XCTAssertThrowsError(try VLANMode.parseList(text), "'\(text)'") { e in
                XCTAssertEqual(e as? VLANConfigError, .badVLANList(text, term: term), "'\(text)'")
            }
        }
    }

    func testFormatListCollapsesRanges() {
        XCTAssertEqual(VLANMode.formatList([10, 20, 21, 22, 30]), "10,20-22,30")
        XCTAssertEqual(VLANMode.formatList([5, 6]), "5,6")
        XCTAssertEqual(VLANMode.formatList([3, 1, 2, 2]), "1-3")
        XCTAssertEqual(VLANMode.formatList([]), "")
    }

    // MARK: CLI keys

    func testModeFromCLIKeys() throws {
        XCTAssertEqual(try VLANMode.from(tag: nil, trunks: nil, native: nil), .access(1))
        XCTAssertEqual(try VLANMode.from(tag: "10", trunks: nil, native: nil), .access(10))
        XCTAssertEqual(try VLANMode.from(tag: nil, trunks: "10,20", native: nil), .trunk(allowed: [10, 20], native: nil))
        XCTAssertEqual(try VLANMode.from(tag: nil, trunks: "10,20", native: "5"), .trunk(allowed: [10, 20], native: 5))
        // A native VLAN that is also in the list is fine: it is carried untagged.
        XCTAssertEqual(try VLANMode.from(tag: nil, trunks: "10,20", native: "10").members, [10, 20])
    }

    func testModeFromCLIKeysErrors() {
        func check(_ tag: String?, _ trunks: String?, _ native: String?, _ expected: VLANConfigError,
                   line: UInt = #line) {
            XCTAssertThrowsError(try VLANMode.from(tag: tag, trunks: trunks, native: native), line: line) { e in
                XCTAssertEqual(e as? VLANConfigError, expected, line: line)
            }
        }
        check("0", nil, nil, .badVLAN("0"))
        check("4095", nil, nil, .badVLAN("4095"))
        check("ten", nil, nil, .badVLAN("ten"))
        check("", nil, nil, .badVLAN(""))
        check("+10", nil, nil, .badVLAN("+10"))
        check("10", "20", nil, .conflicting("tag= cannot be combined with trunks= or native="))
        check("10", nil, "5", .conflicting("tag= cannot be combined with trunks= or native="))
        check(nil, nil, "5", .conflicting("native= needs trunks="))
        check(nil, "10,abc", nil, .badVLANList("10,abc", term: "abc"))
        check(nil, "", "5", .badVLANList("", term: ""))
        check(nil, "10", "0", .badVLAN("0"))
        check(nil, "10", "4095", .badVLAN("4095"))
        XCTAssertEqual(VLANConfigError.badVLAN("0").description, "invalid VLAN ID '0': expected a number from 1 to 4094")
    }

    func testVLANIDParse() {
        XCTAssertEqual(VLANID.parse("1"), 1)
        XCTAssertEqual(VLANID.parse("4094"), 4094)
        XCTAssertNil(VLANID.parse("0"))
        XCTAssertNil(VLANID.parse("4095"))
        XCTAssertNil(VLANID.parse("65536"))
        XCTAssertNil(VLANID.parse("+1"))
        XCTAssertNil(VLANID.parse(""))
    }

    func testMembersAndSummary() {
        XCTAssertEqual(VLANMode.access(7).members, [7])
        XCTAssertEqual(VLANMode.access(7).summary, "access 7")
        let t = VLANMode.trunk(allowed: [20, 10, 11, 12], native: 5)
        XCTAssertEqual(t.members, [5, 10, 11, 12, 20])
        XCTAssertEqual(t.summary, "trunk 10-12,20 native 5")
        XCTAssertEqual(VLANMode.trunk(allowed: [10, 20], native: nil).summary, "trunk 10,20")
    }

    func testJSONFormIsReadableAndRoundTrips() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let access = VLANMode.access(10)
        let trunk = VLANMode.trunk(allowed: [10, 20], native: 5)
        let bare = VLANMode.trunk(allowed: [7], native: nil)
        XCTAssertEqual(String(decoding: try encoder.encode(access), as: UTF8.self), #"{"mode":"access","vlan":10}"#)
        XCTAssertEqual(String(decoding: try encoder.encode(trunk), as: UTF8.self), #"{"mode":"trunk","native":5,"trunks":[10,20]}"#)
        XCTAssertEqual(String(decoding: try encoder.encode(bare), as: UTF8.self), #"{"mode":"trunk","trunks":[7]}"#)
        for m in [access, trunk, bare] {
            XCTAssertEqual(try JSONDecoder().decode(VLANMode.self, from: encoder.encode(m)), m)
        }
        XCTAssertThrowsError(try JSONDecoder().decode(VLANMode.self, from: Data(#"{"mode":"hybrid"}"#.utf8)))
    }
}
