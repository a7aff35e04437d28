// DataplaneRunner: one bridge's or one router's dataplane thread (BridgeRunner, RouterRunner).
//
// The thread owns its engine outright (a BridgeEngine or a RouterEngine: the FDB or the
// neighbour cache, the port backends and every counter) and nothing else touches them, so the
// per-frame path needs no lock. The control plane
// reaches the engine by posting jobs to the runner's mailbox; the thread runs them between
// batches, which is what makes a configuration change atomic for the dataplane (a frame is
// forwarded wholly under the old configuration or wholly under the new one).
//
// The loop: run posted jobs (one atomic load when there are none), receive a batch from every up
// port and forward it, run the engine's housekeeping (the bridge ages its FDB once a second, the
// router runs its neighbour timers every 100 ms), and once a second check that each port's
// interface is still the one it was bound to. When no port had anything for a while (`spinNanoseconds`, 5 ms), the
// thread stops spinning and sleeps in poll() on the ports' descriptors and the mailbox's eventfd;
// while it spins without traffic it yields the CPU on every pass (see `yieldAfterNanoseconds`).

#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Dispatch
import Logging
import SwitchControl
import SwitchCore
import SwitchIO
import SwitchRouting
import Synchronization

/// What a runner needs of the engine it runs.
protocol RunnerEngine: AnyObject, SendableMetatype {
    var devices: [SwitchPort?] { get }
    var portNames: [String?] { get }
    var portIndices: [Int] { get }
    func portIndex(named name: String) -> Int?
    @discardableResult func pollAll(now: UInt32) -> Int
    @discardableResult func setDevice(_ i: Int, _ device: SwitchPort?) -> SwitchPort?
    @discardableResult func removePort(_ i: Int) throws -> SwitchPort?
    func updatePortEvents()
    /// Timers of the engine, run between batches every `housekeepingMilliseconds`.
    func housekeeping(now: UInt32)
    var housekeepingMilliseconds: UInt32 { get }
    /// Port `i`'s interface was looked at in the once-a-second check (the router follows its MTU).
    func portChecked(_ i: Int, interface name: String)
    /// Port `i`'s interface came back and its backend is attached again.
    func portAttached(_ i: Int)
}

extension BridgeEngine: RunnerEngine where Port == SwitchPort {
    func housekeeping(now: UInt32) { age(now: now) }
    var housekeepingMilliseconds: UInt32 { 1000 }
    func portChecked(_ i: Int, interface name: String) {}
    func portAttached(_ i: Int) {}
}

extension RouterEngine: RunnerEngine where Port == SwitchPort {
    var housekeepingMilliseconds: UInt32 { 100 }
    /// The egress MTU follows the interface's, also when it changes while the router runs.
    func portChecked(_ i: Int, interface name: String) {
        let m = Daemon.interfaceMTU(name)
        if m != portMTU(i) { setMTU(i, m) }
    }
    /// A guest port that comes up is announced on the uplink (gratuitous ARP), as when it is added.
    func portAttached(_ i: Int) { announce(port: i) }
}

/// An engine with an ebtables-style rule set (a bridge's chains, a router's FORWARD chain).
protocol FilteringEngine: RunnerEngine {
    var currentFilterRules: FilterRuleSet { get }
    var bridgeName: String { get set }
    func setFilter(_ rules: FilterRuleSet)
}

extension BridgeEngine: FilteringEngine where Port == SwitchPort {}
extension RouterEngine: FilteringEngine where Port == SwitchPort {}

typealias BridgeRunner = DataplaneRunner<BridgeEngine<SwitchPort>>
typealias RouterRunner = DataplaneRunner<RouterEngine<SwitchPort>>

/// The dataplane threads' timing, the same for every runner.
enum DataplaneTuning {
    /// `userswitchd --spin-us` default.
    static let defaultSpinMicroseconds: UInt64 = 5000
    /// The AF_PACKET ports' ring geometry (PacketSocketPort.Options' defaults).
    /// USERSWITCH_DIRECT_RECEIVE=1 in the environment turns direct receive on (long frames read
    /// at transmit straight into the egress TX slot; off by default: it measured slower), for
    /// side-by-side measurements and the tests that cover it.
    /// USERSWITCH_LONG_SEND=0 sends long frames through the TX ring like the others, instead of by
    /// sendmsg from the port's second socket, for side-by-side runs and the tests that cover it.
    static let portOptions = PacketSocketPort.Options(
        directReceive: getenv("USERSWITCH_DIRECT_RECEIVE").map { String(cString: $0) } == "1",
        sendLongFrames: getenv("USERSWITCH_LONG_SEND").map { String(cString: $0) } != "0")
    /// After this long without a frame, every empty pass yields the CPU (sched_yield), so that a
    /// traffic generator or guest sharing the core runs before the next pass: spinning keeps
    /// latency low without taking the core from the threads that produce the traffic.
    static let yieldAfterNanoseconds: UInt64 = 20_000
    /// A pass that moved fewer frames than this also yields: traffic is flowing but the producers
    /// (guests, the endpoints' TCP stacks) are the bottleneck, and on a machine where they share
    /// the bridge thread's cores, giving them the CPU is what makes more frames arrive. Full
    /// batches (a flood of small frames) never yield.
    static let yieldBelowFrames = 16
}

