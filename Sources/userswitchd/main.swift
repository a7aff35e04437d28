// userswitchd: the userswitch daemon.
//
// Threads: the main thread waits for signals; the control server accepts userswitchctl's
// requests on its own thread; a watcher thread follows netlink link events; each bridge forwards
// on a dataplane thread of its own (BridgeRunner). SIGTERM or SIGINT stops it cleanly: the control
// socket is removed, every dataplane thread is joined, rings are unmapped and the TAP devices the
// switch created are removed.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SwitchControl
import SwitchIO

// Exit statuses as sysexits(3) has them, so systemd (RestartPreventExitStatus) and scripts tell a
// wrong command line and a refused configuration from a crash.
let exitUsage: Int32 = 64   // EX_USAGE
let exitConfig: Int32 = 78  // EX_CONFIG

func usage(_ problem: String? = nil) -> Never {
    if let problem { FileHandle.standardError.write(Data("userswitchd: \(problem)\n".utf8)) }
    FileHandle.standardError.write(Data("""
    usage: userswitchd [--socket PATH] [--config PATH] [--spin-us N] [--log-level trace|debug|info|notice|warning|error|critical]
      --socket PATH   control socket (default: $USERSWITCH_SOCKET or \(defaultSocketPath))
      --config PATH   saved configuration, restored at start and saved after every change
                      (default: $USERSWITCH_CONFIG or \(defaultConfigPath))
      --spin-us N     microseconds a bridge's thread keeps polling after the last frame before it
                      sleeps (default \(DataplaneTuning.defaultSpinMicroseconds); 0 sleeps at once: less CPU, longer
                      round trips; see docs/performance.md)

    """.utf8))
    exit(problem == nil ? 0 : exitUsage)
}

/// The command line, parsed once before any thread starts.
struct DaemonOptions {
    var socket: String? = nil
    var config: String? = nil
    var logLevel = Logger.Level.info
    var spinMicroseconds = DataplaneTuning.defaultSpinMicroseconds

    static func parse(_ arguments: ArraySlice<String>) -> DaemonOptions {
        var o = DaemonOptions()
        var args = arguments
        while let a = args.popFirst() {
            switch a {
            case "--socket":
                guard let v = args.popFirst() else { usage("--socket needs a path") }
                o.socket = v
            case "--config":
                guard let v = args.popFirst() else { usage("--config needs a path") }
                o.config = v
            case "--log-level":
                guard let v = args.popFirst(), let l = Logger.Level(rawValue: v) else {
                    usage("--log-level needs one of trace, debug, info, notice, warning, error, critical")
                }
                o.logLevel = l
            case "--spin-us":
                guard let v = args.popFirst(), let n = UInt64(v), n <= 1_000_000 else {
                    usage("--spin-us needs a number of microseconds from 0 to 1000000")
                }
                o.spinMicroseconds = n
            case "-h", "--help":
                usage()
            default:
                usage("unknown argument '\(a)'")
            }
        }
        return o
    }
}

let options = DaemonOptions.parse(CommandLine.arguments.dropFirst())
let level = options.logLevel
LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = level
    return h
}
let logger = Logger(label: "userswitchd")

// Signals are taken synchronously by the main thread; every thread created after this inherits
// the mask. SIGPIPE is ignored so a client that hangs up costs an EPIPE, not the daemon.
signal(SIGPIPE, SIG_IGN)
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGTERM)
sigaddset(&signals, SIGINT)
pthread_sigmask(SIG_BLOCK, &signals, nil)

let daemon = Daemon(logger: logger, spinMicroseconds: options.spinMicroseconds)
// The saved configuration comes back before the socket is served, so no client ever sees a half
// restored switch; a corrupt file stops the daemon here (systemd shows the message).
let configStore = ConfigStore(path: resolveConfigPath(option: options.config))
do {
    try daemon.restore(from: configStore)
} catch {
    logger.critical("refusing to start: \(error.message)")
    FileHandle.standardError.write(Data("userswitchd: refusing to start: \(error.message)\n".utf8))
    exit(exitConfig)
}
let socketPath = resolveSocketPath(option: options.socket)
let server: ControlServer
do {
    server = try ControlServer(path: socketPath, handler: daemon, log: { logger.warning("control: \($0)") })
} catch {
    logger.critical("cannot serve the control socket: \(error)")
    exit(1)
}
let watcher = LinkWatcher(daemon: daemon, logger: logger)
watcher.start()
logger.info("userswitchd \(ProcessInfo.processInfo.processIdentifier) listening on \(socketPath)")

var received: Int32 = 0
sigwait(&signals, &received)
logger.info("signal \(received): stopping")
server.stop()
watcher.stop()
daemon.shutdown()
logger.info("stopped")
exit(0)
