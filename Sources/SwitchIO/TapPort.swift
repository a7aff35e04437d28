// TapPort: a TAP device the switch creates and owns, the host stack's own port on a bridge (what
// the kernel bridge device `xenbr0` is today when it carries dom0's address).
//
// Design notes
// - The device is opened with IFF_VNET_HDR and TUNSETOFFLOAD (CSUM, TSO4/6, TSO_ECN, USO when the
//   kernel has it), so the host stack may hand us CHECKSUM_PARTIAL and GSO super-frames and we may
//   hand such frames back. Every read and write carries a 10-byte virtio_net_hdr in front of the
//   frame; the switch never segments or checksums, it moves that header along with the frame.
// - Memory is allocated once, in init: a receive pool and a transmit pool of fixed-size buffers
//   (64 KiB for the largest GSO frame plus room), mmap'd so that only touched pages cost memory.
//   In each buffer the header sits at offset 6 and the frame at offset 16, so frames are 16-byte
//   aligned. A received batch holds views into the receive pool.
// - I/O is batched through io_uring (liburing), one ring for each direction so that reaping one
//   never consumes the other's completions. Receive keeps a read posted for every free buffer; a
//   received batch is reaped from the completion queue without a system call, and
//   `releaseReceived()` posts the buffers again with one `io_uring_submit` for the lot. Transmit
//   copies each frame into a free transmit buffer (`FrameRewrite.copy`, which does the VLAN tag
//   push/pop), and `flush()` submits one write per frame with one `io_uring_submit`; finished writes
//   are reaped lazily, also without a system call.
// - Cost to know: every posted read waits on the device's wait queue, and the kernel wakes them all
//   for each arriving frame (all but the first find the queue empty and wait again), so the number
//   of receive buffers trades burst absorption against wake-up work; 64 is a middle. Multishot
//   reads with provided buffers (Linux 6.7) would remove this; liburing 2.3 here predates them.
// - Reads and writes are single contiguous buffers (header then frame), not two-element iovecs: the
//   header is written right in front of the frame in the same buffer, which saves the iovec array.
// - When io_uring is unavailable (kernel.io_uring_disabled, seccomp, old kernel) or not wanted, the
//   port falls back to a non-blocking descriptor and plain read()/write() loops until EAGAIN.
// - Which descriptor to poll: in io_uring mode the device descriptor must stay blocking (a read
//   posted on an O_NONBLOCK file completes at once with EAGAIN instead of waiting), and its data is
//   consumed by the posted reads, so the daemon polls the receive ring's descriptor, which is
//   readable when completions are waiting. In fallback mode it polls the device descriptor.
//   `fileDescriptor` is the right one in either mode.
// - Kernel quirks handled here: posted reads hold a reference to the device file, so `close()`
//   cancels them and waits for the cancellations before closing the device (otherwise the device
//   would outlive `close()`); a read fails with EBADFD once the device is gone (its namespace was
//   deleted), after which the port stops reposting reads instead of spinning; reads cancelled
//   because the thread that posted them exited are simply posted again.
// - Single consumer: one thread calls receive/releaseReceived, one (may be the same) calls
//   transmit/flush. Not thread-safe beyond that; Sendable only so that the daemon can hand the
//   port to the thread that runs its bridge.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxNet
import CURing
import SwitchCore

public final class TapPort: FramePort, @unchecked Sendable {
    /// Bytes of every buffer in both pools. The frame area (`bufferSize - frameOffset`) holds a
    /// 64 KiB GSO frame plus its Ethernet and VLAN headers.
    public static let bufferSize = 65536 + 4096
    static let headerOffset = 6
    static let frameOffset = headerOffset + VirtioNetHeader.size

    /// The interface name the kernel gave the device.
    public let name: String
    /// The interface's MAC address (the one asked for, or the random one the kernel chose).
    public let macAddress: MACAddress
    /// The kernel's index of the interface, read when it was created (a move to another network
    /// namespace may change it there).
    public let ifIndex: Int32
    /// The descriptor to poll for POLLIN before `receive`: the receive ring in io_uring mode, the
    /// device in fallback mode (see the design notes). -1 after `close()`.
    public var fileDescriptor: Int32 {
        if isClosed { return -1 }
        return usesIOUring ? rxRing.pointee.ring_fd : fd
    }
    /// The TAP device's own descriptor (from /dev/net/tun); not the one to poll in io_uring mode.
    public var deviceDescriptor: Int32 { fd }
    /// Whether I/O goes through io_uring (false: the read()/write() fallback).
    public let usesIOUring: Bool
    /// Why io_uring is not used, when it was asked for and could not be set up.
    public let ioUringUnavailableReason: SystemError?
    /// True once a read reported the device gone (EBADFD): the port receives nothing more.
    public private(set) var deviceGone = false
    /// What only this backend sees (FramePort.swift): failed reads and writes. Traffic itself is
    /// counted by the engine.
    public internal(set) var events = PortEvents()

