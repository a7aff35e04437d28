// PacketSocketPort+Receive: the RX side of an AF_PACKET port (the port itself, its socket and
// rings: PacketSocketPort.swift).
//
// Design note: the kernel quirks this file handles, and where.
//
// - Rings, not syscalls (receive, releaseReceived). `receive` walks RX slots whose tp_status has
//   TP_STATUS_USER and enters the kernel only for a frame longer than a slot (see "One RX
//   socket"); `releaseReceived` hands them back.
// - One RX socket, long frames through its queue. A TPACKET_V2 slot has one fixed size, and a
//   slot must hold a GSO super-frame (64 KiB plus headers), so a ring of such slots holds few
//   frames for its memory: 270 slots of 68 KiB (18 MiB) overflowed whenever the bridge thread was
//   off the CPU for a scheduler slice during a burst of small or MTU-sized frames (RFC 2889
//   trials, TCP without offloads). TPACKET_V3 packs frames of any size into blocks, but hands a
//   block over only when it is full or its retire timer (at least 1 ms) fires, which would cost
//   the switch its latency. So the ring has 4096 small slots (2 KiB, 8 MiB), and
//   PACKET_COPY_THRESH handles the longer frames (GSO super-frames, jumbo frames): the kernel puts
//   a truncated copy marked TP_STATUS_COPY in the frame's slot and queues the whole frame on the
//   socket (tpacket_rcv; SO_RCVBUFFORCE gives the queue room). `receive` reads it there, with one
//   recv per long frame, into a "bulk" slot of our own memory (anonymous, 64 slots of 68 KiB,
//   touched only by long frames), so the ring's order is the frames' order. A batch stops at a
//   long frame when all bulk slots are taken (the next receive goes on from it). The sender's CPU
//   (a veth transmits in the sender's context) then runs one receive handler per frame and copies
//   only small frames; an earlier two-socket design (a second socket with its own ring of long
//   slots, the frames split between the two by length in a fanout group) cost it more, 0.44
//   against 0.40 Mpps in the 64-byte sink and 15.7 against 14.6 Gbit/s of TCP with offloads,
//   measured side by side (docs/performance.md), and was removed.
// - Direct receive (receive, materialize, readPending, discardPending; the egress side in
//   PacketSocketPort+Transmit.swift). Reading a long frame into a bulk slot and copying it into
//   the egress port's TX slot moves its body twice through this CPU. Instead, an untagged long
//   frame is handed to the engine as its truncated copy in the ring slot (at least 1400 bytes:
//   every header the stages read or rewrite), with its whole length, marked pending in
//   `PacketBatch.deferred`; its body stays in the socket's queue. The egress port's transmit then
//   recvs it straight into its own TX slot and puts the first `headerBytes` of the truncated copy
//   (as the stages rewrote them) over it: one copy, the kernel's. The queue is in order, so
//   pending frames are read strictly in ring order: one in front of the frame being read goes to
//   a bulk slot first (`materialize`), as does every pending frame a stage needs whole (a flood, a
//   fragment, a frame queued for a neighbour, one delivered to the router itself) or that a TAP
//   port sends; the ones nobody took are discarded at release (recv of 0 bytes with MSG_TRUNC).
//   A tagged long frame (its tag stripped by the kernel, to be put back inline) is read at once
//   as before, and ends the batch when pending frames are in front of it. Each pending frame
//   still holds a bulk slot's worth of the batch's limit, so materializing never runs out.
//   It is off by default (`Options.directReceive`; USERSWITCH_DIRECT_RECEIVE=1 turns it on in the
//   daemon): side by side in the routed TCP benchmark it was slower, 13.7 against 15.3 Gbit/s
//   (docs/performance.md, "Direct receive"), so every long frame is read at receive unless asked.
// - Offloads on RX (tpacket_rcv, checked against net/packet/af_packet.c): the 10-byte
//   virtio_net_hdr sits immediately in front of the frame, at slot + tp_mac - 10 (the kernel adds
//   its size to the network offset, then subtracts the MAC length); a frame read with recv starts
//   with it. Its offsets (csum_start, hdr_len) count from the frame's first byte as the kernel
//   holds it, i.e. WITHOUT the VLAN tag the kernel stripped (see below).
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
// - Truncation (receive): a frame larger than its slot arrives with tp_snaplen < tp_len (a long
//   frame the full socket queue had no room for, so it has no TP_STATUS_COPY). It is not
//   delivered (forwarding a cut frame would corrupt it) and counted in `events.rxTruncated`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxNet
import SwitchCore

