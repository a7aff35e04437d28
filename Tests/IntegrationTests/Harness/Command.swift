// Running programs from the integration tests: every wait is bounded.
//
// Output goes to a temporary file rather than a pipe, so a chatty child can never block on a full
// pipe while the test waits for it; a child that outlives its timeout is killed by pid.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct CommandResult {
    var status: Int32
    var output: String
    var timedOut: Bool
    var succeeded: Bool { status == 0 && !timedOut }
}

enum HarnessError: Error, CustomStringConvertible {
    case missingProgram(String)
    case failed(String)
    var description: String {
        switch self {
        case .missingProgram(let p): return "program not found: \(p)"
        case .failed(let m): return m
        }
    }
}

enum Command {
    /// Finds a program on PATH or in the system directories (root's sbin may be missing from PATH).
    static func path(of program: String) -> String? {
        if program.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"]
        for d in dirs where FileManager.default.isExecutableFile(atPath: d + "/" + program) {
            return d + "/" + program
        }
        return nil
    }

    static func temporaryFile(_ tag: String) -> URL {
        FileManager.default.temporaryDirectory
            .appendingPathComponent("usw-\(getpid())-\(tag)-\(UUID().uuidString.prefix(8))")
    }

    /// Starts `program` with its output (stdout and stderr) going to `outputFile`.
    static func start(_ program: String, _ arguments: [String], environment: [String: String] = [:],
                      outputFile: URL) throws -> Process {
        guard let exe = path(of: program) else { throw HarnessError.missingProgram(program) }
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let out = try FileHandle(forWritingTo: outputFile)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = out
        try p.run()
        try? out.close()
        return p
    }

    /// Waits up to `timeout` seconds for `process` to exit; true when it did.
    @discardableResult
    static func wait(_ process: Process, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { return false }
        process.waitUntilExit() // reaps and fills in the termination status
        return true
    }

    /// Stops a process we started: SIGTERM, then SIGKILL after `grace` seconds. Returns whether it
    /// exited within the grace period on its own (after SIGTERM).
    @discardableResult
    static func stop(_ process: Process, grace: Double = 5) -> Bool {
        guard process.isRunning else { process.waitUntilExit(); return true }
        kill(process.processIdentifier, SIGTERM)
        if wait(process, timeout: grace) { return true }
        kill(process.processIdentifier, SIGKILL)
        wait(process, timeout: 5)
        return false
    }

    /// Runs `program` to completion (killed after `timeout` seconds) and returns its output.
    @discardableResult
    static func run(_ program: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: Double = 20) throws -> CommandResult {
        let file = temporaryFile("out")
        defer { try? FileManager.default.removeItem(at: file) }
        let p = try start(program, arguments, environment: environment, outputFile: file)
        let finished = wait(p, timeout: timeout)
        if !finished {
            kill(p.processIdentifier, SIGKILL)
            wait(p, timeout: 5)
        }
        let output = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        return CommandResult(status: finished ? p.terminationStatus : -1, output: output, timedOut: !finished)
    }

    /// Runs a command that must succeed; throws with its output otherwise.
    @discardableResult
    static func must(_ program: String, _ arguments: [String], timeout: Double = 20) throws -> String {
        let r = try run(program, arguments, timeout: timeout)
        guard r.succeeded else {
            throw HarnessError.failed("\(program) \(arguments.joined(separator: " ")) -> "
                                      + (r.timedOut ? "timed out" : "status \(r.status)") + ": \(r.output)")
        }
        return r.output
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` seconds pass.
func eventually(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if try condition() { return true }
        usleep(50_000)
    } while Date() < deadline
    return try condition()
}
