// The JSON-lines protocol: every command and result survives a round trip, and every kind of
// bad request gets a message that says what is wrong.

import XCTest
@testable import SwitchControl
import SwitchCore

final class ControlCodecTests: XCTestCase {
    func testEveryCommandRoundTrips() throws {
        for command in Samples.commands {
            let line = try ControlCodec.encode(ControlRequest(command))
            XCTAssertEqual(line.last, UInt8(ascii: "\n"))
            XCTAssertEqual(line.filter { $0 == UInt8(ascii: "\n") }.count, 1, "one line per request")
            let decoded = try ControlCodec.decodeRequest(line)
            XCTAssertEqual(decoded, ControlRequest(command))
            XCTAssertEqual(decoded.version, controlProtocolVersion)
        }
    }

    func testEveryResultRoundTrips() throws {
        let responses: [ControlResponse] = [
            .success(), .success(.done), .success(.show(Samples.bridges)), .success(.fdb(Samples.fdb)),
            .success(.stats(Samples.stats)), .success(.show([])), .failure("no such bridge 'x'\nsecond line"),
        ]
        for response in responses {
            let line = ControlCodec.encode(response)
            XCTAssertEqual(line.filter { $0 == UInt8(ascii: "\n") }.count, 1, "one line per response")
            XCTAssertEqual(try ControlCodec.decodeResponse(line), response)
        }
    }

    func testEncodingIsDeterministic() throws {
        let a = try ControlCodec.encode(ControlRequest(.addBridge(name: "b", ageingSeconds: 1, fdbCapacity: 2)))
        let b = try ControlCodec.encode(ControlRequest(.addBridge(name: "b", ageingSeconds: 1, fdbCapacity: 2)))
        XCTAssertEqual(a, b)
        XCTAssertEqual(String(decoding: a, as: UTF8.self),
                       #"{"command":{"addBridge":{"ageingSeconds":1,"fdbCapacity":2,"name":"b"}},"version":1}"# + "\n")
    }

    func testUnencodableResponseBecomesFailure() throws {
        let bad = ControlResponse.success(.fdb([FDBEntryInfo(port: "p", portNumber: 1, vlan: 1, mac: Samples.mac1,
                                                             isStatic: false, ageSeconds: .nan)]))
        let decoded = try ControlCodec.decodeResponse(ControlCodec.encode(bad))
        XCTAssertFalse(decoded.ok)
        XCTAssertTrue(decoded.error?.hasPrefix("internal error: cannot encode the response") ?? false, "\(decoded)")
    }

    private func requestError(_ text: String) -> String? {
        do {
            _ = try ControlCodec.decodeRequest(Array(text.utf8))
            return nil
        } catch {
            return error.message
        }
    }

    func testMalformedRequestsGetPreciseMessages() {
        XCTAssertEqual(requestError(""), "malformed request: empty line (expected one JSON object)")
        XCTAssertEqual(requestError("\n"), "malformed request: empty line (expected one JSON object)")
        XCTAssertEqual(requestError("hello"), "malformed request: not valid JSON")
        XCTAssertEqual(requestError("[1,2]"), "malformed request: wrong type at top level: expected an object")
        XCTAssertEqual(requestError(#"{"command":"show"}"#), "malformed request: missing key 'version'")
        XCTAssertEqual(requestError(#"{"version":"1","command":{"show":{}}}"#),
                       "malformed request: wrong type at 'version': expected an integer")
        XCTAssertEqual(requestError(#"{"version":1}"#), "malformed request: missing key 'command'")
        XCTAssertEqual(requestError(#"{"version":1,"command":{"delBridge":{"name":5}}}"#),
                       "malformed request: wrong type at 'command.delBridge.name': expected a string")
        XCTAssertEqual(requestError(#"{"version":1,"command":{"delBridge":{}}}"#),
                       "malformed request: missing key 'command.delBridge.name'")
        let badMAC = requestError(#"{"version":1,"command":{"fdbDel":{"bridge":"b","mac":"zz","vlan":1}}}"#)
        XCTAssertEqual(badMAC, "malformed request: invalid value at 'command.fdbDel.mac': not a MAC address: zz")
        let unknown = requestError(#"{"version":1,"command":{"frobnicate":{}}}"#)
        XCTAssertTrue(unknown?.hasPrefix("malformed request: ") ?? false, unknown ?? "accepted")
    }

    func testWrongVersionIsRefusedBeforeTheCommandIsRead() {
        let expected = "unsupported protocol version 2: userswitchd speaks version 1; use the userswitchctl that came with this userswitchd"
        XCTAssertEqual(requestError(#"{"version":2,"command":{"addMirror":{"x":1}}}"#), expected)
        XCTAssertEqual(requestError(#"{"version":0,"command":{"show":{}}}"#)?.hasPrefix("unsupported protocol version 0"), true)
    }

    func testTrailingCarriageReturnAccepted() throws {
        let decoded = try ControlCodec.decodeRequest(Array(#"{"version":1,"command":{"show":{}}}"#.utf8) + [13, 10])
        XCTAssertEqual(decoded.command, .show)
    }

    func testInvalidResponse() {
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array("nope".utf8))) { error in
            XCTAssertEqual((error as? ControlProtocolError)?.message, "invalid response from userswitchd: not valid JSON")
        }
        XCTAssertThrowsError(try ControlCodec.decodeResponse([])) { error in
            XCTAssertEqual((error as? ControlProtocolError)?.message, "invalid response from userswitchd: empty line")
        }
    }
}