    private var fd: Int32
    private var isClosed = false

    private let rxCount: Int
    private let txCount: Int
    private let rxPool: UnsafeMutableRawPointer
    private let txPool: UnsafeMutableRawPointer

    // io_uring state (rings are allocated in both modes, initialised only in io_uring mode).
    private let rings: FixedArray<io_uring>
    private var rxRing: UnsafeMutablePointer<io_uring> { rings.base }
    private var txRing: UnsafeMutablePointer<io_uring> { rings.base + 1 }
    private let cqes: FixedArray<UnsafeMutablePointer<io_uring_cqe>?>
    private let cqeCapacity: Int
    /// Reads posted to the kernel and not yet reaped.
    private var readsInFlight = 0
    /// Receive buffers handed out in the current batch, to post again on release.
    private let held: FixedArray<Int32>
    private var heldCount = 0
    /// Receive buffers whose read must be posted again (errors, cancellations).
    private var needsSubmit = false

    // Transmit state: a stack of free buffers and the list queued since the last flush.
    private let freeTx: FixedArray<Int32>
    private var freeTxCount: Int
    private let pendingTx: FixedArray<Int32>
    private let pendingLength: FixedArray<UInt32>
    private var pendingCount = 0

    /// Creates the TAP device and brings it up.
    /// - Parameters:
    ///   - name: interface name, or a pattern such as "ustap%d", or "" to let the kernel choose.
    ///   - macAddress: the MAC to give the interface (nil: keep the kernel's random one).
    ///   - mtu: the MTU to set (nil: the kernel's default, 1500).
    ///   - receiveBuffers: frames that can be in flight or held in a batch at once on receive.
    ///   - transmitBuffers: frames that can be queued between flushes.
    ///   - useIOUring: false forces the read()/write() fallback.
    /// - Throws: `SystemError` naming the step that failed (open, TUNSETIFF, ...).
    public init(name: String = "", macAddress: MACAddress? = nil, mtu: Int? = nil,
                receiveBuffers: Int = 64, transmitBuffers: Int = 256,
                useIOUring: Bool = true) throws(SystemError) {
        precondition(receiveBuffers > 0 && receiveBuffers <= 4096)
        precondition(transmitBuffers > 0 && transmitBuffers <= 4096)
        rxCount = receiveBuffers
        txCount = transmitBuffers

        // Rings first: whether they exist decides whether the device descriptor is non-blocking.
        rings = FixedArray(repeating: io_uring(), count: 2)
        let rxRing = rings.base, txRing = rings.base + 1
        var reason: SystemError? = nil
        var ringsReady = false
        if useIOUring {
            let r1 = io_uring_queue_init(UInt32(receiveBuffers), rxRing, 0)
            if r1 < 0 {
                reason = SystemError("io_uring_queue_init (receive ring)", errno: -r1)
            } else {
                let r2 = io_uring_queue_init(UInt32(transmitBuffers), txRing, 0)
                if r2 < 0 {
                    io_uring_queue_exit(rxRing)
                    reason = SystemError("io_uring_queue_init (transmit ring)", errno: -r2)
                } else {
                    ringsReady = true
                }
            }
        }
        usesIOUring = ringsReady
        ioUringUnavailableReason = reason

        cqeCapacity = max(receiveBuffers, transmitBuffers)
        cqes = FixedArray(repeating: nil, count: cqeCapacity)
        held = FixedArray(repeating: 0, count: receiveBuffers)
        freeTx = FixedArray(count: transmitBuffers) { Int32(transmitBuffers - 1 - $0) }
        freeTxCount = transmitBuffers
        pendingTx = FixedArray(repeating: 0, count: transmitBuffers)
        pendingLength = FixedArray(repeating: 0, count: transmitBuffers)

        let device: (fd: Int32, name: String, mac: MACAddress)
        do throws(SystemError) {
            rxPool = try Self.mapPool(count: receiveBuffers, what: "receive")
            do throws(SystemError) {
                txPool = try Self.mapPool(count: transmitBuffers, what: "transmit")
            } catch {
                munmap(rxPool, receiveBuffers * Self.bufferSize)
                throw error
            }
            do throws(SystemError) {
                device = try Self.openDevice(name: name, macAddress: macAddress, mtu: mtu,
                                             nonBlocking: !ringsReady)
            } catch {
                munmap(rxPool, receiveBuffers * Self.bufferSize)
                munmap(txPool, transmitBuffers * Self.bufferSize)
                throw error
            }
        } catch {
            if ringsReady {
                io_uring_queue_exit(rxRing)
                io_uring_queue_exit(txRing)
            }
            throw error
        }
        fd = device.fd
        self.name = device.name
        self.macAddress = device.mac
        ifIndex = Int32(bitPattern: if_nametoindex(device.name))

        if usesIOUring {
            for i in 0..<receiveBuffers { postRead(Int32(i)) }
            io_uring_submit(rxRing)
        }
    }