final class DataplaneRunner<Engine: RunnerEngine>: @unchecked Sendable {
    typealias Job = @Sendable (DataplaneRunner) -> Void

    let name: String
    let logger: Logger
    /// Touched only on the runner thread (or before it starts / after it stopped).
    let engine: Engine
    /// Port index -> how the port was asked for; runner thread only.
    var portTypes: [Int: PortType] = [:]

    private let jobs = Mutex<[Job]>([])
    private let pendingJobs = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let wakeFD: Int32
    private var thread: pthread_t?
    /// Makes the AF_PACKET ports' TX kicks when traffic is dense (SwitchIO/TransmitKicker.swift).
    let kicker: TransmitKicker
    private var pollSet: [pollfd] = []
    private var pollPorts: [Int] = []
    private var pollSetStale = true

    /// How long the loop keeps polling the rings after the last frame before it sleeps in poll():
    /// `userswitchd --spin-us` (default 5000 µs; 0 sleeps as soon as a pass finds nothing). Waking
    /// a thread from poll() costs 20-100 µs of round trip on this class of machine, so the window
    /// covers the gaps of request/response traffic (ping at 2 ms, TCP ACK clocks); an idle engine
    /// still sleeps after it, and while it spins without traffic it yields the CPU on every pass.
    let spinNanoseconds: UInt64

    init(name: String, engine: Engine, logger: Logger,
         spinMicroseconds: UInt64 = DataplaneTuning.defaultSpinMicroseconds) {
        self.name = name
        self.logger = logger
        self.engine = engine
        wakeFD = CLinuxNet_eventfd_nonblocking()
        kicker = TransmitKicker(notifyDescriptor: wakeFD)
        spinNanoseconds = spinMicroseconds &* 1000
    }

    /// Prepares a backend that joins a port of this bridge: AF_PACKET ports hand their kicks to
    /// the bridge's kick thread. Runner thread (or before the runner starts).
    func adopt(_ device: SwitchPort?) {
        if case .packet(let p) = device { p.useKicker(kicker) }
    }

    deinit { Glibc.close(wakeFD) }

    func start() {
        thread = DataplaneThread.start { self.run() }
        kicker.start()
    }

    /// Stops the thread, then closes every port backend (rings unmapped, TAP devices removed).
    func stop() {
        stopping.store(true, ordering: .releasing)
        wake()
        if let t = thread { pthread_join(t, nil) }
        thread = nil
        kicker.stop()
        for i in engine.portIndices {
            if let d = try? engine.removePort(i) { d.close() }
        }
    }

    /// Runs `job` on the runner thread, soon.
    func async(_ job: @escaping Job) {
        jobs.withLock { $0.append(job) }
        pendingJobs.add(1, ordering: .releasing)
        wake()
    }

