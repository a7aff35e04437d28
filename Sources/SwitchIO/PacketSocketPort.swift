// PacketSocketPort: a switch port on an existing Ethernet interface (Xen vifs, the NIC, veth in
// tests), read and written through AF_PACKET TPACKET_V2 rings mapped into our memory.
//
// Design note: the kernel quirks this file handles, and where.
//
// - Rings, not syscalls (init, receive, transmit). The port's socket carries an RX ring and a TX
//   ring, mapped with one mmap (RX ring first, then TX ring). `receive` walks RX slots whose
//   tp_status has TP_STATUS_USER and enters the kernel only for a frame longer than a slot (see
//   "One RX socket"); `releaseReceived` hands them back. `transmit` fills TX slots and marks them
//   TP_STATUS_SEND_REQUEST; `flush` makes one send(fd, NULL, 0, MSG_DONTWAIT) for the lot, or hands
//   that kick to the bridge's kick thread (TransmitKicker.swift: the send runs the receiving side's
//   stack, which is better done beside the bridge thread). tp_status is shared with the kernel
//   (written from softirq on another CPU): it is read with acquire and written with release
//   ordering (C shims CLinuxNet_load_acquire_u32 / CLinuxNet_store_release_u32), so frame bytes and
//   status never appear out of order on either side.
// - One RX socket, long frames through its queue (the default). A TPACKET_V2 slot has one fixed
//   size, and a slot must hold a GSO super-frame (64 KiB plus headers), so a ring of such slots
//   holds few frames for its memory: 270 slots of 68 KiB (18 MiB) overflowed whenever the bridge
//   thread was off the CPU for a scheduler slice during a burst of small or MTU-sized frames (RFC
//   2889 trials, TCP without offloads). TPACKET_V3 packs frames of any size into blocks, but hands
//   a block over only when it is full or its retire timer (at least 1 ms) fires, which would cost
//   the switch its latency. So the ring has 4096 small slots (2 KiB, 8 MiB), and PACKET_COPY_THRESH
//   handles the longer frames (GSO super-frames, jumbo frames): the kernel puts a truncated copy
//   marked TP_STATUS_COPY in the frame's slot and queues the whole frame on the socket (tpacket_rcv;
//   SO_RCVBUFFORCE gives the queue room). `receive` reads it there, with one recv per long frame,
//   into a "bulk" slot of our own memory (anonymous, 64 slots of 68 KiB, touched only by long
//   frames), so the ring's order is the frames' order. A batch stops at a long frame when all bulk
//   slots are taken (the next receive goes on from it). The sender's CPU (a veth transmits in the
//   sender's context) then runs one receive handler per frame and copies only small frames; the
//   earlier design below cost it more: 0.44 against 0.40 Mpps in the 64-byte sink, and 15.7
//   against 14.6 Gbit/s of TCP with offloads, side by side (docs/performance.md).
// - Two RX sockets (`Options.singleSocket = false`, USERSWITCH_SINGLE_SOCKET=0 in the daemon), the
//   earlier design, kept for comparison: the port opens two packet sockets on the interface, with
//   complementary classic BPF filters on the frame length (CLinuxNet_attach_length_filter): frames
//   that fit a 2 KiB slot go to the main socket's ring of 4096 small slots (8 MiB), longer ones to
//   the bulk socket's ring of 64 slots of 68 KiB. Every frame reaches exactly one ring. Two bound
//   packet sockets would make the kernel run two receive handlers per frame on the sender's CPU
//   (one of them only to be refused by its filter), which cost the 64-byte tests a fifth of the
//   generator's rate; so the two sockets also join one fanout group (PACKET_FANOUT_CBPF, a unique
//   group id, PACKET_FANOUT_FLAG_IGNORE_OUTGOING) whose BPF program picks the ring once per frame.
//   The flag is Linux 6.2; on older kernels the join fails and the two filtered sockets carry on
//   alone (`usesFanout` says which). The filters stay in place until both sockets are in the group,
//   so no frame is ever delivered twice or to the wrong ring while they join. The program answers
//   with a member index, so the members' order matters: when the link goes down the kernel takes
//   both sockets out of the group, and when it comes up it puts them back in the order the sockets
//   were created (packet_notifier walks the namespace's socket list, which packet_create appends
//   to). So the bulk socket is created first and joins first: it is member 0 at the start and after
//   every down and up (the two-socket variant of
//   testFramesOfBothSizesStillSplitAfterTheLinkWentDownAndUp fails with the opposite order: long
//   frames land in small slots, truncated). `receive` takes frames from both in the order the
//   kernel timestamped them (tp_sec, tp_nsec: taken per frame as the kernel writes it into the
//   ring), so a flow whose frames alternate between the two sizes is not reordered.
// - Slot geometry (ringLayout). The kernel allocates each ring block as a power of two pages and
//   wastes the tail that does not hold a whole slot, so the block size is the smallest power of two
//   pages that wastes at most 1/32 of itself: 1 MiB blocks of 15 slots of 68 KiB, 4 KiB blocks of
//   2 slots of 2 KiB. The kernel requires tp_frame_nr == blocks * slots per block, so slot counts
//   round up to blocks.
// - Offloads (PACKET_VNET_HDR). Guests and veth hand us CHECKSUM_PARTIAL frames and GSO
//   super-frames; without the virtio_net_hdr the switch would forward frames with bad checksums
//   or frames larger than any MTU. Checked against net/packet/af_packet.c:
//   * RX (tpacket_rcv): the 10-byte header sits immediately in front of the frame, at
//     slot + tp_mac - 10 (the kernel adds its size to the network offset, then subtracts the MAC
//     length). Its offsets (csum_start, hdr_len) count from the frame's first byte as the kernel
//     holds it, i.e. WITHOUT the VLAN tag the kernel stripped (see below).
//   * TX (tpacket_snd / tpacket_parse_header): without PACKET_TX_HAS_OFF the data starts at
//     tp_hdrlen - sizeof(sockaddr_ll) = 32 bytes into the slot; with the vnet option the first 10
//     bytes of that data are the header and tp_len counts them. With the vnet option the kernel
//     does not clamp tp_len to the MTU (a GSO frame is larger), only to the slot.
//   * A frame the kernel refuses (bad header) gets TP_STATUS_WRONG_FORMAT, the send fails, and
//     the kernel's TX head STAYS on that slot: nothing after it would ever go out. PACKET_LOSS
//     would skip such frames silently, so instead `flush` finds the slot, counts it
//     (`wrongFormat`) and moves the frames queued after it one slot back so the kernel's head
//     lands on a valid frame again (rare path; it copies, in order).
// - VLAN tags (receive). Before packet sockets see a frame, __netif_receive_skb_core untags one
//   802.1Q or 802.1ad tag into skb metadata, reported as tp_vlan_tci / tp_vlan_tpid with
//   TP_STATUS_VLAN_VALID / TP_STATUS_VLAN_TPID_VALID. PacketBatch frames always carry their tag
//   inline, so the tag is put back: the 12 address bytes move 4 bytes towards the slot start and
//   TPID + TCI go into the gap. The 4 bytes in front of the frame are the tail of the vnet header,
//   which is read before it is overwritten; nothing else in the slot is touched (for a 14-byte MAC
//   header the kernel puts the frame at 76, the vnet header at 66..76, tpacket2_hdr and
//   sockaddr_ll end at 52). PACKET_RESERVE would not help: the kernel puts reserved bytes in front
//   of the vnet header, never between it and the frame. TP_STATUS_VLAN_VALID is what counts, not a
//   non-zero TCI: TCI 0 with the flag is a priority tag. The vnet header's offsets are shifted by
//   +4 to match the restored tag.
// - TX copy (transmit). tpacket_snd copies vnet hdr_len bytes (at least the Ethernet header) into
//   the skb's head and attaches the rest of the frame as a fragment of the TX ring's page. A veth
//   peer in another namespace must then copy that fragment into a freshly allocated page
//   (skb_copy_ubufs), a page allocation per frame. For frames without GSO up to 2048 bytes the
//   header's hdr_len is set to the frame's length (the kernel accepts any hdr_len <= the length,
//   and raises it itself to cover a partial checksum), so the whole frame lands in the head: one
//   small copy instead of a page. GSO frames keep the zero-copy fragments. Measured in
//   docs/performance.md (broadcast +32%, TCP without offloads +19%).
// - Own transmissions (init): PACKET_IGNORE_OUTGOING, so frames the switch sends on the interface
//   do not come back in on the same port; PACKET_QDISC_BYPASS, so TX goes straight to the driver.
// - Truncation (receive): a frame larger than its slot arrives with tp_snaplen < tp_len (with one
//   socket: a long frame the full socket queue had no room for, so it has no TP_STATUS_COPY). It is
//   not delivered (forwarding a cut frame would corrupt it) and counted in `truncated`.
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