extension PacketSocketPort {
    /// Fills `batch` with the frames waiting in the RX ring, in ring order, up to its capacity. No
    /// syscall but one recv per frame longer than a small slot.
    public func receive(into batch: PacketBatch) -> Int {
        batch.count = 0
        if isDead { return 0 }
        let frames = batch.frames.base
        let lengths = batch.lengths.base
        let vnets = batch.vnet.base
        let capacity = batch.capacity
        let small = rxSlots.base, smallCount = rxCount
        let bulk = bulkSlots.base, bulkTotal = bulkCount
        let deferred = batch.deferred.base
        let room = bulkLayout.frameSize - Self.rxHeadroom + Self.vnetSize
        var next = rxNext, held = rxHeld
        var copies = copied, used = bulkUsed, pending = pendingCount
        var n = 0
        var truncated: UInt64 = 0
        var runts: UInt64 = 0
        while n < capacity {
            let slot = small[next]
            let status = held < smallCount ? CLinuxNet_load_acquire_u32(slot.assumingMemoryBound(to: UInt32.self)) : 0
            if status & CLinuxNet_TP_STATUS_USER == 0 { break }
            let header = slot.assumingMemoryBound(to: tpacket2_hdr.self)
            var defer_ = false
            if status & CLinuxNet_TP_STATUS_COPY != 0 {
                // A frame queued on the socket needs a bulk slot, now or when it is materialized.
                if copies >= bulkTotal { break }
                defer_ = directReceive && status & CLinuxNet_TP_STATUS_VLAN_VALID == 0
                    && Int(header.pointee.tp_len) + Self.vnetSize <= room
                    && Int(header.pointee.tp_snaplen) >= PacketBatch.snapshotMinimum
                // Reading this one now would take a pending frame's body off the queue's head.
                if !defer_ && pending > 0 { break }
            }
            held += 1
            next = next + 1 == smallCount ? 0 : next + 1
            var snapLength = Int(header.pointee.tp_snaplen)
            var frame = slot + Int(header.pointee.tp_mac)
            if defer_ {
                // Direct receive: the truncated copy in the slot stands for the frame; its body
                // stays queued until an egress port reads it (transmit) or a stage needs it
                // (materialize), or is discarded at release.
                copies += 1
                pendingIndex[pending] = Int32(truncatingIfNeeded: n)
                pendingSnapshot[pending] = Int32(truncatingIfNeeded: snapLength)
                pending += 1
                frames[n] = frame
                lengths[n] = header.pointee.tp_len
                vnets[n] = VirtioNetHeader.load(from: frame - Self.vnetSize)
                deferred[n] = PacketBatch.pending
                n += 1
                continue
            }
            if status & CLinuxNet_TP_STATUS_COPY != 0 {
                // The whole frame waits in the socket's queue, in this slot's order: read it
                // (vnet header first) into a free bulk slot, at the offset a ring slot would have.
                let buffer = bulk[used] + Self.rxHeadroom - Self.vnetSize
                used += 1
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
            deferred[n] = 0
            n += 1
        }
        rxNext = next
        rxHeld = held
        copied = copies
        bulkUsed = used
        pendingCount = pending
        if pending > 0 { pendingFlags = deferred }
        batch.count = n
        if truncated != 0 { events.rxTruncated &+= truncated }
        if runts != 0 { events.rxRunts &+= runts }
        return n
    }

    /// Gives every slot taken since the last release back to the kernel, and the bulk slots back
    /// to the next batch.
    public func releaseReceived() {
        if pendingCount > 0 { discardPending() }
        guard ring != nil, bulkMemory != nil else { return }
        copied = 0
        bulkUsed = 0
        (rxReleaseFrom, rxHeld) = Self.release(rxSlots.base, count: rxCount, from: rxReleaseFrom, held: rxHeld)
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

    // MARK: direct receive

    /// Reads the bodies of the pending frames up to and including batch index `index` into bulk
    /// slots, in queue order: afterwards they are ordinary frames (FramePort.materialize).
    public func materialize(_ batch: PacketBatch, through index: Int) {
        while pendingHead < pendingCount && Int(pendingIndex[pendingHead]) <= index {
            let buffer = bulkSlots[bulkUsed] + Self.rxHeadroom - Self.vnetSize
            bulkUsed += 1
            let k = Int(pendingIndex[pendingHead])
            if readPending(into: buffer, room: bulkLayout.frameSize - Self.rxHeadroom + Self.vnetSize, batch) {
                batch.frames[k] = buffer + Self.vnetSize
            }
        }
    }

    /// `materialize` for every pending frame among the entries (an egress that cannot read them
    /// itself, a TAP port).
    public func materialize(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int) {
        guard pendingHead < pendingCount else { return }
        var last = -1
        let deferred = batch.deferred.base
        for k in 0..<count where deferred[Int(entries[k].frame)] != 0 { last = max(last, Int(entries[k].frame)) }
        if last >= 0 { materialize(batch, through: last) }
    }

    /// True when the pending frame at the queue's head is batch frame `index`.
    @inline(__always)
    func pendingIsNext(_ index: Int) -> Bool {
        pendingHead < pendingCount && Int(pendingIndex[pendingHead]) == index
    }

    /// Reads the body of the pending frame at the queue's head (vnet header, then the frame) into
    /// `buffer`, then puts the first bytes of its truncated copy over it: the stages may have
    /// rewritten headers there (MACs, TTL, checksums, a NAT's addresses and ports), never past
    /// `headerBytes`. False (and the frame left with length 0, which no port sends) if the queue
    /// did not hold what the ring said, which would be a kernel or accounting fault.
    func readPending(into buffer: UnsafeMutableRawPointer, room: Int, _ batch: PacketBatch) -> Bool {
        let p = pendingHead
        pendingHead += 1
        let k = Int(pendingIndex[p])
        batch.deferred[k] = 0
        let length = Int(batch.lengths[k])
        var r = recv(fileDescriptor, buffer, room, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
        if r < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
            r = recv(fileDescriptor, buffer, room, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
        }
        guard r == length + Self.vnetSize else {
            events.rxTruncated &+= 1
            batch.lengths[k] = 0
            return false
        }
        let head = min(Int(pendingSnapshot[p]), Self.headerBytes, length)
        (buffer + Self.vnetSize).copyMemory(from: batch.frames[k], byteCount: head)
        return true
    }

    /// Bytes at the start of a frame that the stages may rewrite: Ethernet, IPv4 or IPv6 with
    /// options or extension headers, TCP with options, with room to spare.
    static let headerBytes = 256

    /// The pending frames nobody took (dropped, refused by a full ring) leave the queue unread.
    func discardPending() {
        while pendingHead < pendingCount {
            let k = Int(pendingIndex[pendingHead])
            pendingHead += 1
            pendingFlags?[k] = 0
            if fileDescriptor < 0 { continue }
            if recv(fileDescriptor, nil, 0, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC)) < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                _ = recv(fileDescriptor, nil, 0, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
            }
        }
        pendingCount = 0
        pendingHead = 0
        pendingFlags = nil
    }
}
