// ConfigStore: the configuration file on disk (default /var/lib/userswitch/config.json).
//
// Saving must survive a crash or power loss at any instant with either the old or the new file in
// place, never a torn one. So a save writes the whole document to a temporary file in the same
// directory (rename is only atomic within one file system), fsyncs it, renames it over the old
// file, and fsyncs the directory so the rename itself is durable. A crash before the rename leaves
// the old file and a stray temporary file (removed by the next save); after it, the new file.
//
// Loading refuses anything it does not fully understand: an empty file, bad JSON (with line and
// column), an unknown key, a wrong type, a failed validation. The message names the file and the
// place in it, so the daemon can refuse to start instead of running with half a configuration.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

public let defaultConfigPath = "/var/lib/userswitch/config.json"

/// Config path in this order: the `--config` option, the `USERSWITCH_CONFIG` environment variable
/// (when set and not empty), `defaultConfigPath`.
public func resolveConfigPath(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let option { return option }
    if let e = environment["USERSWITCH_CONFIG"], !e.isEmpty { return e }
    return defaultConfigPath
}

public struct ConfigStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    private var directory: String {
        let d = (path as NSString).deletingLastPathComponent
        return d.isEmpty ? "." : d
    }

    private var temporaryPrefix: String { (path as NSString).lastPathComponent + ".tmp." }

    /// The saved configuration, nil when there is no file yet (a first start).
    public func load() throws(ConfigurationError) -> SwitchConfiguration? {
        let data: Data
        do {
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigurationError("\(path): cannot read: \(error.localizedDescription)")
        }
        return try ConfigStore.decode(data, source: path)
    }

    /// Decodes and validates a configuration document; errors start with `source`.
    public static func decode(_ data: Data, source: String) throws(ConfigurationError) -> SwitchConfiguration {
        guard data.contains(where: { !($0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09) }) else {
            throw ConfigurationError("\(source): the file is empty")
        }
        // Strict RFC 8259 first: Foundation accepts some non-JSON (trailing commas) and, on Linux,
        // says where nothing is wrong.
        if let p = JSONSyntax.firstProblem(in: data) {
            throw ConfigurationError("\(source): not valid JSON: line \(p.line), column \(p.column): \(p.message)")
        }
        let config: SwitchConfiguration
        do {
            config = try JSONDecoder().decode(SwitchConfiguration.self, from: data)
        } catch let e as DecodingError {
            throw ConfigurationError("\(source): \(describe(e))")
        } catch {
            throw ConfigurationError("\(source): \(error)")
        }
        do throws(ConfigurationError) {
            try config.validate()
        } catch {
            throw ConfigurationError("\(source): \(error.message)")
        }
        return config
    }

    /// The document as saved: sorted keys and indentation, so that it diffs well and reads well.
    public static func encode(_ config: SwitchConfiguration) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings and numbers cannot fail.
        var data = (try? encoder.encode(config)) ?? Data("{}".utf8)
        data.append(0x0a)
        return data
    }

    /// Writes atomically and durably (see the file's note). The directory is created (mode 0700)
    /// if missing; the file is mode 0600, since it names the host's guests and their addresses.
    public func save(_ config: SwitchConfiguration) throws(ConfigurationError) {
        let data = ConfigStore.encode(config)
        let dir = directory
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ConfigurationError("cannot create \(dir): \(error.localizedDescription)")
        }
        removeStaleTemporaryFiles()
        let temporary = "\(dir)/\(temporaryPrefix)\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigurationError("cannot create \(temporary): \(ConfigStore.errnoText())") }
        var failure: String? = nil
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = "cannot write \(temporary): \(ConfigStore.errnoText())"
                    return
                }
                offset += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = "cannot fsync \(temporary): \(ConfigStore.errnoText())" }
        if close(fd) != 0 && failure == nil { failure = "cannot close \(temporary): \(ConfigStore.errnoText())" }
        if let failure {
            unlink(temporary)
            throw ConfigurationError(failure)
        }
        guard rename(temporary, path) == 0 else {
            let text = ConfigStore.errnoText()
            unlink(temporary)
            throw ConfigurationError("cannot rename \(temporary) to \(path): \(text)")
        }
        // The rename is durable only once the directory entry is on disk.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw ConfigurationError("cannot open \(dir) to fsync it: \(ConfigStore.errnoText())") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw ConfigurationError("cannot fsync \(dir): \(ConfigStore.errnoText())") }
    }

    /// Temporary files of a save that crashed before its rename.
    private func removeStaleTemporaryFiles() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for n in names where n.hasPrefix(temporaryPrefix) { unlink("\(directory)/\(n)") }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    /// `bridges[0].ports[1].vlan: unknown VLAN mode 'acess'` rather than Foundation's wording.
    static func describe(_ error: DecodingError) -> String {
        func place(_ path: [any CodingKey]) -> String {
            var s = ""
            for k in path {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return s.isEmpty ? "top level" : s
        }
        switch error {
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty {
                // Syntax errors: Foundation's underlying error carries the line and column.
                let detail = c.underlyingError.map { ($0 as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\($0)" }
                return "not valid JSON" + (detail.map { ": \($0)" } ?? "")
            }
            return "\(place(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let key, let c):
            return "\(place(c.codingPath)): missing key '\(key.stringValue)'"
        case .typeMismatch(let type, let c):
            return "\(place(c.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let c):
            return "\(place(c.codingPath)): expected \(typeName(type)), found null"
        @unknown default:
            return "\(error)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is UInt32.Type, is UInt16.Type: return "a whole number"
        case is Bool.Type: return "true or false"
        default:
            let n = "\(type)"
            if n.hasPrefix("Array") { return "a list" }
            if n.hasPrefix("Dictionary") { return "an object" }
            return "a value of type \(n)"
        }
    }
}

/// Finds where a document stops being JSON, for the message Foundation does not give on Linux
/// ("not valid JSON" without a place). A small recursive-descent checker of RFC 8259 syntax.
enum JSONSyntax {
    struct Problem: Equatable { var line: Int; var column: Int; var message: String }

    static func firstProblem(in data: Data) -> Problem? {
        let b = [UInt8](data)
        var i = 0
        func problem(_ m: String) -> Problem {
            var line = 1, col = 1
            for k in 0..<min(i, b.count) { if b[k] == 0x0a { line += 1; col = 1 } else { col += 1 } }
            return Problem(line: line, column: col, message: m)
        }
        func ws() { while i < b.count, [0x20, 0x0a, 0x0d, 0x09].contains(b[i]) { i += 1 } }
        func found() -> String { i < b.count ? "'\(Character(Unicode.Scalar(b[i])))'" : "the end of the file" }
        func literal(_ s: String) -> Problem? {
            for c in s.utf8 { guard i < b.count, b[i] == c else { return problem("expected \(s)") }; i += 1 }
            return nil
        }
        func string() -> Problem? {
            i += 1
            while i < b.count {
                switch b[i] {
                case 0x22: i += 1; return nil
                case 0x5c: i += 2
                case 0..<0x20: return problem("control character in a string")
                default: i += 1
                }
            }
            return problem("unterminated string")
        }
        func number() -> Problem? {
            let start = i
            if i < b.count, b[i] == 0x2d { i += 1 }
            while i < b.count, (0x30...0x39).contains(b[i]) || [0x2e, 0x65, 0x45, 0x2b, 0x2d].contains(b[i]) { i += 1 }
            return i > start ? nil : problem("expected a value, found \(found())")
        }
        func value(_ depth: Int) -> Problem? {
            guard depth < 512 else { return problem("nested too deeply") }
            ws()
            guard i < b.count else { return problem("expected a value, found the end of the file") }
            switch b[i] {
            case 0x7b: // {
                i += 1; ws()
                if i < b.count, b[i] == 0x7d { i += 1; return nil }
                while true {
                    ws()
                    guard i < b.count, b[i] == 0x22 else { return problem("expected a key in quotes, found \(found())") }
                    if let p = string() { return p }
                    ws()
                    guard i < b.count, b[i] == 0x3a else { return problem("expected ':' after a key, found \(found())") }
                    i += 1
                    if let p = value(depth + 1) { return p }
                    ws()
                    if i < b.count, b[i] == 0x2c { i += 1; continue }
                    if i < b.count, b[i] == 0x7d { i += 1; return nil }
                    return problem("expected ',' or '}' in an object, found \(found())")
                }
            case 0x5b: // [
                i += 1; ws()
                if i < b.count, b[i] == 0x5d { i += 1; return nil }
                while true {
                    if let p = value(depth + 1) { return p }
                    ws()
                    if i < b.count, b[i] == 0x2c { i += 1; continue }
                    if i < b.count, b[i] == 0x5d { i += 1; return nil }
                    return problem("expected ',' or ']' in a list, found \(found())")
                }
            case 0x22: return string()
            case 0x74: return literal("true")
            case 0x66: return literal("false")
            case 0x6e: return literal("null")
            default: return number()
            }
        }
        if let p = value(0) { return p }
        ws()
        return i < b.count ? problem("unexpected \(found()) after the document") : nil
    }
}
