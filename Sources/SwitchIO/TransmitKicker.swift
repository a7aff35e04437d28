// TransmitKicker: a second thread per bridge that makes the TX kicks (send() on a port's TX ring)
// while the bridge's dataplane thread goes on receiving and forwarding.
//
// Design note. A kick does much more than start a transmission. With qdisc bypass the kernel
// hands each frame to the driver inside the send() call, and for a veth, a vif's netback or any
// software device the receiving side's stack then runs in the softirq that follows, on the
// kicking thread: the destination host's TCP receive, the ACK it answers with, and when that ACK
// comes back through the switch, the sender's TCP transmit of the next segments. Profiled with one
// TCP stream without offloads through two namespaces (docs/performance.md, "TCP with tx off"),
// 52-64% of the bridge thread's time was inside send(), and the thread was the bottleneck while
// the machine still had idle time. The Linux bridge runs the same work in the sender's softirq
// and the receiver's copy in the receiving process, on two CPUs; ours ran it all on one thread.
//
// So under load the bridge thread only fills TX slots and raises a per-port request flag; this
// thread picks the flags up and makes the send() calls, and the kernel work behind them runs on
// whichever CPU the scheduler gives it. Handing over costs a cache line and, when this thread
// sleeps, a wake-up, which is worse than kicking inline for sparse traffic (a ping would wait for
// the wake-up: p50 rose from 21-32 to 58-77 µs in the first trial). Hence the policy
// (`shouldHandOver`): the bridge thread kicks inline while this thread sleeps, and wakes it only
// after `wakeAfterFrames` frames were kicked inline without an idle pass in between; once awake
// it spins `spinNanoseconds` after its last kick before it sleeps again. GSO super-frames stay
// inline (PacketSocketPort.flush): their 64 KiB were just copied into the TX slot on this CPU and
// the kernel reads them while they are still in its cache; handed over, TCP with offloads lost
// about 20%.
//
// Concurrency. The kernel serialises send() calls on one socket (pg_vec_lock), and a TX slot is
// only taken once its status says SEND_REQUEST, written with release order after the frame, so
// the bridge thread may fill slots and even kick inline while this thread kicks. Three things
// need more:
// - errors: this thread stores send()'s errno in the port's `Slot`, raises `takeErrorsRaised` and
//   wakes the bridge thread, which handles it as it handles its own (collectKickErrors: ENXIO
//   is an interface gone, a refused frame is reclaimed and the frames behind it kicked again);
// - reclaiming a slot the kernel refused (TP_STATUS_WRONG_FORMAT) moves queued frames between
//   slots, which must not race with a send(): the bridge thread sets `paused`, waits until `busy`
//   is clear, moves the frames, then clears `paused` (both sides use sequentially consistent
//   atomics, so each sees the other's flag);
// - closing: a port leaves (`detach`) before its socket is closed, and `detach` returns only once
//   this thread has started a pass without it, so it never sends on a reused descriptor.
//
// Lifetime: `start` once, `stop` once (the bridge's runner does both). The per-frame path has no
// lock and no allocation: one atomic store per kick, one atomic load of `sleeping`.

#if canImport(Glibc)
import Glibc
#endif
import CLinuxNet
import Synchronization

public final class TransmitKicker: @unchecked Sendable {
    /// One port's side of the hand-over. Created by `attach`.
    public final class Slot: @unchecked Sendable {
        public let fileDescriptor: Int32
        let requested = Atomic<Bool>(false)
        let paused = Atomic<Bool>(false)
        let busy = Atomic<Bool>(false)
        let error = Atomic<Int32>(0)

        init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

        /// The errno of the kicker's last failed send() on this port, cleared (0: none).
        /// A plain load first: every flush asks, and an exchange would take the cache line
        /// from the kick thread each time.
        public func takeError() -> Int32 {
            guard error.load(ordering: .relaxed) != 0 else { return 0 }
            return error.exchange(0, ordering: .sequentiallyConsistent)
        }

        /// Keeps the kicker from sending on this port until `resume()`: returns once no send()
        /// of the kicker's is in flight on it.
        public func pause() {
            paused.store(true, ordering: .sequentiallyConsistent)
            while busy.load(ordering: .sequentiallyConsistent) { sched_yield() }
        }

        public func resume() { paused.store(false, ordering: .sequentiallyConsistent) }
    }

    /// After this many frames kicked inline with no idle pass between them, the bridge thread
    /// wakes the kicker and hands its kicks over.
    public let wakeAfterFrames: Int
    /// How long the kicker keeps looking for requests after its last kick before it sleeps.
    public let spinNanoseconds: UInt64

    private let slots = Mutex<[Slot]>([])
    private let generation = Atomic<Int>(0)
    private let acknowledged = Atomic<Int>(0)
    private let sleeping = Atomic<Bool>(true)
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let wakeFD: Int32
    private var thread: pthread_t?
    /// Frames kicked inline since the bridge thread's last idle pass; bridge thread only.
    private var inlineFrames = 0
    /// Kicks this thread made (counted before each send(), so a frame seen on the far side was
    /// counted); read by tests through `kicks`.
    private let kickCount = Atomic<UInt64>(0)
    /// Set when a send() failed on some port since `takeErrorsRaised` last cleared it.
    private let errorRaised = Atomic<Bool>(false)
    /// An eventfd of the bridge thread's to write when a send() fails (-1: none), so that a
    /// sleeping bridge thread handles it at once (a refused frame holds up the frames behind it).
    private let notifyDescriptor: Int32

