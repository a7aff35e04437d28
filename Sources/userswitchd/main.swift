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

func usage() -> Never {
    FileHandle.standardError.write(Data("""
    usage: userswitchd [--socket PATH] [--config PATH] [--log-level trace|debug|info|notice|warning|error|critical]
      --socket PATH   control socket (default: $USERSWITCH_SOCKET or \(defaultSocketPath))
      --config PATH   saved configuration, restored at start and saved after every change
                      (default: $USERSWITCH_CONFIG or \(defaultConfigPath))

    """.utf8))
    exit(2)
}

var socketOption: String? = nil
var configOption: String? = nil
var level = Logger.Level.info
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--socket":
        guard let v = args.popFirst() else { usage() }
        socketOption = v
    case "--config":
        guard let v = args.popFirst() else { usage() }
        configOption = v
    case "--log-level":
        guard let v = args.popFirst(), let l = Logger.Level(rawValue: v) else { usage() }
        level = l
    case "-h", "--help":
        usage()
    default:
        FileHandle.standardError.write(Data("userswitchd: unknown argument '\(a)'\n".utf8))
        usage()
    }
}

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

let daemon = Daemon(logger: logger)
// The saved configuration comes back before the socket is served, so no client ever sees a half
// restored switch; a corrupt file stops the daemon here (systemd shows the message).
let configStore = ConfigStore(path: resolveConfigPath(option: configOption))
do {
    try daemon.restore(from: configStore)
} catch {
    logger.critical("refusing to start: \(error.message)")
    FileHandle.standardError.write(Data("userswitchd: refusing to start: \(error.message)\n".utf8))
    exit(1)
}
let socketPath = resolveSocketPath(option: socketOption)
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