    deinit {
        close()
        munmap(rxPool, rxCount * Self.bufferSize)
        munmap(txPool, txCount * Self.bufferSize)
    }

    /// Removes the device (closing the last descriptor of a non-persistent TAP deletes it) and
    /// frees the rings. Idempotent; also done by deinit. Buffers stay mapped until deinit, so views
    /// from the last batch remain readable.
    public func close() {
        if isClosed { return }
        isClosed = true
        if usesIOUring {
            cancelPostedReads()
            reapTransmitted()
            io_uring_queue_exit(rxRing)
            io_uring_queue_exit(txRing)
        }
        _ = Glibc.close(fd)
        fd = -1
        heldCount = 0
        pendingCount = 0
    }

    // MARK: FramePort

    /// Fills `batch` with received frames, each with its virtio_net_hdr in `batch.vnet`. Frames of
    /// a previous batch not yet released are released first.
    public func receive(into batch: PacketBatch) -> Int {
        batch.count = 0
        if isClosed { return 0 }
        if heldCount > 0 { releaseReceived() }
        return usesIOUring ? receiveFromRing(into: batch) : receiveByRead(into: batch)
    }

    public func releaseReceived() {
        guard usesIOUring, !isClosed else { heldCount = 0; return }
        for i in 0..<heldCount { postRead(held[i]) }
        heldCount = 0
        if needsSubmit {
            io_uring_submit(rxRing)
            needsSubmit = false
        }
    }

