// Encoding and decoding of control protocol lines, kept apart from the socket so that every rule
// about what a valid request is can be tested without a socket.
//
// The version is checked before the command is decoded: a newer client may send a command this
// daemon does not know, and "unsupported protocol version 2" is the useful answer then, not
// "unknown key addMirror". Decoding errors are turned into messages that name the offending key
// path, because the person reading them is debugging a script or a hand-written request.

import Foundation

/// A request or response that could not be encoded or decoded; `message` is meant for a human.
public struct ControlProtocolError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ControlCodec {
    /// Largest request line the daemon reads (1 MiB); a request is a few hundred bytes at most.
    public static let maxRequestBytes = 1 << 20

    /// Only the version, so that it can be checked before the rest is interpreted.
    private struct VersionProbe: Decodable {
        var version: Int?
    }

    private static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        // Sorted keys: the same request is always the same bytes (easier to log and to test).
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// The request as one JSON line, newline included.
    public static func encode(_ request: ControlRequest) throws(ControlProtocolError) -> [UInt8] {
        do {
            var bytes = [UInt8](try encoder().encode(request))
            bytes.append(UInt8(ascii: "\n"))
            return bytes
        } catch {
            throw ControlProtocolError("cannot encode request: \(error)")
        }
    }

    /// The response as one JSON line, newline included. Never fails: a response that cannot be
    /// encoded (a non-finite number, say) becomes a failure response that says so.
    public static func encode(_ response: ControlResponse) -> [UInt8] {
        var data: Data
        do {
            data = try encoder().encode(response)
        } catch {
            let fallback = ControlResponse.failure("internal error: cannot encode the response: \(error)")
            data = (try? encoder().encode(fallback)) ?? Data(#"{"ok":false,"error":"internal error"}"#.utf8)
        }
        var bytes = [UInt8](data)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Decodes one request line (without or with its newline). The error message is what the
    /// daemon sends back in `ControlResponse.failure`.
    public static func decodeRequest(_ line: [UInt8]) throws(ControlProtocolError) -> ControlRequest {
        let data = Data(trimmed(line))
        if data.isEmpty { throw ControlProtocolError("malformed request: empty line (expected one JSON object)") }
        let decoder = JSONDecoder()
        let probe: VersionProbe
        do {
            probe = try decoder.decode(VersionProbe.self, from: data)
        } catch {
            throw ControlProtocolError("malformed request: \(describe(error))")
        }
        guard let version = probe.version else {
            throw ControlProtocolError("malformed request: missing key 'version'")
        }
        guard version == controlProtocolVersion else {
            throw ControlProtocolError(
                "unsupported protocol version \(version): userswitchd speaks version \(controlProtocolVersion); use the userswitchctl that came with this userswitchd")
        }
        do {
            return try decoder.decode(ControlRequest.self, from: data)
        } catch {
            throw ControlProtocolError("malformed request: \(describe(error))")
        }
    }

    /// Decodes one response line.
    public static func decodeResponse(_ line: [UInt8]) throws(ControlProtocolError) -> ControlResponse {
        let data = Data(trimmed(line))
        if data.isEmpty { throw ControlProtocolError("invalid response from userswitchd: empty line") }
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: data)
        } catch {
            throw ControlProtocolError("invalid response from userswitchd: \(describe(error))")
        }
    }

    private static func trimmed(_ line: [UInt8]) -> ArraySlice<UInt8> {
        var s = line[...]
        while let last = s.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { s = s.dropLast() }
        return s
    }

    /// A `DecodingError` in words, naming the key path (`command.addPort.vlan`).
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty { return "not valid JSON" }
            return "invalid value at '\(path(c.codingPath))': \(c.debugDescription)"
        case .keyNotFound(let key, let c):
            return "missing key '\(path(c.codingPath + [key]))'"
        case .typeMismatch(let type, let c):
            let at = c.codingPath.isEmpty ? "top level" : "'\(path(c.codingPath))'"
            return "wrong type at \(at): expected \(jsonTypeName(type))"
        case .valueNotFound(let type, let c):
            return "null at '\(path(c.codingPath))': expected \(jsonTypeName(type))"
        @unknown default:
            return "\(error)"
        }
    }

    private static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        case is Int.Type, is UInt32.Type, is UInt16.Type, is UInt64.Type, is Int32.Type: return "an integer"
        case is Double.Type: return "a number"
        default:
            let name = "\(type)"
            if name.hasPrefix("Dictionary") { return "an object" }
            if name.hasPrefix("Array") { return "an array" }
            return "\(name)"
        }
    }
}
