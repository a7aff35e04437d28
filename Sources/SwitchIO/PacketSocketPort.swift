// PacketSocketPort: a switch port on an existing Ethernet interface (Xen vifs, the NIC, veth in
// tests), read and written through AF_PACKET TPACKET_V2 rings mapped into our memory.
//
// The port is cut into three files: this one (options, ring geometry, socket setup, liveness and
// statistics), PacketSocketPort+Receive.swift (the RX ring and the long frames read from the
// socket's queue) and PacketSocketPort+Transmit.swift (the TX ring and its kicks). Each opens with
// its part of the design note.
//
// Design note: the kernel quirks this file handles, and where.
//
// - Rings, not syscalls (init). The port's socket carries an RX ring and a TX ring, mapped with one
//   mmap (RX ring first, then TX ring); frames longer than an RX slot wait on the socket's queue
//   (PACKET_COPY_THRESH, SO_RCVBUFFORCE; see "One RX socket" in PacketSocketPort+Receive.swift).
//   tp_status is shared with the kernel (written from softirq on another CPU): it is read with
//   acquire and written with release ordering (C shims CLinuxNet_load_acquire_u32 /
//   CLinuxNet_store_release_u32), so frame bytes and status never appear out of order on either
//   side. A second socket without rings, bound with protocol 0 (it receives nothing), sends the
//   long frames (see "Long frames" in PacketSocketPort+Transmit.swift): a socket with a TX ring
//   can only send from its ring.
// - Slot geometry (ringLayout). The kernel allocates each ring block as a power of two pages and
//   wastes the tail that does not hold a whole slot, so the block size is the smallest power of two
//   pages that wastes at most 1/32 of itself: 1 MiB blocks of 15 slots of 68 KiB, 4 KiB blocks of
//   2 slots of 2 KiB. The kernel requires tp_frame_nr == blocks * slots per block, so slot counts
//   round up to blocks.
// - Offloads (PACKET_VNET_HDR, init). Guests and veth hand us CHECKSUM_PARTIAL frames and GSO
//   super-frames; without the virtio_net_hdr the switch would forward frames with bad checksums
//   or frames larger than any MTU. Where the header sits in an RX slot: PacketSocketPort+Receive;
//   in a TX slot, and what happens to a frame the kernel refuses: PacketSocketPort+Transmit.
// - Own transmissions (init): PACKET_IGNORE_OUTGOING, so frames the switch sends on the interface
//   do not come back in on the same port; PACKET_QDISC_BYPASS, so TX goes straight to the driver.
// - Vanishing interfaces (checkError, flush): when the interface is deleted the kernel sets
//   SO_ERROR to ENETDOWN (poll reports POLLERR), forgets the bound ifindex (getsockname then says
//   -1) and send fails with ENXIO. Interface down gives ENETDOWN too but keeps the binding, and
//   traffic resumes when it comes back up, so only a lost binding or ENXIO makes the port dead.
//   A dead port receives and transmits nothing; the daemon closes it and re-attaches later.
//
// Threading: a port belongs to one thread at a time (the bridge's dataplane thread); nothing here
// locks. The one exception is the kick thread's send() on the TX ring, which shares only atomics
// with the port (TransmitKicker.Slot). It is Sendable only so that the daemon can open it on one
// thread and hand it over.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxNet
import SwitchCore