    /// Runs `body` on the runner thread and returns its result.
    func sync<T>(_ body: @escaping (DataplaneRunner) -> T) -> T {
        let box = SyncBox<T>()
        nonisolated(unsafe) let body = body
        async { runner in
            box.value = body(runner)
            box.done.signal()
        }
        box.done.wait()
        return box.value!
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    private func runJobs() {
        let taken = jobs.withLock { j -> [Job] in
            let t = j
            j.removeAll(keepingCapacity: true)
            return t
        }
        pendingJobs.subtract(taken.count, ordering: .relaxed)
        for job in taken { job(self) }
        pollSetStale = true
    }

    private func run() {
        var lastHousekeeping = MonotonicClock.milliseconds()
        var lastCheck = lastHousekeeping
        let interval = engine.housekeepingMilliseconds
        var lastTraffic = MonotonicClock.nanoseconds()
        while !stopping.load(ordering: .acquiring) {
            if pendingJobs.load(ordering: .acquiring) > 0 { runJobs() }
            if kicker.takeErrorsRaised() { collectKickErrors() }
            let now = MonotonicClock.milliseconds()
            let n = engine.pollAll(now: now)
            if now &- lastHousekeeping >= interval {
                lastHousekeeping = now
                engine.housekeeping(now: now)
                if now &- lastCheck >= 1000 {
                    lastCheck = now
                    checkPorts()
                }
            }
            if n > 0 {
                lastTraffic = MonotonicClock.nanoseconds()
                if n < DataplaneTuning.yieldBelowFrames { sched_yield() }
                continue
            }
            kicker.noteIdle()
            let idle = MonotonicClock.nanoseconds() &- lastTraffic
            if idle < spinNanoseconds {
                if idle >= DataplaneTuning.yieldAfterNanoseconds { sched_yield() }
                continue
            }
            sleepUntilReadable()
            lastTraffic = MonotonicClock.nanoseconds()
        }
    }

    private func sleepUntilReadable() {
        if pollSetStale { rebuildPollSet() }
        let rc = poll(&pollSet, nfds_t(pollSet.count), 1000)
        guard rc > 0 else { return }
        if pollSet[0].revents != 0 {
            var v: UInt64 = 0
            _ = Glibc.read(wakeFD, &v, 8)
        }
        for k in 1..<pollSet.count where pollSet[k].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
            // The kernel reports an interface that went away as a socket error, but also one that
            // merely went down (ENETDOWN; the socket resumes when it comes back up). Reading the
            // error clears it; only a port whose interface is really gone goes down.
            let i = pollPorts[k - 1]
            guard let d = engine.devices[i] else { continue }
            let error = d.takeError()
            let current = Int32(bitPattern: if_nametoindex(engine.portNames[i] ?? ""))
            if d.isDead || (portTypes[i] == .system && current != d.ifIndex) {
                portLost(i, reason: error.map { "\($0)" } ?? "interface gone")
            } else if let error {
                logger.info("port \(engine.portNames[i] ?? "?"): \(error)", metadata: ["bridge": "\(name)"])
            }
        }
    }

    private func rebuildPollSet() {
        pollSet = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        pollPorts = []
        for i in engine.portIndices {
            guard let d = engine.devices[i] else { continue }
            pollSet.append(pollfd(fd: d.pollDescriptor, events: Int16(POLLIN), revents: 0))
            pollPorts.append(i)
        }
        pollSetStale = false
    }

    /// A send() of the kick thread failed on some port: each port handles its own (a refused
    /// frame is reclaimed and the frames behind it are kicked again at once).
    private func collectKickErrors() {
        for i in engine.portIndices {
            guard let d = engine.devices[i] else { continue }
            if d.collectKickErrors() { d.flush() }
        }
    }

    // MARK: ports whose interface comes and goes (runner thread)

    /// Once a second, and whenever netlink reports a link change: a port whose interface vanished
    /// goes down; a down port whose interface is back re-attaches.
    func checkPorts() {
        engine.updatePortEvents()
        for i in engine.portIndices where portTypes[i] == .system {
            guard let name = engine.portNames[i] else { continue }
            let current = Int32(bitPattern: if_nametoindex(name))
            if current != 0 { engine.portChecked(i, interface: name) }
            if let d = engine.devices[i] {
                if d.isDead || current != d.ifIndex { portLost(i, reason: "interface \(name) is gone") }
            }
            if engine.devices[i] == nil && current != 0 {
                do {
                    let p = try PacketSocketPort(interface: name, options: DataplaneTuning.portOptions)
                    adopt(.packet(p))
                    engine.setDevice(i, .packet(p))
                    engine.portAttached(i)
                    pollSetStale = true
                    logger.notice("port \(name) re-attached", metadata: ["bridge": "\(self.name)"])
                } catch {
                    logger.debug("port \(name) not re-attached yet: \(error)", metadata: ["bridge": "\(self.name)"])
                }
            }
        }
    }

    /// Closes a backend that left its port (the engine kept the events it counted).
    func retire(_ device: SwitchPort) {
        device.close()
    }

    func portLost(_ i: Int, reason: String) {
        guard let old = engine.setDevice(i, nil) else { return }
        retire(old)
        pollSetStale = true
        logger.warning("port \(engine.portNames[i] ?? "?") down: \(reason); it re-attaches when the interface returns",
                       metadata: ["bridge": "\(name)"])
    }
}

/// Carries a job's result back to the thread waiting in `BridgeRunner.sync`.
private final class SyncBox<T>: @unchecked Sendable {
    var value: T?
    let done = DispatchSemaphore(value: 0)
}