    public init(wakeAfterFrames: Int = 64, spinNanoseconds: UInt64 = 20_000, notifyDescriptor: Int32 = -1) {
        self.wakeAfterFrames = wakeAfterFrames
        self.spinNanoseconds = spinNanoseconds
        self.notifyDescriptor = notifyDescriptor
        wakeFD = CLinuxNet_eventfd_nonblocking()
    }

    /// True once after any send() of the kicker's failed: the bridge thread then asks each port
    /// to collect its error (PacketSocketPort.collectKickErrors). One relaxed load when false.
    @inline(__always)
    public func takeErrorsRaised() -> Bool {
        guard errorRaised.load(ordering: .relaxed) else { return false }
        return errorRaised.exchange(false, ordering: .sequentiallyConsistent)
    }

    deinit { Glibc.close(wakeFD) }

    /// send() calls this thread has made so far.
    public var kicks: UInt64 { kickCount.load(ordering: .relaxed) }

    public func start() {
        precondition(thread == nil, "TransmitKicker started twice")
        thread = DataplaneThread.start { self.run() }
        running.store(true, ordering: .sequentiallyConsistent)
    }

    /// Stops the thread; ports still attached are kicked inline from then on (their `flush`
    /// sees `isRunning` false).
    public func stop() {
        running.store(false, ordering: .sequentiallyConsistent)
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake()
        if let t = thread { pthread_join(t, nil) }
        thread = nil
    }

    /// Between `start` and `stop`.
    public var isRunning: Bool { running.load(ordering: .relaxed) }

    /// Registers a port's main socket. Any thread.
    public func attach(fileDescriptor: Int32) -> Slot {
        let slot = Slot(fileDescriptor: fileDescriptor)
        slots.withLock { $0.append(slot) }
        generation.add(1, ordering: .sequentiallyConsistent)
        return slot
    }

    /// Unregisters a port; on return the kicker holds no reference to its descriptor and makes no
    /// send() on it. Any thread but the kicker's.
    public func detach(_ slot: Slot) {
        slots.withLock { $0.removeAll { $0 === slot } }
        let g = generation.add(1, ordering: .sequentiallyConsistent).newValue
        guard isRunning else { return }
        while acknowledged.load(ordering: .sequentiallyConsistent) < g && isRunning {
            wake()
            usleep(50)
        }
    }

    /// The bridge thread asks, at a flush with `frames` frames queued on a port: hand the kick
    /// over (true; then call `request`) or make it inline (false)?
    @inline(__always)
    public func shouldHandOver(frames: Int) -> Bool {
        if !sleeping.load(ordering: .relaxed) { return true }
        inlineFrames &+= frames
        if inlineFrames < wakeAfterFrames || !isRunning { return false }
        inlineFrames = 0
        return true
    }

    /// The bridge thread had a pass without frames: the traffic is sparse again.
    @inline(__always)
    public func noteIdle() { inlineFrames = 0 }

    /// Asks the kicker to send() on the slot's socket soon, waking it if it sleeps.
    @inline(__always)
    public func request(_ slot: Slot) {
        slot.requested.store(true, ordering: .sequentiallyConsistent)
        if sleeping.load(ordering: .sequentiallyConsistent) { wake() }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    private func run() {
        var current: [Slot] = []
        var seen = -1
        var lastKick = MonotonicClock.nanoseconds()
        sleeping.store(false, ordering: .sequentiallyConsistent)
        while !stopping.load(ordering: .sequentiallyConsistent) {
            // A pass starts here: the previous one is over, so slots detached before this
            // generation are no longer in use.
            let g = generation.load(ordering: .sequentiallyConsistent)
            if g != seen {
                current = slots.withLock { $0 }
                seen = g
            }
            acknowledged.store(g, ordering: .sequentiallyConsistent)
            var kicked = false
            for slot in current where slot.requested.load(ordering: .relaxed) {
                guard slot.requested.exchange(false, ordering: .sequentiallyConsistent) else { continue }
                slot.busy.store(true, ordering: .sequentiallyConsistent)
                if slot.paused.load(ordering: .sequentiallyConsistent) {
                    // The bridge thread is reclaiming a refused slot; it asks again afterwards.
                    slot.busy.store(false, ordering: .sequentiallyConsistent)
                    continue
                }
                kickCount.add(1, ordering: .relaxed)
                let failed = send(slot.fileDescriptor, nil, 0, Int32(MSG_DONTWAIT)) < 0
                if failed { slot.error.store(errno, ordering: .sequentiallyConsistent) }
                slot.busy.store(false, ordering: .sequentiallyConsistent)
                if failed {
                    errorRaised.store(true, ordering: .sequentiallyConsistent)
                    if notifyDescriptor >= 0 {
                        var one: UInt64 = 1
                        _ = Glibc.write(notifyDescriptor, &one, 8)
                    }
                }
                kicked = true
            }
            let now = MonotonicClock.nanoseconds()
            if kicked {
                lastKick = now
                continue
            }
            if now &- lastKick < spinNanoseconds { continue }
            // Sleep. A request raised after the flag is set sees `sleeping` and writes the
            // eventfd; one raised before it is found by the second look.
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if !current.contains(where: { $0.requested.load(ordering: .sequentiallyConsistent) })
                && generation.load(ordering: .sequentiallyConsistent) == seen
                && !stopping.load(ordering: .sequentiallyConsistent) {
                var p = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, 1000)
            }
            var v: UInt64 = 0
            _ = Glibc.read(wakeFD, &v, 8)
            sleeping.store(false, ordering: .sequentiallyConsistent)
            lastKick = MonotonicClock.nanoseconds()
        }
        sleeping.store(true, ordering: .sequentiallyConsistent)
    }
}