public final class PacketSocketPort: FramePort, @unchecked Sendable {
    /// Ring sizes. Slot counts round up to whole ring blocks (see `ringLayout`).
    public struct Options: Equatable, Sendable {
        /// Small RX ring slots (frames up to `smallFrameLimit` bytes the kernel can hold for us
        /// between two `receive` calls).
        public var rxFrames: Int
        /// Bytes per small RX slot, headers included; rounded up to a multiple of 16.
        public var rxFrameSize: Int
        /// Bulk RX slots, for frames longer than a small slot holds (GSO super-frames): how many
        /// such frames one batch can take (read from the socket's queue into our own memory; see
        /// "One RX socket" in PacketSocketPort+Receive.swift).
        public var bulkFrames: Int
        /// TX ring slots (frames queued and in flight).
        public var txFrames: Int
        /// Bytes per bulk RX slot and per TX slot, headers included; rounded up to a multiple of
        /// 16. The default holds a 64 KiB GSO super-frame.
        public var frameSize: Int
        /// Put the interface in promiscuous mode for as long as the socket lives
        /// (PACKET_MR_PROMISC; the kernel drops it when the socket closes). A switch port needs
        /// frames for every MAC; virtual interfaces pass them anyway, NICs do not.
        public var promiscuous: Bool
        /// Direct receive (PacketSocketPort+Receive.swift): a long untagged frame's body stays in
        /// the socket's queue until the egress port reads it into its own TX slot. Off (the
        /// default: measured slower, docs/performance.md): every long frame is read into a bulk
        /// slot at receive and copied at transmit.
        public var directReceive: Bool
        /// Long frames sent with sendmsg from where they are, not through the TX ring
        /// (PacketSocketPort+Transmit.swift, "Long frames"): the kernel copies them once into
        /// its own pages, where a ring slot's pages would be copied at a veth anyway
        /// (docs/performance.md, "Long frames by sendmsg").
        public var sendLongFrames: Bool

        public static let defaultFrameSize = 69632
        public static let defaultRxFrameSize = 2048

        /// 4096 small RX slots of 2 KiB, 64 bulk RX slots and 128 TX slots of 68 KiB: 22 MiB per
        /// port (docs/performance.md, "Ring memory per port"; TX must hold one whole batch of 128
        /// frames for one port).
        public init(rxFrames: Int = 4096, rxFrameSize: Int = Options.defaultRxFrameSize, bulkFrames: Int = 64,
                    txFrames: Int = 128, frameSize: Int = Options.defaultFrameSize, promiscuous: Bool = true,
                    directReceive: Bool = false, sendLongFrames: Bool = true) {
            self.rxFrames = rxFrames
            self.rxFrameSize = rxFrameSize
            self.bulkFrames = bulkFrames
            self.txFrames = txFrames
            self.frameSize = frameSize
            self.promiscuous = promiscuous
            self.directReceive = directReceive
            self.sendLongFrames = sendLongFrames
        }
    }

    /// How one ring is cut into blocks and slots.
    public struct RingLayout: Equatable, Sendable {
        public var blockSize: Int
        public var blockCount: Int
        public var frameSize: Int
        public var framesPerBlock: Int
        public var frameCount: Int { blockCount * framesPerBlock }
        public var byteCount: Int { blockCount * blockSize }
    }

    /// The smallest block of 2^n pages that holds `frameSize` slots with at most 1/32 waste (or,
    /// failing that up to 4 MiB, the least waste), and enough blocks for `frames` slots.
    public static func ringLayout(frames: Int, frameSize: Int, pageSize: Int) -> RingLayout {
        let align = Int(CLinuxNet_TPACKET_ALIGNMENT)
        let size = (max(frameSize, 1) + align - 1) / align * align
        var block = pageSize
        while block < size { block <<= 1 }
        var best = block
        var candidate = block
        while true {
            let waste = candidate % size
            if waste * 32 <= candidate { best = candidate; break }
            if waste * best < (best % size) * candidate { best = candidate }
            if candidate >= 4 << 20 { break }
            candidate <<= 1
        }
        let perBlock = best / size
        let blocks = max(1, (max(frames, 1) + perBlock - 1) / perBlock)
        return RingLayout(blockSize: best, blockCount: blocks, frameSize: size, framesPerBlock: perBlock)
    }

