// MACAddress: parsing, printing, the group bit, the 802.1D link-local range, and the network-order
// load/store the pipeline uses on frame bytes.

import Foundation
import SwitchCore
import XCTest

final class MACAddressTests: XCTestCase {
    func testParseAndPrint() {
        let m = MACAddress("00:16:3e:0A:b1:ff")
        XCTAssertEqual(m?.rawValue, 0x0016_3E0A_B1FF)
        XCTAssertEqual(m?.description, "00:16:3e:0a:b1:ff")
        XCTAssertEqual(MACAddress("00-16-3e-0a-b1-ff"), m)
        XCTAssertEqual(MACAddress("0:1:2:3:4:5")?.description, "00:01:02:03:04:05")
        XCTAssertEqual(MACAddress(0x00, 0x16, 0x3E, 0x0A, 0xB1, 0xFF), m)
        XCTAssertEqual(m?.bytes, [0x00, 0x16, 0x3E, 0x0A, 0xB1, 0xFF])
    }

    func testMalformedAddressesAreRejected() {
        for s in ["", "00:16:3e:0a:b1", "00:16:3e:0a:b1:ff:00", "00:16:3e:0a:b1:fg", "001:16:3e:0a:b1:ff",
                  "00:16:3e:0a:b1:", "00:16-3e:0a:b1:ff", "00163e0ab1ff"] {
            XCTAssertNil(MACAddress(s), s)
        }
    }

    func testRawValueKeepsOnly48Bits() {
        XCTAssertEqual(MACAddress(rawValue: 0xABCD_0016_3E0A_B1FF).rawValue, 0x0016_3E0A_B1FF)
    }

    func testGroupBitAndSpecialAddresses() {
        XCTAssertTrue(MACAddress.broadcast.isMulticast)
        XCTAssertTrue(MACAddress.broadcast.isBroadcast)
        XCTAssertTrue(Frame.mac("01:00:5e:00:00:01").isMulticast)
        XCTAssertTrue(Frame.mac("33:33:00:00:00:01").isMulticast)
        XCTAssertFalse(Frame.mac("02:00:00:00:00:01").isMulticast)
        XCTAssertFalse(Frame.mac("00:16:3e:00:00:01").isMulticast)
        XCTAssertTrue(MACAddress.zero.isZero)
        XCTAssertFalse(Frame.host(1).isZero)
    }

    func testLinkLocalReservedRangeIsExactly00To0F() {
        for last in 0x00...0x0F {
            XCTAssertTrue(MACAddress(0x01, 0x80, 0xC2, 0, 0, UInt8(last)).isLinkLocalReserved, "\(last)")
        }
        XCTAssertFalse(Frame.mac("01:80:c2:00:00:10").isLinkLocalReserved)
        XCTAssertFalse(Frame.mac("01:80:c2:00:00:20").isLinkLocalReserved)
        XCTAssertFalse(Frame.mac("01:80:c2:00:01:00").isLinkLocalReserved)
        XCTAssertFalse(Frame.mac("01:80:c3:00:00:00").isLinkLocalReserved)
        XCTAssertFalse(Frame.mac("00:80:c2:00:00:00").isLinkLocalReserved)
        XCTAssertFalse(MACAddress.broadcast.isLinkLocalReserved)
    }

    func testLoadAndStoreInNetworkOrder() {
        var bytes: [UInt8] = [0xAA, 0x00, 0x16, 0x3E, 0x0A, 0xB1, 0xFF, 0xBB]
        let m = bytes.withUnsafeBytes { MACAddress(loadingFrom: $0.baseAddress! + 1) }
        XCTAssertEqual(m, Frame.mac("00:16:3e:0a:b1:ff"))
        bytes.withUnsafeMutableBytes { Frame.mac("02:03:04:05:06:07").store(to: $0.baseAddress! + 1) }
        XCTAssertEqual(bytes, [0xAA, 2, 3, 4, 5, 6, 7, 0xBB])
    }

    func testCodableAsText() throws {
        let m = Frame.mac("00:16:3e:0a:b1:ff")
        let data = try JSONEncoder().encode([m])
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "[\"00:16:3e:0a:b1:ff\"]")
        XCTAssertEqual(try JSONDecoder().decode([MACAddress].self, from: data), [m])
        XCTAssertThrowsError(try JSONDecoder().decode([MACAddress].self, from: Data("[\"zz\"]".utf8)))
    }
}
