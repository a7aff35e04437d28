// LinkWatcher: follows rtnetlink link events so that a port whose interface vanished goes down at
// once, and re-attaches as soon as an interface of that name returns (the bridges also check once
// a second, so a missed event only delays this).

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SwitchIO
import Synchronization

final class LinkWatcher: @unchecked Sendable {
    let daemon: Daemon
    let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    init(daemon: Daemon, logger: Logger) {
        self.daemon = daemon
        self.logger = logger
    }

    func start() {
        let monitor: LinkMonitor
        do { monitor = try LinkMonitor() } catch {
            logger.warning("no netlink link events (\(error)); ports are checked once a second instead")
            done.signal()
            return
        }
        let t = Thread { [self] in
            var pfd = pollfd(fd: monitor.fileDescriptor, events: Int16(POLLIN), revents: 0)
            while !stopping.load(ordering: .acquiring) {
                if poll(&pfd, 1, 200) > 0 {
                    for event in monitor.drain() {
                        logger.debug("link \(event.name) \(event.kind)")
                        daemon.linkChanged(name: event.name)
                    }
                }
            }
            monitor.close()
            done.signal()
        }
        t.name = "userswitch-links"
        thread = t
        t.start()
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        done.wait()
    }
}