    /// The interface the port is bound to, and its index when the port was opened.
    public let interfaceName: String
    public let ifIndex: Int32
    /// The packet socket (RX ring, TX ring, and the queue of long frames): poll it for POLLIN
    /// (frames in the RX ring) and POLLERR (interface gone or down; then call `checkError()`).
    /// -1 once closed.
    public private(set) var fileDescriptor: Int32
    public let rxLayout: RingLayout
    /// The bulk slots: our own anonymous memory, cut like a ring, that long frames are read into.
    public let bulkLayout: RingLayout
    public let txLayout: RingLayout
    /// Frames up to this length (as the kernel holds them, without a stripped VLAN tag) fit the
    /// small RX ring; longer ones are read into bulk slots from the socket's queue.
    public let smallFrameLimit: Int
    /// What only this backend sees (FramePort.swift): runts, truncated frames, the kernel's ring-full
    /// drops, refused kicks and refused frames. Traffic itself is counted by the engine.
    public internal(set) var events = PortEvents()
    /// True once the interface is gone (or the port closed): receive and transmit do nothing.
    public internal(set) var isDead = false

    var ring: UnsafeMutableRawPointer?
    private let ringBytes: Int
    /// The bulk slots' memory (anonymous, pages only where a long frame was read).
    var bulkMemory: UnsafeMutableRawPointer?
    let rxSlots: FixedArray<UnsafeMutableRawPointer>
    let bulkSlots: FixedArray<UnsafeMutableRawPointer>
    let txSlots: FixedArray<UnsafeMutableRawPointer>
    let rxCount: Int
    let bulkCount: Int
    let txCount: Int
    /// Bytes of frame (after the vnet header) a TX slot holds.
    let txFrameCapacity: Int

    // RX: `rxNext` is the next slot to look at; `rxHeld` slots before it, starting at
    // `rxReleaseFrom`, are ours until releaseReceived().
    var rxNext = 0
    var rxReleaseFrom = 0
    var rxHeld = 0
    // TX: `txNext` is the next slot to fill. `txHead` follows the kernel's TX head: the oldest of
    // `txInFlight` slots we marked SEND_REQUEST that the kernel has not yet taken.
    var txNext = 0
    var txHead = 0
    var txInFlight = 0
    var kickPending = false
    /// Frames queued since the last flush, and whether one of them is a GSO super-frame.
    var queuedSinceFlush = 0
    var queuedGSO = false
    /// The bridge's kick thread and this port's registration with it (see `useKicker`).
    var kicker: TransmitKicker?
    var kickSlot: TransmitKicker.Slot?
    /// Bulk slots promised to the frames of the batch in flight (read now, or pending), and how
    /// many hold a frame read with recv since the last release.
    var copied = 0
    var bulkUsed = 0
    /// Direct receive: the batch's pending frames in the order their bodies wait in the socket's
    /// queue (batch index, bytes of the truncated copy in the RX slot); `pendingHead` is the next
    /// one to read; `pendingFlags` the batch's `deferred` array, cleared at release.
    let directReceive: Bool
    let sendLongFrames: Bool
    /// The socket long frames are sent from (-1: none, or closed).
    var longFrameSocket: Int32 = -1
    /// The vnet header of a long frame sent with sendmsg (its first iovec).
    let longFrameHeader: UnsafeMutableRawPointer
    let pendingIndex: FixedArray<Int32>
    let pendingSnapshot: FixedArray<Int32>
    var pendingCount = 0
    var pendingHead = 0
    var pendingFlags: UnsafeMutablePointer<UInt8>?
    /// Receive queue room for long frames (SO_RCVBUFFORCE).
    static let queueBytes: Int32 = 8 << 20

    /// Offset of the data (vnet header, then frame) in a TX slot: tp_hdrlen - sizeof(sockaddr_ll).
    static let txDataOffset = Int(CLinuxNet_TPACKET2_HDRLEN) - MemoryLayout<sockaddr_ll>.size
    static let vnetSize = VirtioNetHeader.size
    /// Frames up to this size (and without GSO) are sent with vnet hdr_len = their length, so the
    /// kernel copies them whole into the skb's head (see "TX copy" in PacketSocketPort+Transmit).
    static let linearCopyLimit = 2048
    /// Bytes of an RX slot in front of the frame, at most: tpacket2_hdr and sockaddr_ll aligned
    /// (80 for a 14-byte MAC header) plus the vnet header, the kernel's `macoff` being 76.
    static let rxHeadroom = 96