/// Events of one AF_PACKET port. Plain counters, read on the thread that runs the port.
public struct PacketPortCounters: Equatable, Sendable {
    /// Frames handed to the pipeline.
    public var received: UInt64 = 0
    /// Frames larger than their RX slot (tp_snaplen < tp_len), not delivered.
    public var truncated: UInt64 = 0
    /// Frames shorter than an Ethernet header, not delivered.
    public var runts: UInt64 = 0
    /// Frames dropped by the kernel because an RX ring was full (PACKET_STATISTICS of both
    /// sockets, read by `readKernelStatistics()`).
    public var kernelDrops: UInt64 = 0
    /// Frames queued on the TX ring.
    public var transmitted: UInt64 = 0
    /// Frames not queued because no TX slot was free.
    public var txRingFull: UInt64 = 0
    /// Frames not queued because they do not fit a TX slot.
    public var txOversize: UInt64 = 0
    /// Failed kicks (send on the TX ring) other than "try again later".
    public var txErrors: UInt64 = 0
    /// Frames the kernel refused to send (TP_STATUS_WRONG_FORMAT), reclaimed.
    public var wrongFormat: UInt64 = 0
    public init() {}
}

public final class PacketSocketPort: FramePort, @unchecked Sendable {
    /// Ring sizes. Slot counts round up to whole ring blocks (see `ringLayout`).
    public struct Options: Equatable, Sendable {
        /// Small RX ring slots (frames up to `smallFrameLimit` bytes the kernel can hold for us
        /// between two `receive` calls).
        public var rxFrames: Int
        /// Bytes per small RX slot, headers included; rounded up to a multiple of 16.
        public var rxFrameSize: Int
        /// Bulk RX slots, for frames longer than a small slot holds (GSO super-frames): with one
        /// socket, how many such frames one batch can take; with two, the bulk socket's ring.
        public var bulkFrames: Int
        /// TX ring slots (frames queued and in flight).
        public var txFrames: Int
        /// Bytes per bulk RX slot and per TX slot, headers included; rounded up to a multiple of
        /// 16. The default holds a 64 KiB GSO super-frame.
        public var frameSize: Int
        /// With two RX sockets, join them in one fanout group where the kernel allows it (see
        /// "Two RX sockets"); false keeps two independently filtered sockets.
        public var fanout = true
        /// One RX socket whose long frames wait on its queue (see "One RX socket"); false opens
        /// the earlier two sockets, split by frame length.
        public var singleSocket = true
        /// Put the interface in promiscuous mode for as long as the socket lives
        /// (PACKET_MR_PROMISC; the kernel drops it when the socket closes). A switch port needs
        /// frames for every MAC; virtual interfaces pass them anyway, NICs do not.
        public var promiscuous: Bool

