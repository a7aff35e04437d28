// The FDB index slot's layout: a lookup must find key, entry and port in one 16-byte slot, four
// to a 64-byte cache line (MACTable's design note).

@testable import SwitchCore
import XCTest

final class FDBSlotLayoutTests: XCTestCase {
    func testSlotIsSixteenBytesWithTheKeyFirst() {
        XCTAssertEqual(MemoryLayout<FDBSlot>.size, 16)
        XCTAssertEqual(MemoryLayout<FDBSlot>.stride, 16)
        XCTAssertEqual(MemoryLayout<FDBSlot>.offset(of: \FDBSlot.key), 0)
        XCTAssertEqual(MemoryLayout<FDBSlot>.offset(of: \FDBSlot.entry), 8)
        XCTAssertEqual(MemoryLayout<FDBSlot>.offset(of: \FDBSlot.port), 12)
    }

    func testLookupSeesMovesAndStaticReplacementThroughTheSlotCopy() {
        let t = MACTable(capacity: 64)
        let m = MACAddress(0x02, 0, 0, 0, 0, 9)
        t.learn(vlan: 5, mac: m, port: 1, now: 0)
        XCTAssertEqual(t.lookup(vlan: 5, mac: m), 1)
        t.learn(vlan: 5, mac: m, port: 2, now: 10)
        XCTAssertEqual(t.lookup(vlan: 5, mac: m), 2, "a MAC move must update the slot's copy of the port")
        t.addStatic(vlan: 5, mac: m, port: 3)
        XCTAssertEqual(t.lookup(vlan: 5, mac: m), 3, "a static entry replacing a learned one must update the slot")
        XCTAssertEqual(t.entries(now: 20).first?.port, 3)
    }
}
