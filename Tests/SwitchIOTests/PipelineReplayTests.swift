// The whole forwarding pipeline, replayed from capture files without root: each port of a
// BridgeEngine is a PcapPort reading its ingress frames from one file and writing its egress
// frames to another, and the test reads those files back.

import Foundation
import SwitchCore
import SwitchIO
import XCTest

final class PipelineReplayTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("usw-replay-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    static func mac(_ last: UInt8) -> [UInt8] { [0x02, 0, 0, 0, 0, last] }

    /// dst, src, [802.1Q tag], ethertype 0x88b5 (local experimental), padded to 60 bytes before the tag.
    static func frame(dst: [UInt8], src: [UInt8], vid: UInt16? = nil, pcp: UInt8 = 0, payload: UInt8) -> [UInt8] {
        var f = dst + src
        if let vid {
            let tci = UInt16(pcp) << 13 | vid
            f += [0x81, 0x00, UInt8(tci >> 8), UInt8(tci & 0xFF)]
        }
        f += [0x88, 0xB5, payload]
        while f.count < (vid == nil ? 60 : 64) { f.append(0) }
        return f
    }

    func testReplayThroughAccessAndTrunkPorts() throws {
        let bcast = [UInt8](repeating: 0xFF, count: 6)
        let inputs: [[[UInt8]]] = [
            // port 1, access 10: a broadcast, so 02::01 is learned in VLAN 10
            [Self.frame(dst: bcast, src: Self.mac(1), payload: 1)],
            // port 2, access 10: unicast to the now known 02::01
            [Self.frame(dst: Self.mac(1), src: Self.mac(2), payload: 2)],
            // port 3, access 20: a broadcast in VLAN 20
            [Self.frame(dst: bcast, src: Self.mac(3), payload: 3)],
            // port 4, trunk 10,20: VLAN 20 unicast to 02::03 with PCP 5, then VLAN 30 (not allowed)
            [Self.frame(dst: Self.mac(3), src: Self.mac(4), vid: 20, pcp: 5, payload: 4),
             Self.frame(dst: bcast, src: Self.mac(4), vid: 30, payload: 5)],
        ]
        let modes: [VLANMode] = [.access(10), .access(10), .access(20), .trunk(allowed: [10, 20], native: nil)]
        let engine = BridgeEngine<PcapPort>(settings: BridgeSettings(batchSize: 32), maxPorts: 8)
        var ports: [PcapPort] = []
        for k in 0..<4 {
            let input = dir.appendingPathComponent("in\(k).pcap").path
            try PcapFile.write(frames: inputs[k], to: input)
            let port = try PcapPort(input: input, output: dir.appendingPathComponent("out\(k).pcap").path)
            ports.append(port)
            _ = try engine.addPort(name: "p\(k)", mode: modes[k], device: port)
        }
        var rounds = 0
        while engine.pollAll(now: 1000) > 0 { rounds += 1; XCTAssertLessThan(rounds, 10) }
        for p in ports { p.close() }
        let out = try (0..<4).map { try PcapFile.read(dir.appendingPathComponent("out\($0).pcap").path) }

        XCTAssertEqual(out[0], [inputs[1][0]], "the unicast to 02::01 reaches port 1 only")
        XCTAssertEqual(out[1], [inputs[0][0]], "port 2 gets VLAN 10's broadcast, untagged")
        XCTAssertEqual(out[2], [Self.frame(dst: Self.mac(3), src: Self.mac(4), payload: 4)],
                       "the trunk's VLAN 20 frame reaches the access port with its tag popped")
        XCTAssertEqual(out[3], [Self.frame(dst: bcast, src: Self.mac(1), vid: 10, payload: 1),
                                Self.frame(dst: bcast, src: Self.mac(3), vid: 20, payload: 3)],
                       "the trunk gets both VLANs' broadcasts, tagged")
        XCTAssertEqual(engine.dropCounters[.vlanNotAllowed], 1)
        XCTAssertEqual(engine.dropCounters.total, 1)
        XCTAssertEqual(engine.fdb.lookup(vlan: 20, mac: MACAddress(0x02, 0, 0, 0, 0, 4)), 3)
        XCTAssertEqual(engine.portCounters(3).rxFrames, 2)
        XCTAssertEqual(engine.portCounters(3).txFrames, 2)
        XCTAssertEqual(engine.portCounters(3).txBytes, 128, "two 60-byte frames plus a 4-byte tag each")
    }
}