    /// Opens a port on the existing interface `name`. Throws with the failing step named in the
    /// error (no such interface, not Ethernet, ring setup refused...).
    public init(interface name: String, options: Options = Options()) throws(SystemError) {
        guard !name.isEmpty, name.utf8.count < Int(CLinuxNet_IFNAMSIZ), !name.utf8.contains(0x2F) else {
            throw SystemError("interface name \"\(name)\" is not a valid Linux interface name", errno: EINVAL)
        }
        let index = if_nametoindex(name)
        guard index != 0 else {
            let e = errno
            throw SystemError("no interface named \"\(name)\" (if_nametoindex)", errno: e == 0 ? ENODEV : e)
        }
        guard options.rxFrames > 0, options.bulkFrames > 0, options.txFrames > 0, options.rxFrameSize >= 256,
              options.frameSize > options.rxFrameSize else {
            throw SystemError("PacketSocketPort options for \(name): rxFrames, bulkFrames and txFrames must be "
                              + "positive, rxFrameSize at least 256 and frameSize above it (got \(options))",
                              errno: EINVAL)
        }
        interfaceName = name
        ifIndex = Int32(bitPattern: index)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        rxLayout = Self.ringLayout(frames: options.rxFrames, frameSize: options.rxFrameSize, pageSize: page)
        bulkLayout = Self.ringLayout(frames: options.bulkFrames, frameSize: options.frameSize, pageSize: page)
        txLayout = Self.ringLayout(frames: options.txFrames, frameSize: options.frameSize, pageSize: page)
        smallFrameLimit = rxLayout.frameSize - Self.rxHeadroom
        rxCount = rxLayout.frameCount
        bulkCount = bulkLayout.frameCount
        txCount = txLayout.frameCount
        ringBytes = rxLayout.byteCount + txLayout.byteCount
        txFrameCapacity = txLayout.frameSize - Self.txDataOffset - Self.vnetSize
        let unmapped = UnsafeMutableRawPointer(bitPattern: 0x1)!
        rxSlots = FixedArray(repeating: unmapped, count: rxCount)
        directReceive = options.directReceive
        sendLongFrames = options.sendLongFrames
        longFrameHeader = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        pendingIndex = FixedArray(repeating: 0, count: bulkLayout.frameCount)
        pendingSnapshot = FixedArray(repeating: 0, count: bulkLayout.frameCount)
        bulkSlots = FixedArray(repeating: unmapped, count: bulkCount)
        txSlots = FixedArray(repeating: unmapped, count: txCount)
        fileDescriptor = -1

        // From here on, a failure closes what was opened (deinit runs: all stored properties are set).
        let fd = try systemCall("socket(AF_PACKET) for \(name)") {
            socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        fileDescriptor = fd

        // Version, vnet header and reserve must be set before the rings exist (EBUSY after).
        try setOption(fd, CLinuxNet_PACKET_VERSION, CLinuxNet_TPACKET_V2, "PACKET_VERSION TPACKET_V2")
        try setOption(fd, CLinuxNet_PACKET_VNET_HDR, 1, "PACKET_VNET_HDR")
        try setOption(fd, CLinuxNet_PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING")
        try setOption(fd, CLinuxNet_PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS")
        try setRing(fd, CLinuxNet_PACKET_RX_RING, rxLayout, "PACKET_RX_RING")
        try setRing(fd, CLinuxNet_PACKET_TX_RING, txLayout, "PACKET_TX_RING")
        // Long frames wait on the socket's queue (see "One RX socket" in PacketSocketPort+Receive):
        // room for a burst of them (the kernel doubles the value and charges each skb's truesize).
        try setOption(fd, CLinuxNet_PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH")
        var bytes = Self.queueBytes
        _ = try systemCall("setsockopt(SO_RCVBUFFORCE \(bytes)) on \(name)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size))
        }

        let base = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SystemError("mmap of \(ringBytes) bytes of packet rings for \(name)", errno: errno)
        }
        ring = base
        Self.fillSlots(rxSlots.base, base: base, layout: rxLayout)
        Self.fillSlots(txSlots.base, base: base + rxLayout.byteCount, layout: txLayout)
        // The bulk slots are our own memory (pages only where a long frame was read), which recv
        // fills.
        let bulkBase = mmap(nil, bulkLayout.byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let bulkBase, bulkBase != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SystemError("mmap of \(bulkLayout.byteCount) bytes of the bulk RX slots for \(name)", errno: errno)
        }
        bulkMemory = bulkBase
        Self.fillSlots(bulkSlots.base, base: bulkBase, layout: bulkLayout)

        // Bind last, so that no frame reaches the socket before its rings are in place.
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = CLinuxNet_ETH_P_ALL.bigEndian
        address.sll_ifindex = ifIndex
        _ = try systemCall("bind(AF_PACKET) to \(name) (ifindex \(ifIndex))") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        if sendLongFrames {
            // A socket with a TX ring sends only from the ring (packet_sendmsg goes to tpacket_snd
            // whatever the message holds), so long frames go out of a second socket with no ring,
            // bound with protocol 0 so that it receives nothing.
            let long = try systemCall("socket(AF_PACKET) for long frames on \(name)") {
                socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
            longFrameSocket = long
            try setOption(long, CLinuxNet_PACKET_VNET_HDR, 1, "PACKET_VNET_HDR (long frames)")
            try setOption(long, CLinuxNet_PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS (long frames)")
            // Each frame is charged to the send buffer until the receiving side has taken it:
            // room for a burst of super-frames in flight.
            var sendBytes = Self.queueBytes
            _ = try systemCall("setsockopt(SO_SNDBUFFORCE \(sendBytes)) on \(name)") {
                setsockopt(long, SOL_SOCKET, SO_SNDBUFFORCE, &sendBytes, socklen_t(MemoryLayout<Int32>.size))
            }
            var longAddress = sockaddr_ll()
            longAddress.sll_family = UInt16(AF_PACKET)
            longAddress.sll_protocol = 0
            longAddress.sll_ifindex = ifIndex
            _ = try systemCall("bind(AF_PACKET) of the long-frame socket to \(name)") {
                withUnsafePointer(to: &longAddress) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(long, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
            }
        }
        let bound = try boundAddress()
        guard bound.sll_hatype == 1 /* ARPHRD_ETHER */ else {
            throw SystemError("interface \(name) is not Ethernet (ARPHRD type \(bound.sll_hatype))", errno: EPROTOTYPE)
        }
        if options.promiscuous {
            var request = packet_mreq()
            request.mr_ifindex = ifIndex
            request.mr_type = UInt16(CLinuxNet_PACKET_MR_PROMISC)
            _ = try systemCall("setsockopt(PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC) on \(name)") {
                setsockopt(fd, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_ADD_MEMBERSHIP, &request,
                           socklen_t(MemoryLayout<packet_mreq>.size))
            }
        }
    }

    deinit {
        close()
        longFrameHeader.deallocate()
    }

    /// Unmaps the rings and the bulk slots and closes the socket. Idempotent; the port is dead
    /// afterwards.
    public func close() {
        isDead = true
        useKicker(nil)
        if let ring {
            munmap(ring, ringBytes)
            self.ring = nil
        }
        if let bulkMemory {
            munmap(bulkMemory, bulkLayout.byteCount)
            self.bulkMemory = nil
        }
        if fileDescriptor >= 0 {
            _ = Glibc.close(fileDescriptor)
            fileDescriptor = -1
        }
        if longFrameSocket >= 0 {
            _ = Glibc.close(longFrameSocket)
            longFrameSocket = -1
        }
    }

    /// Lets `kicker` make this port's TX kicks when the traffic is dense (TransmitKicker's
    /// design note), or with nil makes them all inline again. Call from the thread that owns the
    /// port; `close` detaches.
    public func useKicker(_ newKicker: TransmitKicker?) {
        if let kicker, let kickSlot { kicker.detach(kickSlot) }
        kicker = nil
        kickSlot = nil
        guard let newKicker, fileDescriptor >= 0, !isDead else { return }
        kicker = newKicker
        kickSlot = newKicker.attach(fileDescriptor: fileDescriptor)
    }

    // MARK: liveness and statistics

    /// Reads (and clears) the socket's pending error (SO_ERROR), and checks that the socket is
    /// still bound to the interface. Call it when poll reports POLLERR. Returns nil when all is
    /// well; marks the port dead when the interface is gone.
    public func checkError() -> SystemError? {
        guard fileDescriptor >= 0 else {
            return SystemError("packet socket of \(interfaceName) is closed", errno: EBADF)
        }
        var pending: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fileDescriptor, SOL_SOCKET, SO_ERROR, &pending, &size) != 0 {
            return SystemError("getsockopt(SO_ERROR) on packet socket of \(interfaceName)", errno: errno)
        }
        // After NETDEV_UNREGISTER the kernel resets the socket's ifindex to -1.
        if let bound = try? boundAddress(), bound.sll_ifindex != ifIndex { isDead = true }
        if pending != 0 {
            return SystemError("packet socket of \(interfaceName)\(isDead ? " (interface gone)" : "")", errno: pending)
        }
        if isDead {
            return SystemError("interface \(interfaceName) (ifindex \(ifIndex)) is gone", errno: ENODEV)
        }
        return nil
    }

    /// Adds the kernel's RX drop count (ring full) since the last call to `events.rxRingFull`
    /// (PACKET_STATISTICS, which the kernel resets on every read).
    public func updateEvents() {
        guard fileDescriptor >= 0 else { return }
        var stats = tpacket_stats()
        var size = socklen_t(MemoryLayout<tpacket_stats>.size)
        if getsockopt(fileDescriptor, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_STATISTICS, &stats, &size) == 0 {
            events.rxRingFull &+= UInt64(stats.tp_drops)
        }
    }

    // MARK: setup helpers

    private func setOption(_ fd: Int32, _ option: Int32, _ value: Int32, _ what: String) throws(SystemError) {
        var v = value
        _ = try systemCall("setsockopt(\(what)) on \(interfaceName)") {
            setsockopt(fd, CLinuxNet_SOL_PACKET, option, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    private func setRing(_ fd: Int32, _ option: Int32, _ layout: RingLayout, _ what: String) throws(SystemError) {
        var request = tpacket_req(tp_block_size: UInt32(layout.blockSize), tp_block_nr: UInt32(layout.blockCount),
                                  tp_frame_size: UInt32(layout.frameSize), tp_frame_nr: UInt32(layout.frameCount))
        _ = try systemCall("setsockopt(\(what): \(layout.blockCount) x \(layout.blockSize)-byte blocks, "
                           + "\(layout.frameCount) x \(layout.frameSize)-byte frames) on \(interfaceName)") {
            setsockopt(fd, CLinuxNet_SOL_PACKET, option, &request, socklen_t(MemoryLayout<tpacket_req>.size))
        }
    }

    private func boundAddress() throws(SystemError) -> sockaddr_ll {
        var address = sockaddr_ll()
        var size = socklen_t(MemoryLayout<sockaddr_ll>.size)
        let fd = fileDescriptor
        _ = try systemCall("getsockname on packet socket of \(interfaceName)") {
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
            }
        }
        return address
    }

    private static func fillSlots(_ slots: UnsafeMutablePointer<UnsafeMutableRawPointer>, base: UnsafeMutableRawPointer,
                                  layout: RingLayout) {
        for i in 0..<layout.frameCount {
            slots[i] = base + (i / layout.framesPerBlock) * layout.blockSize + (i % layout.framesPerBlock) * layout.frameSize
        }
    }
}