        public static let defaultFrameSize = 69632
        public static let defaultRxFrameSize = 2048

        /// 4096 small RX slots of 2 KiB, 64 bulk RX slots and 128 TX slots of 68 KiB: 22 MiB per
        /// port (docs/performance.md, "Ring memory per port"; TX must hold one whole batch of 128
        /// frames for one port).
        public init(rxFrames: Int = 4096, rxFrameSize: Int = Options.defaultRxFrameSize, bulkFrames: Int = 64,
                    txFrames: Int = 128, frameSize: Int = Options.defaultFrameSize, promiscuous: Bool = true) {
            self.rxFrames = rxFrames
            self.rxFrameSize = rxFrameSize
            self.bulkFrames = bulkFrames
            self.txFrames = txFrames
            self.frameSize = frameSize
            self.promiscuous = promiscuous
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
    /// The main packet socket (small RX ring, TX ring): poll it for POLLIN (frames in the RX
    /// ring) and POLLERR (interface gone or down; then call `checkError()`). -1 once closed.
    public private(set) var fileDescriptor: Int32
    /// The bulk packet socket of the two-socket design (RX ring of long frames): poll it for
    /// POLLIN too. -1 with one socket, and once closed.
    public private(set) var bulkDescriptor: Int32
    public let rxLayout: RingLayout
    public let bulkLayout: RingLayout
    public let txLayout: RingLayout
    /// Frames up to this length (as the kernel holds them, without a stripped VLAN tag) fit the
    /// small RX ring; longer ones are read into bulk slots (from the socket's queue, or with two
    /// sockets from the bulk ring).
    public let smallFrameLimit: Int
    /// True when two sockets share a fanout group (one receive handler per frame), false with one
    /// socket, or when the kernel refused it and each socket filters every frame itself.
    public private(set) var usesFanout = false
    public private(set) var counters = PacketPortCounters()
    /// True once the interface is gone (or the port closed): receive and transmit do nothing.
    public private(set) var isDead = false

    private var ring: UnsafeMutableRawPointer?
    private let ringBytes: Int
    private var bulkRing: UnsafeMutableRawPointer?
    private let rxSlots: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let bulkSlots: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let txSlots: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let rxCount: Int
    private let bulkCount: Int
    private let txCount: Int
    /// Bytes of frame (after the vnet header) a TX slot holds.
    private let txFrameCapacity: Int

    // RX: `rxNext` is the next slot to look at; `rxHeld` slots before it, starting at
    // `rxReleaseFrom`, are ours until releaseReceived(). The same for the bulk ring.
    private var rxNext = 0
    private var rxReleaseFrom = 0
    private var rxHeld = 0
    private var bulkNext = 0
    private var bulkReleaseFrom = 0
    private var bulkHeld = 0
    // TX: `txNext` is the next slot to fill. `txHead` follows the kernel's TX head: the oldest of
    // `txInFlight` slots we marked SEND_REQUEST that the kernel has not yet taken.
    private var txNext = 0
    private var txHead = 0
    private var txInFlight = 0
    private var kickPending = false
    /// Frames queued since the last flush, and whether one of them is a GSO super-frame.
    private var queuedSinceFlush = 0
    private var queuedGSO = false
    /// The bridge's kick thread and this port's registration with it (see `useKicker`).
    private var kicker: TransmitKicker?
    private var kickSlot: TransmitKicker.Slot?
    /// `Options.singleSocket`, and how many bulk slots hold frames read with recv since the last
    /// release.
    private let singleSocket: Bool
    private var copied = 0
    /// Receive queue room for long frames with one RX socket (SO_RCVBUFFORCE).
    static let queueBytes: Int32 = 8 << 20

    /// Offset of the data (vnet header, then frame) in a TX slot: tp_hdrlen - sizeof(sockaddr_ll).
    private static let txDataOffset = Int(CLinuxNet_TPACKET2_HDRLEN) - MemoryLayout<sockaddr_ll>.size
    private static let vnetSize = VirtioNetHeader.size
    /// Frames up to this size (and without GSO) are sent with vnet hdr_len = their length, so the
    /// kernel copies them whole into the skb's head (see "TX copy" in the header).
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
        rxSlots = .allocate(capacity: rxCount)
        bulkSlots = .allocate(capacity: bulkCount)
        txSlots = .allocate(capacity: txCount)
        fileDescriptor = -1
        bulkDescriptor = -1
        singleSocket = options.singleSocket

        // From here on, a failure closes what was opened (deinit runs: all stored properties are set).
        // With two sockets, the bulk socket first: see "Two RX sockets" for why the order of
        // creation matters.
        let single = options.singleSocket
        var bulkFD: Int32 = -1
        if !single {
            bulkFD = try systemCall("socket(AF_PACKET) for the bulk ring of \(name)") {
                socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
            bulkDescriptor = bulkFD
        }
        let sockets = single ? [Int32]() : [bulkFD]
        let fd = try systemCall("socket(AF_PACKET) for \(name)") {
            socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        fileDescriptor = fd

        // Version, vnet header and reserve must be set before the rings exist (EBUSY after).
        for s in [fd] + sockets {
            try setOption(s, CLinuxNet_PACKET_VERSION, CLinuxNet_TPACKET_V2, "PACKET_VERSION TPACKET_V2")
            try setOption(s, CLinuxNet_PACKET_VNET_HDR, 1, "PACKET_VNET_HDR")
            try setOption(s, CLinuxNet_PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING")
        }
        try setOption(fd, CLinuxNet_PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS")
        try setRing(fd, CLinuxNet_PACKET_RX_RING, rxLayout, "PACKET_RX_RING")
        try setRing(fd, CLinuxNet_PACKET_TX_RING, txLayout, "PACKET_TX_RING")
        if !single { try setRing(bulkFD, CLinuxNet_PACKET_RX_RING, bulkLayout, "PACKET_RX_RING (bulk)") }
        // The split by length (see "Two RX sockets"), in place before either socket is bound.
        let limit = UInt32(smallFrameLimit)
        if single {
            // Long frames wait on the socket's queue (see "One RX socket"): room for a burst of
            // them (the kernel doubles the value and charges each skb's truesize).
            try setOption(fd, CLinuxNet_PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH")
            var bytes = Self.queueBytes
            _ = try systemCall("setsockopt(SO_RCVBUFFORCE \(bytes)) on \(name)") {
                setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size))
            }
        } else {
            _ = try systemCall("setsockopt(SO_ATTACH_FILTER: frames up to \(limit) bytes) on \(name)") {
                CLinuxNet_attach_length_filter(fd, limit, 0)
            }
            _ = try systemCall("setsockopt(SO_ATTACH_FILTER: frames over \(limit) bytes) on \(name)") {
                CLinuxNet_attach_length_filter(bulkFD, limit, 1)
            }
        }

        let base = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SystemError("mmap of \(ringBytes) bytes of packet rings for \(name)", errno: errno)
        }
        ring = base
        Self.fillSlots(rxSlots, base: base, layout: rxLayout)
        Self.fillSlots(txSlots, base: base + rxLayout.byteCount, layout: txLayout)
        // With one socket the bulk slots are our own memory (pages only where a long frame was
        // read), which recv fills; with two, the bulk socket's ring.
        let bulkBase = single
            ? mmap(nil, bulkLayout.byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            : mmap(nil, bulkLayout.byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, bulkFD, 0)
        guard let bulkBase, bulkBase != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SystemError("mmap of \(bulkLayout.byteCount) bytes of the bulk RX slots for \(name)", errno: errno)
        }
        bulkRing = bulkBase
        Self.fillSlots(bulkSlots, base: bulkBase, layout: bulkLayout)

        // Bind last, so that no frame reaches a socket before its rings and filter are in place.
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = CLinuxNet_ETH_P_ALL.bigEndian
        address.sll_ifindex = ifIndex
        for s in [fd] + sockets {
            _ = try systemCall("bind(AF_PACKET) to \(name) (ifindex \(ifIndex))") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(s, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
            }
        }
        usesFanout = !single && options.fanout && joinFanout(main: fd, bulk: bulkFD, limit: limit)
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
        rxSlots.deallocate()
        bulkSlots.deallocate()
        txSlots.deallocate()
    }

    /// Unmaps the rings and closes the sockets. Idempotent; the port is dead afterwards.
    public func close() {
        isDead = true
        useKicker(nil)
        if let ring {
            munmap(ring, ringBytes)
            self.ring = nil
        }
        if let bulkRing {
            munmap(bulkRing, bulkLayout.byteCount)
            self.bulkRing = nil
        }
        if fileDescriptor >= 0 {
            _ = Glibc.close(fileDescriptor)
            fileDescriptor = -1
        }
        if bulkDescriptor >= 0 {
            _ = Glibc.close(bulkDescriptor)
            bulkDescriptor = -1
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

    /// True when a kick may be waiting in the kick thread: a full TX ring is then worth a kick.
    private var kicksHandedOver: Bool { kickSlot != nil && kicker?.isRunning == true }

    // MARK: receive

    /// Fills `batch` with the frames waiting in the two RX rings, oldest first, up to its
    /// capacity. No syscall.
    public func receive(into batch: PacketBatch) -> Int {
        batch.count = 0
        if isDead { return 0 }
        let frames = batch.frames
        let lengths = batch.lengths
        let vnets = batch.vnet
        let capacity = batch.capacity
        let small = rxSlots, smallCount = rxCount
        let bulk = bulkSlots, bulkTotal = bulkCount
        var next = rxNext, held = rxHeld
        var bNext = bulkNext, bHeld = bulkHeld
        let single = singleSocket
        var copies = copied
        var n = 0
        var truncated: UInt64 = 0
        var runts: UInt64 = 0
        while n < capacity {
            let smallSlot = small[next]
            let bulkSlot = bulk[bNext]
            let smallStatus = held < smallCount ? CLinuxNet_load_acquire_u32(smallSlot.assumingMemoryBound(to: UInt32.self)) : 0
            let bulkStatus = !single && bHeld < bulkTotal ? CLinuxNet_load_acquire_u32(bulkSlot.assumingMemoryBound(to: UInt32.self)) : 0
            let smallReady = smallStatus & CLinuxNet_TP_STATUS_USER != 0
            let bulkReady = bulkStatus & CLinuxNet_TP_STATUS_USER != 0
            let slot: UnsafeMutableRawPointer
            let status: UInt32
            if smallReady && !(bulkReady && Self.arrivedBefore(bulkSlot, smallSlot)) {
                // A frame queued on the socket needs a bulk slot to be read into.
                if single && smallStatus & CLinuxNet_TP_STATUS_COPY != 0 && copies >= bulkTotal { break }
                slot = smallSlot
                status = smallStatus
                held += 1
                next = next + 1 == smallCount ? 0 : next + 1
            } else if bulkReady {
                slot = bulkSlot
                status = bulkStatus
                bHeld += 1
                bNext = bNext + 1 == bulkTotal ? 0 : bNext + 1
            } else {
                break
            }
            let header = slot.assumingMemoryBound(to: tpacket2_hdr.self)
            var snapLength = Int(header.pointee.tp_snaplen)
            var frame = slot + Int(header.pointee.tp_mac)
            if single && status & CLinuxNet_TP_STATUS_COPY != 0 {
                // The whole frame waits in the socket's queue, in this slot's order: read it
                // (vnet header first) into a free bulk slot, at the offset a ring slot would have.
                let buffer = bulk[copies] + Self.rxHeadroom - Self.vnetSize
                let room = bulkLayout.frameSize - Self.rxHeadroom + Self.vnetSize
                var r = recv(fileDescriptor, buffer, room, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
                if r < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                    // A pending socket error (ENETDOWN after the link went down) is reported, and
                    // cleared, before the queue is looked at: the frame is still there.
                    r = recv(fileDescriptor, buffer, room, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
                }
                copies += 1
                if r < Self.vnetSize + 14 || r > room {
                    truncated += 1
                    continue
                }
                frame = buffer + Self.vnetSize
                snapLength = r - Self.vnetSize
            } else if snapLength < Int(header.pointee.tp_len) {
                truncated += 1
                continue
            }
            if snapLength < 14 {
                runts += 1
                continue
            }
            var vnet = VirtioNetHeader.load(from: frame - Self.vnetSize)
            var length = snapLength
            if status & CLinuxNet_TP_STATUS_VLAN_VALID != 0 {
                // Put the stripped tag back inline (read the vnet header first: the tag overwrites
                // its last 4 bytes).
                var tpid: UInt16 = 0x8100
                if status & CLinuxNet_TP_STATUS_VLAN_TPID_VALID != 0 && header.pointee.tp_vlan_tpid != 0 {
                    tpid = header.pointee.tp_vlan_tpid
                }
                let tci = header.pointee.tp_vlan_tci
                let addresses = frame.loadUnaligned(as: UInt64.self)
                let tail = frame.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                frame -= 4
                frame.storeBytes(of: addresses, as: UInt64.self)
                frame.storeBytes(of: tail, toByteOffset: 8, as: UInt32.self)
                frame.storeBytes(of: tpid.bigEndian, toByteOffset: 12, as: UInt16.self)
                frame.storeBytes(of: tci.bigEndian, toByteOffset: 14, as: UInt16.self)
                length += 4
                vnet = vnet.shifted(by: 4)
            }
            frames[n] = frame
            lengths[n] = UInt32(truncatingIfNeeded: length)
            vnets[n] = vnet
            n += 1
        }
        rxNext = next
        rxHeld = held
        bulkNext = bNext
        bulkHeld = bHeld
        copied = copies
        batch.count = n
        if n > 0 { counters.received &+= UInt64(n) }
        if truncated != 0 { counters.truncated &+= truncated }
        if runts != 0 { counters.runts &+= runts }
        return n
    }

    /// True when the kernel wrote slot `a` strictly before slot `b` (their tp_sec, tp_nsec): the
    /// order in which the two rings' frames are taken.
    @inline(__always)
    private static func arrivedBefore(_ a: UnsafeMutableRawPointer, _ b: UnsafeMutableRawPointer) -> Bool {
        let x = a.assumingMemoryBound(to: tpacket2_hdr.self)
        let y = b.assumingMemoryBound(to: tpacket2_hdr.self)
        if x.pointee.tp_sec != y.pointee.tp_sec { return x.pointee.tp_sec &- y.pointee.tp_sec > UInt32.max / 2 }
        return x.pointee.tp_nsec < y.pointee.tp_nsec
    }

    /// Gives every slot taken since the last release back to the kernel.
    public func releaseReceived() {
        guard ring != nil, bulkRing != nil else { return }
        copied = 0
        (rxReleaseFrom, rxHeld) = Self.release(rxSlots, count: rxCount, from: rxReleaseFrom, held: rxHeld)
        (bulkReleaseFrom, bulkHeld) = Self.release(bulkSlots, count: bulkCount, from: bulkReleaseFrom, held: bulkHeld)
    }

    @inline(__always)
    private static func release(_ slots: UnsafeMutablePointer<UnsafeMutableRawPointer>, count: Int, from: Int,
                                held: Int) -> (Int, Int) {
        var i = from
        for _ in 0..<held {
            CLinuxNet_store_release_u32(slots[i].assumingMemoryBound(to: UInt32.self), CLinuxNet_TP_STATUS_KERNEL)
            i = i + 1 == count ? 0 : i + 1
        }
        return (i, 0)
    }

    // MARK: transmit

    /// Copies the listed frames into free TX slots (VLAN tag rewritten, vnet header adjusted) and
    /// marks them for sending. Stops at the first busy slot. Nothing is sent before `flush()`.
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int) -> Int {
        if isDead || count <= 0 { return 0 }
        let frames = batch.frames
        let lengths = batch.lengths
        let vnets = batch.vnet
        let tagLengths = batch.tagLength
        let slots = txSlots
        let ringCount = txCount
        let capacity = txFrameCapacity
        let dataOffset = Self.txDataOffset
        let vnetSize = Self.vnetSize
        let linearLimit = Self.linearCopyLimit
        var next = txNext
        var queued = 0
        var oversize: UInt64 = 0
        var e = 0
        var kickedForRoom = false
        while e < count {
            let slot = slots[next]
            let status = CLinuxNet_load_acquire_u32(slot.assumingMemoryBound(to: UInt32.self))
            let busy = CLinuxNet_TP_STATUS_SEND_REQUEST | CLinuxNet_TP_STATUS_SENDING | CLinuxNet_TP_STATUS_WRONG_FORMAT
            if status & busy != 0 {
                // With kicks handed over, the ring may be full of frames the kick thread has not
                // sent yet: kick here once rather than drop.
                if !kickedForRoom && kicksHandedOver {
                    kickedForRoom = true
                    _ = send(fileDescriptor, nil, 0, Int32(MSG_DONTWAIT))
                    continue
                }
                break
            }
            let entry = entries[e]
            e += 1
            let i = Int(entry.frame)
            let length = Int(lengths[i])
            let data = slot + dataOffset
            let written = FrameRewrite.copy(from: frames[i], length: length, tagLength: Int(tagLengths[i]),
                                             tci: entry.tci, into: data + vnetSize, capacity: capacity)
            if written < 14 {
                oversize += 1
                continue
            }
            var header = vnets[i].shifted(by: written - length)
            // A frame without GSO is copied by the kernel into the skb's linear area as a whole
            // (hdr_len is the kernel's copy length; see "TX copy" in the header) instead of being
            // attached as a fragment of the ring page. A header that was already invalid (hdr_len
            // beyond the frame) is left alone, so the kernel still refuses it (`wrongFormat`).
            if header.gsoType == 0 && written <= linearLimit && Int(header.hdrLen) <= written {
                header.hdrLen = UInt16(truncatingIfNeeded: written)
            }
            if header.gsoType != 0 { queuedGSO = true }
            header.store(to: data)
            slot.assumingMemoryBound(to: tpacket2_hdr.self).pointee.tp_len = UInt32(truncatingIfNeeded: written + vnetSize)
            CLinuxNet_store_release_u32(slot.assumingMemoryBound(to: UInt32.self), CLinuxNet_TP_STATUS_SEND_REQUEST)
            next = next + 1 == ringCount ? 0 : next + 1
            queued += 1
        }
        txNext = next
        if queued > 0 {
            txInFlight += queued
            queuedSinceFlush += queued
            kickPending = true
            counters.transmitted &+= UInt64(queued)
        }
        if e < count { counters.txRingFull &+= UInt64(count - e) }
        if oversize != 0 { counters.txOversize &+= oversize }
        return queued
    }

    /// Sends everything queued: one send(fd, NULL, 0, MSG_DONTWAIT), made here, or under dense
    /// traffic by the bridge's kick thread (`useKicker`). Errors become counters (or `isDead` when
    /// the interface is gone); frames the kernel refused are reclaimed.
    public func flush() {
        guard kickPending, !isDead else { return }
        let frames = queuedSinceFlush
        let gso = queuedGSO
        queuedSinceFlush = 0
        queuedGSO = false
        if let kicker, let kickSlot, kicker.isRunning {
            _ = collectKickErrors()
            if isDead { return }
            reapTransmitted()
            // GSO super-frames stay inline (see TransmitKicker: their bytes are in this CPU's
            // cache now).
            if !gso && kicker.shouldHandOver(frames: frames) {
                kickPending = false
                kicker.request(kickSlot)
                return
            }
        }
        // Each extra round follows a reclaimed WRONG_FORMAT slot; at most one per queued frame.
        var rounds = txInFlight + 1
        while kickPending && rounds > 0 && !isDead {
            rounds -= 1
            kickPending = false
            let r = send(fileDescriptor, nil, 0, Int32(MSG_DONTWAIT))
            if r < 0 {
                switch errno {
                case let e where Self.isTransient(e):
                    // The kernel is out of socket buffer; the frames stay queued for the next flush.
                    kickPending = true
                    return
                case ENXIO, ENODEV:
                    // No device behind the socket any more: the interface was deleted.
                    isDead = true
                    return
                default:
                    // A refused frame (EINVAL, EMSGSIZE...: found and counted by the reap), or
                    // ENETDOWN (interface down: the frames wait in the ring for the next kick).
                    if !reapTransmitted() { counters.txErrors &+= 1 }
                    continue
                }
            }
            reapTransmitted()
        }
    }

    /// Handles what the kick thread's send() calls on this port reported, as `flush` handles its
    /// own: ENXIO makes the port dead, a refused frame is reclaimed, other errors are counted.
    /// Returns true when frames wait for a kick now (call `flush`). Owning thread.
    public func collectKickErrors() -> Bool {
        guard let kickSlot, !isDead else { return false }
        let error = kickSlot.takeError()
        if error == 0 { return false }
        if error == ENXIO || error == ENODEV {
            isDead = true
            return false
        }
        if reapTransmitted() { return kickPending }
        if Self.isTransient(error) {
            kickPending = txInFlight > 0  // the next flush tries again
        } else {
            counters.txErrors &+= 1
        }
        return false
    }

    /// send() errors after which the frames simply wait in the ring for the next kick.
    private static func isTransient(_ error: Int32) -> Bool {
        error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS || error == EINTR
    }

    /// Follows the kernel's TX head over the slots it has taken; a slot it refused is reclaimed
    /// (returns true) and the kick is due again.
    @discardableResult
    private func reapTransmitted() -> Bool {
        while txInFlight > 0 {
            let slot = txSlots[txHead]
            let status = CLinuxNet_load_acquire_u32(slot.assumingMemoryBound(to: UInt32.self))
            if status & CLinuxNet_TP_STATUS_WRONG_FORMAT != 0 {
                reclaimWrongFormat()
                kickPending = txInFlight > 0
                return true
            }
            if status & CLinuxNet_TP_STATUS_SEND_REQUEST != 0 { return false }  // not taken yet
            txHead = txHead + 1 == txCount ? 0 : txHead + 1
            txInFlight -= 1
        }
        return false
    }

    /// The kernel stopped at `txHead` (TP_STATUS_WRONG_FORMAT) and will not move past it. Move the
    /// frames queued after it one slot back, in order, and free the last slot.
    private func reclaimWrongFormat() {
        counters.wrongFormat &+= 1
        // The kick thread must not send while frames move between slots.
        kickSlot?.pause()
        defer { kickSlot?.resume() }
        var to = txHead
        for _ in 1..<max(txInFlight, 1) {
            let from = to + 1 == txCount ? 0 : to + 1
            let source = txSlots[from]
            let target = txSlots[to]
            let tpLength = source.assumingMemoryBound(to: tpacket2_hdr.self).pointee.tp_len
            (target + Self.txDataOffset).copyMemory(from: source + Self.txDataOffset, byteCount: Int(tpLength))
            target.assumingMemoryBound(to: tpacket2_hdr.self).pointee.tp_len = tpLength
            CLinuxNet_store_release_u32(target.assumingMemoryBound(to: UInt32.self), CLinuxNet_TP_STATUS_SEND_REQUEST)
            to = from
        }
        CLinuxNet_store_release_u32(txSlots[to].assumingMemoryBound(to: UInt32.self), CLinuxNet_TP_STATUS_AVAILABLE)
        txNext = to
        txInFlight -= 1
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
        // The bulk socket gets the same error; clear it too, or poll keeps reporting it.
        if bulkDescriptor >= 0 {
            var bulkPending: Int32 = 0
            size = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(bulkDescriptor, SOL_SOCKET, SO_ERROR, &bulkPending, &size) == 0 && pending == 0 {
                pending = bulkPending
            }
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

    /// Adds the kernel's RX drop count (ring full) of both sockets since the last call to
    /// `counters.kernelDrops` (PACKET_STATISTICS, which the kernel resets on every read).
    public func readKernelStatistics() {
        for fd in [fileDescriptor, bulkDescriptor] where fd >= 0 {
            var stats = tpacket_stats()
            var size = socklen_t(MemoryLayout<tpacket_stats>.size)
            if getsockopt(fd, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_STATISTICS, &stats, &size) == 0 {
                counters.kernelDrops &+= UInt64(stats.tp_drops)
            }
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

    /// Puts both sockets in one fanout group, bulk socket first (member 0, the long frames), whose
    /// program then picks one socket per frame (see "Two RX sockets"). Best effort: every step that
    /// fails leaves the two filtered sockets correct on their own.
    private func joinFanout(main: Int32, bulk: Int32, limit: UInt32) -> Bool {
        let size = socklen_t(MemoryLayout<UInt32>.size)
        let flags = UInt32(CLinuxNet_PACKET_FANOUT_FLAG_IGNORE_OUTGOING)
        var first = (UInt32(CLinuxNet_PACKET_FANOUT_CBPF) | flags | UInt32(CLinuxNet_PACKET_FANOUT_FLAG_UNIQUEID)) << 16
        guard setsockopt(bulk, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_FANOUT, &first, size) == 0 else { return false }
        var current: UInt32 = 0
        var length = size
        guard getsockopt(bulk, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_FANOUT, &current, &length) == 0,
              CLinuxNet_set_fanout_length_program(bulk, limit) == 0 else { return false }
        var second = (current & 0xFFFF) | (UInt32(CLinuxNet_PACKET_FANOUT_CBPF) | flags) << 16
        guard setsockopt(main, CLinuxNet_SOL_PACKET, CLinuxNet_PACKET_FANOUT, &second, size) == 0 else { return false }
        // Both in the group: its program alone routes every frame, so the socket filters would
        // only run a second BPF program per frame to the same answer.
        var none: Int32 = 0
        for s in [main, bulk] {
            _ = setsockopt(s, SOL_SOCKET, SO_DETACH_FILTER, &none, socklen_t(MemoryLayout<Int32>.size))
        }
        return true
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