    /// Copies each entry's frame into a free transmit buffer (tag rewritten); each entry's outcome
    /// goes to `status`: `.ringFull` once every buffer is taken, `.oversize` for a frame larger
    /// than a buffer, `.error` once the port is closed.
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>) -> Int {
        if count <= 0 { return 0 }
        if isClosed {
            status.update(repeating: .error, count: count)
            return 0
        }
        if usesIOUring { reapTransmitted() }
        var queued = 0
        let frameCapacity = Self.bufferSize - Self.frameOffset
        for e in 0..<count {
            guard freeTxCount > 0 else {
                (status + e).update(repeating: .ringFull, count: count - e)
                break
            }
            let entry = entries[e]
            let f = Int(entry.frame)
            let slot = freeTx[freeTxCount - 1]
            let base = txPool + Int(slot) * Self.bufferSize
            let length = Int(batch.lengths[f])
            let written = FrameRewrite.copy(from: batch.frames[f], length: length,
                                            tagLength: Int(batch.info[f].tagLength), tci: entry.tci,
                                            into: base + Self.frameOffset, capacity: frameCapacity)
            if written < 0 {
                status[e] = .oversize
                continue
            }
            batch.vnet[f].shifted(by: written - length).store(to: base + Self.headerOffset)
            freeTxCount -= 1
            pendingTx[pendingCount] = slot
            pendingLength[pendingCount] = UInt32(written + VirtioNetHeader.size)
            pendingCount += 1
            status[e] = .queued
            queued += 1
        }
        return queued
    }

    public func updateEvents() {}

    public func flush() {
        if isClosed || pendingCount == 0 { return }
        if usesIOUring {
            for i in 0..<pendingCount {
                // The transmit ring has an entry for every transmit buffer, so a slot is always there.
                guard let sqe = io_uring_get_sqe(txRing) else { break }
                let slot = pendingTx[i]
                io_uring_prep_write(sqe, fd, txPool + Int(slot) * Self.bufferSize + Self.headerOffset,
                                    pendingLength[i], 0)
                io_uring_sqe_set_data64(sqe, UInt64(UInt32(bitPattern: slot)))
            }
            pendingCount = 0
            io_uring_submit(txRing)
            // Writes to a TAP device complete during submission; free their buffers now.
            reapTransmitted()
        } else {
            for i in 0..<pendingCount {
                let slot = pendingTx[i]
                let p = txPool + Int(slot) * Self.bufferSize + Self.headerOffset
                let n = Int(pendingLength[i])
                var r: Int
                repeat { r = write(fd, p, n) } while r < 0 && errno == EINTR
                if r != n { events.txSendErrors &+= 1 }
                freeTx[freeTxCount] = slot
                freeTxCount += 1
            }
            pendingCount = 0
        }
    }

    // MARK: io_uring paths

    @inline(__always)
    private func postRead(_ index: Int32) {
        guard !deviceGone, let sqe = io_uring_get_sqe(rxRing) else { return }
        io_uring_prep_read(sqe, fd, rxPool + Int(index) * Self.bufferSize + Self.headerOffset,
                           UInt32(Self.bufferSize - Self.headerOffset), 0)
        io_uring_sqe_set_data64(sqe, UInt64(UInt32(bitPattern: index)))
        readsInFlight += 1
        needsSubmit = true
    }

    private func receiveFromRing(into batch: PacketBatch) -> Int {
        let want = min(batch.capacity, rxCount)
        var got = 0
        let header = VirtioNetHeader.size
        while got < want {
            let n = Int(io_uring_peek_batch_cqe(rxRing, cqes.base, UInt32(want - got)))
            if n == 0 { break }
            for i in 0..<n {
                let cqe = cqes[i].unsafelyUnwrapped
                let index = Int32(truncatingIfNeeded: cqe.pointee.user_data)
                let res = Int(cqe.pointee.res)
                readsInFlight -= 1
                if res > header {
                    let base = rxPool + Int(index) * Self.bufferSize
                    batch.frames[got] = base + Self.frameOffset
                    batch.lengths[got] = UInt32(res - header)
                    batch.vnet[got] = VirtioNetHeader.load(from: base + Self.headerOffset)
                    got += 1
                    held[heldCount] = index
                    heldCount += 1
                } else {
                    if res == -Int(EBADFD) { deviceGone = true }
                    if res != -Int(ECANCELED) { events.rxErrors &+= 1 }
                    postRead(index)
                }
            }
            io_uring_cq_advance(rxRing, UInt32(n))
        }
        batch.count = got
        if needsSubmit && heldCount == 0 {
            // Only failed reads were reaped: post them again now, there is no release to wait for.
            io_uring_submit(rxRing)
            needsSubmit = false
        }
        return got
    }

    private func reapTransmitted() {
        while true {
            let n = Int(io_uring_peek_batch_cqe(txRing, cqes.base, UInt32(cqeCapacity)))
            if n == 0 { return }
            for i in 0..<n {
                let cqe = cqes[i].unsafelyUnwrapped
                let res = Int(cqe.pointee.res)
                if res <= VirtioNetHeader.size { events.txSendErrors &+= 1 }
                freeTx[freeTxCount] = Int32(truncatingIfNeeded: cqe.pointee.user_data)
                freeTxCount += 1
            }
            io_uring_cq_advance(txRing, UInt32(n))
        }
    }

    /// Cancels every posted read and waits (at most about a second) until each has completed, so
    /// that no request still holds the device file when the descriptor is closed.
    private func cancelPostedReads() {
        if needsSubmit { io_uring_submit(rxRing); needsSubmit = false }
        guard readsInFlight > 0, let sqe = io_uring_get_sqe(rxRing) else { return }
        let cancelTag = UInt64.max
        io_uring_prep_cancel_fd(sqe, fd, UInt32(IORING_ASYNC_CANCEL_ALL))
        io_uring_sqe_set_data64(sqe, cancelTag)
        io_uring_submit(rxRing)
        var cancelSeen = false
        var timeouts = 0
        while (readsInFlight > 0 || !cancelSeen) && timeouts < 10 {
            var ts = __kernel_timespec(tv_sec: 0, tv_nsec: 100_000_000)
            var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
            let r = io_uring_wait_cqe_timeout(rxRing, &cqe, &ts)
            if r < 0 {
                if r == -ETIME { timeouts += 1; continue }
                if r == -EINTR { continue }
                return
            }
            guard let c = cqe else { continue }
            if c.pointee.user_data == cancelTag { cancelSeen = true } else { readsInFlight -= 1 }
            io_uring_cqe_seen(rxRing, c)
        }
    }

    // MARK: fallback path

    private func receiveByRead(into batch: PacketBatch) -> Int {
        let want = min(batch.capacity, rxCount)
        var got = 0
        let header = VirtioNetHeader.size
        while got < want && !deviceGone {
            let base = rxPool + got * Self.bufferSize
            let r = read(fd, base + Self.headerOffset, Self.bufferSize - Self.headerOffset)
            if r < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { break }
                if e == EBADFD { deviceGone = true }
                events.rxErrors &+= 1
                break
            }
            guard r > header else { events.rxErrors &+= 1; continue }
            batch.frames[got] = base + Self.frameOffset
            batch.lengths[got] = UInt32(r - header)
            batch.vnet[got] = VirtioNetHeader.load(from: base + Self.headerOffset)
            got += 1
        }
        batch.count = got
        return got
    }

    // MARK: setup

    private static func mapPool(count: Int, what: String) throws(SystemError) -> UnsafeMutableRawPointer {
        let p = mmap(nil, count * bufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else {
            throw SystemError("mmap \(what) buffer pool (\(count) x \(bufferSize) bytes)", errno: errno)
        }
        return p
    }

    /// Opens /dev/net/tun, makes the TAP device with the vnet header and offloads, sets MAC and MTU
    /// and brings the link up. Closes the descriptor again on any failure.
    private static func openDevice(name: String, macAddress: MACAddress?, mtu: Int?,
                                   nonBlocking: Bool) throws(SystemError) -> (fd: Int32, name: String, mac: MACAddress) {
        guard name.utf8.count < Int(CLinuxNet_IFNAMSIZ) else {
            throw SystemError("TAP interface name '\(name)' is longer than 15 bytes", errno: EINVAL)
        }
        let fd = try systemCall("open /dev/net/tun") {
            open("/dev/net/tun", O_RDWR | O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0))
        }
        var ok = false
        defer { if !ok { _ = Glibc.close(fd) } }

        var nameBuffer = [CChar](repeating: 0, count: Int(CLinuxNet_IFNAMSIZ))
        _ = try systemCall("TUNSETIFF '\(name)' (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR)") {
            CLinuxNet_tap_attach(fd, name, &nameBuffer)
        }
        let actual = nameBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        _ = try systemCall("TUNSETVNETHDRSZ \(VirtioNetHeader.size) on \(actual)") {
            CLinuxNet_tap_set_vnet_header_size(fd, Int32(VirtioNetHeader.size))
        }
        let tso = CLinuxNet_TUN_F_CSUM | CLinuxNet_TUN_F_TSO4 | CLinuxNet_TUN_F_TSO6 | CLinuxNet_TUN_F_TSO_ECN
        if CLinuxNet_tap_set_offload(fd, tso | CLinuxNet_TUN_F_USO4 | CLinuxNet_TUN_F_USO6) != 0 {
            // Kernels before 6.2 do not know USO and refuse the whole set.
            _ = try systemCall("TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN on \(actual)") {
                CLinuxNet_tap_set_offload(fd, tso)
            }
        }

        let sock = try systemCall("socket(AF_INET, SOCK_DGRAM) for interface ioctls") {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        defer { _ = Glibc.close(sock) }
        if let macAddress {
            var bytes = macAddress.bytes
            _ = try systemCall("SIOCSIFHWADDR \(macAddress) on \(actual)") {
                CLinuxNet_tap_set_mac(sock, actual, &bytes)
            }
        }
        if let mtu {
            _ = try systemCall("SIOCSIFMTU \(mtu) on \(actual)") {
                CLinuxNet_tap_set_mtu(sock, actual, Int32(clamping: mtu))
            }
        }
        var flags: Int16 = 0
        _ = try systemCall("SIOCGIFFLAGS on \(actual)") { CLinuxNet_tap_get_flags(sock, actual, &flags) }
        _ = try systemCall("SIOCSIFFLAGS IFF_UP on \(actual)") {
            CLinuxNet_tap_set_flags(sock, actual, flags | Int16(CLinuxNet_IFF_UP))
        }
        var mac = [UInt8](repeating: 0, count: 6)
        _ = try systemCall("SIOCGIFHWADDR on \(actual)") { CLinuxNet_tap_get_mac(sock, actual, &mac) }
        ok = true
        return (fd, actual, MACAddress(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]))
    }
}
