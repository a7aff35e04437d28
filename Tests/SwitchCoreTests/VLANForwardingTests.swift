// VLANs through the pipeline: access and trunk ports, native VLANs, priority tags and PCP, what is
// dropped at ingress (and under which reason), tag push/pop/keep per egress port, 802.1ad frames.
// docs/vlan.md describes the same rules; keep the two in agreement.

import SwitchCore
import XCTest

final class VLANForwardingTests: XCTestCase {
    let (h1, h2, h3, h4) = (Frame.host(1), Frame.host(2), Frame.host(3), Frame.host(4))

    /// p0 access 10, p1 access 20, p2 trunk 10,20 (no native), p3 trunk 10,20,30 native 5,
    /// p4 access 5, p5 access 10.
    func makeLab() throws -> Lab {
        try Lab([.access(10), .access(20), .trunk(allowed: [10, 20], native: nil),
                 .trunk(allowed: [10, 20, 30], native: 5), .access(5), .access(10)])
    }

    func tag(_ f: [UInt8], _ vid: UInt16, pcp: UInt8 = 0) -> [UInt8] { Frame.pushTag(f, tci: Frame.tci(vid: vid, pcp: pcp)) }

    // MARK: access ports

    func testAccessPortsFloodOnlyWithinTheirVLANAndTrunksGetItTagged() throws {
        let lab = try makeLab()
        let f = Frame.ethernet(dst: .broadcast, src: h1)
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], [tag(f, 10)], [tag(f, 10)], [], [f]])
        let g = Frame.ethernet(dst: .broadcast, src: h2)
        lab.send(g, on: 1)
        XCTAssertEqual(lab.outAll(), [[], [], [tag(g, 20)], [tag(g, 20)], [], []])
        assertDrops(lab, [:])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: h1), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: h2), 1)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 1, mac: h1), -1)
    }

    func testUnicastDoesNotCrossVLANs() throws {
        let lab = try makeLab()
        lab.send(Frame.ethernet(dst: .broadcast, src: h2), on: 1) // h2 known in VLAN 20
        _ = lab.outAll()
        let f = Frame.ethernet(dst: h2, src: h1)                  // from VLAN 10: h2 unknown there
        lab.send(f, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], [tag(f, 10)], [tag(f, 10)], [], [f]])
    }

    func testTaggedFramesOnAnAccessPortAreDropped() throws {
        let lab = try makeLab()
        lab.send([Frame.tagged(dst: .broadcast, src: h1, vid: 10), Frame.tagged(dst: .broadcast, src: h1, vid: 20),
                  Frame.tagged(dst: .broadcast, src: h1, vid: 4095)], on: 0)
        XCTAssertEqual(lab.outAll().flatMap { $0 }, [])
        assertDrops(lab, [.taggedOnAccessPort: 3])
        XCTAssertEqual(lab.engine.fdb.count, 0)
    }

    // MARK: trunks

    func testTrunkToAccessPopsAndTrunkToTrunkKeepsTheTag() throws {
        let lab = try makeLab()
        let f = Frame.tagged(dst: .broadcast, src: h3, vid: 20, pcp: 6)
        lab.send(f, on: 2)
        XCTAssertEqual(lab.outAll(), [[], [Frame.untag(f)], [], [f], [], []])
        let g = Frame.tagged(dst: .broadcast, src: h3, vid: 10)
        lab.send(g, on: 2)
        XCTAssertEqual(lab.outAll(), [[Frame.untag(g)], [], [], [g], [], [Frame.untag(g)]])
        assertDrops(lab, [:])
    }

    func testKnownUnicastGetsTheEgressPortsTagging() throws {
        let lab = try makeLab()
        lab.send(Frame.tagged(dst: .broadcast, src: h3, vid: 10), on: 2) // h3 behind trunk p2 in VLAN 10
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)        // h1 on access p0
        _ = lab.outAll()
        let toTrunk = Frame.ethernet(dst: h3, src: h1)
        lab.send(toTrunk, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [], [tag(toTrunk, 10)], [], [], []])
        let toAccess = Frame.tagged(dst: h1, src: h3, vid: 10, pcp: 2)
        lab.send(toAccess, on: 2)
        XCTAssertEqual(lab.outAll(), [[Frame.untag(toAccess)], [], [], [], [], []])
    }

    func testNativeVLANIsCarriedUntagged() throws {
        let lab = try makeLab()
        let f = Frame.ethernet(dst: .broadcast, src: h4)
        lab.send(f, on: 3) // untagged on p3: native VLAN 5
        XCTAssertEqual(lab.outAll(), [[], [], [], [], [f], []])
        let g = Frame.ethernet(dst: h4, src: h2)
        lab.send(g, on: 4) // access 5 -> trunk p3 whose native is 5: no tag pushed
        XCTAssertEqual(lab.outAll(), [[], [], [], [g], [], []])
        // The native VLAN arriving tagged is accepted too, and leaves the trunk untagged.
        let t = Frame.tagged(dst: h2, src: h4, vid: 5)
        lab.send(t, on: 3)
        XCTAssertEqual(lab.outAll(), [[], [], [], [], [Frame.untag(t)], []])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 5, mac: h4), 3)
        assertDrops(lab, [:])
    }

    func testTrunkToTrunkWithDifferentNativeVLANs() throws {
        // p0: trunk 10,20 native 10; p1: trunk 10,20 native 20; p2: trunk 10,20, no native.
        let lab = try Lab([.trunk(allowed: [10, 20], native: 10), .trunk(allowed: [10, 20], native: 20),
                           .trunk(allowed: [10, 20], native: nil)])
        let untagged = Frame.ethernet(dst: .broadcast, src: h1) // VLAN 10 on p0
        lab.send(untagged, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [tag(untagged, 10)], [tag(untagged, 10)]])
        let tagged20 = Frame.tagged(dst: .broadcast, src: h1, vid: 20)
        lab.send(tagged20, on: 0)
        XCTAssertEqual(lab.outAll(), [[], [Frame.untag(tagged20)], [tagged20]])
    }

    func testUntaggedOnATrunkWithoutNativeIsDropped() throws {
        let lab = try makeLab()
        lab.send([Frame.ethernet(dst: .broadcast, src: h3),
                  Frame.tagged(dst: .broadcast, src: h3, vid: 0, pcp: 4), // priority tag: no VLAN either
                  Frame.ieee8023(dst: .broadcast, src: h3)], on: 2)
        XCTAssertEqual(lab.outAll().flatMap { $0 }, [])
        assertDrops(lab, [.untaggedOnTrunk: 3])
        XCTAssertEqual(lab.engine.fdb.count, 0)
    }

    func testVLANsOutsideTheTrunksSetAreDropped() throws {
        let lab = try makeLab()
        lab.send([Frame.tagged(dst: .broadcast, src: h3, vid: 30),   // not in p2's set
                  Frame.tagged(dst: .broadcast, src: h3, vid: 5),    // p3's native, not p2's
                  Frame.tagged(dst: .broadcast, src: h3, vid: 4095), // reserved
                  Frame.tagged(dst: .broadcast, src: h3, vid: 1)], on: 2)
        lab.send(Frame.tagged(dst: .broadcast, src: h3, vid: 4095), on: 3)
        XCTAssertEqual(lab.outAll().flatMap { $0 }, [])
        assertDrops(lab, [.vlanNotAllowed: 5])
    }

    func testFloodScopedToAVLANWithNoOtherMember() throws {
        let lab = try makeLab()
        lab.send(Frame.tagged(dst: .broadcast, src: h3, vid: 30), on: 3) // only p3 carries VLAN 30
        XCTAssertEqual(lab.outAll().flatMap { $0 }, [])
        assertDrops(lab, [.noEgressPort: 1])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 30, mac: h3), 3, "still learned")
    }

    // MARK: priority tags and PCP

    func testPriorityTaggedFrameOnAccessPortJoinsItsVLANAndKeepsItsPCP() throws {
        let lab = try makeLab()
        let f = Frame.tagged(dst: .broadcast, src: h1, vid: 0, pcp: 5)
        lab.send(f, on: 0)
        let out = lab.outAll()
        XCTAssertEqual(out[5], [Frame.untag(f)], "to an access port: untagged")
        let expected = Frame.pushTag(Frame.untag(f), tci: Frame.tci(vid: 10, pcp: 5))
        XCTAssertEqual(out[2], [expected])
        XCTAssertEqual(out[3], [expected])
        XCTAssertEqual(out[2].first.flatMap(Frame.tciOf).map { $0 >> 13 }, 5, "PCP bits of the pushed tag")
        XCTAssertEqual(out[2].first.flatMap(Frame.tciOf).map { $0 & 0xFFF }, 10)
        XCTAssertEqual(out[0] + out[1] + out[4], [])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: h1), 0)
        assertDrops(lab, [:])
    }

    func testPriorityTaggedFrameOnTrunkJoinsTheNativeVLAN() throws {
        let lab = try makeLab()
        let f = Frame.tagged(dst: .broadcast, src: h4, vid: 0, pcp: 3)
        lab.send(f, on: 3)
        XCTAssertEqual(lab.outAll(), [[], [], [], [], [Frame.untag(f)], []])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 5, mac: h4), 3)
    }

    func testUntaggedFramesGetPCPZeroOnATrunk() throws {
        let lab = try makeLab()
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)
        XCTAssertEqual(lab.out(2).first.flatMap(Frame.tciOf), Frame.tci(vid: 10, pcp: 0))
    }

    func testTrunkToTrunkKeepsPCPAndDEI() throws {
        let lab = try makeLab()
        let f = Frame.tagged(dst: .broadcast, src: h3, vid: 20, pcp: 7, dei: true)
        lab.send(f, on: 2)
        XCTAssertEqual(lab.out(3), [f])
        XCTAssertEqual(lab.out(1), [Frame.untag(f)])
    }

    // MARK: 802.1ad

    /// By design an 802.1ad S-tag (TPID 0x88a8) is not a VLAN tag for this switch: the frame is
    /// untagged with ethertype 0x88a8. It joins the access VLAN (or a trunk's native VLAN) and its
    /// S-tag and C-tag travel on as payload; a trunk without a native VLAN drops it as untagged.
    func test8021adFramesAreUntaggedFramesWhoseEthertypeIs88a8() throws {
        let lab = try makeLab()
        let q = Frame.qinq(dst: .broadcast, src: h1, sVID: 100, cVID: 200)
        XCTAssertEqual(Array(q[12..<14]), [0x88, 0xA8])
        lab.send(q, on: 0) // access 10
        XCTAssertEqual(lab.outAll(), [[], [], [tag(q, 10)], [tag(q, 10)], [], [q]])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: h1), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 100, mac: h1), -1)

        let r = Frame.qinq(dst: h1, src: h4, sVID: 10, cVID: 10)
        lab.send(r, on: 3) // trunk with native 5: VLAN 5, not the S-tag's 10
        XCTAssertEqual(lab.outAll(), [[], [], [], [], [r], []])
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 5, mac: h4), 3)

        lab.send(Frame.qinq(dst: .broadcast, src: h3, sVID: 10, cVID: 20), on: 2) // trunk, no native
        XCTAssertEqual(lab.outAll().flatMap { $0 }, [])
        assertDrops(lab, [.untaggedOnTrunk: 1])
    }

    /// An 802.1Q tag in front of an 802.1ad one (as a trunk delivers an 802.1ad frame it carries):
    /// the outer 0x8100 tag is the VLAN, the rest is payload.
    func testOuter8021QTagBeforeAn8021adTag() throws {
        let lab = try makeLab()
        let q = Frame.qinq(dst: .broadcast, src: h3, sVID: 100, cVID: 200)
        let onTrunk = tag(q, 20)
        lab.send(onTrunk, on: 2)
        XCTAssertEqual(lab.outAll(), [[], [q], [], [onTrunk], [], []])
    }

    // MARK: same MAC in two VLANs, mode changes

    func testSameMACInTwoVLANsOnDifferentPorts() throws {
        let lab = try makeLab()
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0) // VLAN 10
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 1) // VLAN 20
        _ = lab.outAll()
        XCTAssertEqual(lab.engine.fdb.moves, 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: h1), 0)
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 20, mac: h1), 1)
        let to20 = Frame.tagged(dst: h1, src: h3, vid: 20)
        let to10 = Frame.tagged(dst: h1, src: h3, vid: 10)
        lab.send([to20, to10], on: 2)
        XCTAssertEqual(lab.outAll(), [[Frame.untag(to10)], [Frame.untag(to20)], [], [], [], []])
    }

    func testSetModeForgetsTheLearnedEntriesOfThePortAndAppliesTheNewMode() throws {
        let lab = try makeLab()
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)
        _ = lab.outAll()
        try lab.engine.setMode(0, .trunk(allowed: [20], native: nil))
        XCTAssertEqual(lab.engine.portModes[0], .trunk(allowed: [20], native: nil))
        XCTAssertEqual(lab.engine.fdb.lookup(vlan: 10, mac: h1), -1)
        let f = Frame.ethernet(dst: .broadcast, src: h2)
        lab.send(f, on: 1) // VLAN 20 now reaches p0, tagged
        XCTAssertEqual(lab.outAll(), [[tag(f, 20)], [], [tag(f, 20)], [tag(f, 20)], [], []])
        lab.send(Frame.ethernet(dst: .broadcast, src: h1), on: 0)
        assertDrops(lab, [.untaggedOnTrunk: 1])
        XCTAssertThrowsError(try lab.engine.setMode(9, .defaultAccess))
    }
}
