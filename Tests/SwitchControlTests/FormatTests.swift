// The text listings, checked character for character: these are what docs/usage.md shows.

import XCTest
@testable import SwitchControl
import SwitchCore

final class FormatTests: XCTestCase {
    func testShowLooksLikeBrctlShow() {
        XCTAssertEqual(Format.show(Samples.bridges), """
            bridge name  ageing  port    type    vlan                     state
            xenbr0       300     peth0   system  trunk 10,20-22 native 5  up
                                 vif1.0  system  access 10                up
                                 xenbr0  tap     access 1                 down
            xenbr1       300

            """)
    }

    func testShowWithoutBridgesIsTheHeaderOnly() {
        XCTAssertEqual(Format.show([]), "bridge name  ageing  port  type  vlan  state\n")
    }

    func testFDBLooksLikeBrctlShowmacs() {
        XCTAssertEqual(Format.fdb(Samples.fdb), """
            port no  port    vlan  mac addr           is static?  ageing timer
                  1  peth0     10  00:16:3e:0a:bc:de  yes                 0.00
                  1  peth0     20  00:16:3e:00:00:01  no                  0.50
                  2  vif1.0    10  00:16:3e:0a:bc:de  no                 12.34

            """)
    }

    func testStatsListsNonZeroDropsFirst() {
        XCTAssertEqual(Format.stats(Samples.stats), """
            bridge xenbr0: 2 ports, 3 FDB entries
            port    state  rx frames  rx bytes  tx frames  tx bytes  down events
            peth0   up          1234    567890       1200    560000            0
            vif1.0  down          10       640          0         0            2
            drops:
              vlan-not-allowed  12
              same-segment       3
              (2 other reasons at 0)

            """)
    }

    func testStatsWithAllDrops() {
        XCTAssertEqual(Format.stats(Samples.stats, allDrops: true), """
            bridge xenbr0: 2 ports, 3 FDB entries
            port    state  rx frames  rx bytes  tx frames  tx bytes  down events
            peth0   up          1234    567890       1200    560000            0
            vif1.0  down          10       640          0         0            2
            drops:
              vlan-not-allowed        12
              same-segment             3
              link-local-destination   0
              runt                     0

            """)
    }

    func testStatsOfSeveralBridgesWithoutDrops() {
        let stats = [
            BridgeStats(name: "b2", ports: [], drops: ["same-segment": 0], fdbEntries: 1),
            BridgeStats(name: "b1", ports: [PortStats(name: "p", state: "up", rxFrames: 1, rxBytes: 60, txFrames: 0,
                                                      txBytes: 0, downEvents: 0)],
                        drops: [:], fdbEntries: 0),
        ]
        XCTAssertEqual(Format.stats(stats), """
            bridge b1: 1 port, 0 FDB entries
            port  state  rx frames  rx bytes  tx frames  tx bytes  down events
            p     up             1        60          0         0            0
            drops: none

            bridge b2: 0 ports, 1 FDB entry
            port  state  rx frames  rx bytes  tx frames  tx bytes  down events
            drops: none

            """)
        XCTAssertEqual(Format.stats([]), "")
    }

    func testSecondsHaveTwoDecimals() {
        XCTAssertEqual(Format.seconds(0), "0.00")
        XCTAssertEqual(Format.seconds(0.05), "0.05")
        XCTAssertEqual(Format.seconds(12.34), "12.34")
        XCTAssertEqual(Format.seconds(299.999), "300.00")
        XCTAssertEqual(Format.seconds(-1), "0.00")
        XCTAssertEqual(Format.seconds(.infinity), "-")
    }

    func testJSONIsPrettyWithSortedKeysAndDecodesBack() throws {
        let text = try Format.json(Samples.fdb)
        XCTAssertTrue(text.hasSuffix("\n"))
        XCTAssertTrue(text.contains("\n  {\n    \"ageSeconds\" : 12.341,\n    \"isStatic\" : false,\n    \"mac\" : \"00:16:3e:0a:bc:de\","), text)
        XCTAssertEqual(try JSONDecoder().decode([FDBEntryInfo].self, from: Data(text.utf8)), Samples.fdb)
        XCTAssertEqual(try JSONDecoder().decode([BridgeInfo].self, from: Data(try Format.json(Samples.bridges).utf8)),
                       Samples.bridges)
        XCTAssertEqual(try JSONDecoder().decode([BridgeStats].self, from: Data(try Format.json(Samples.stats).utf8)),
                       Samples.stats)
    }

    func testTableAlignment() {
        XCTAssertEqual(Format.table(header: ["a", "num"], rows: [["long", "1"], ["x", "100"]], rightAligned: [1]),
                       "a     num\nlong    1\nx     100\n")
    }
}
