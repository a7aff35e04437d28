// PacketSocketPort+Transmit: the TX side of an AF_PACKET port (the port itself, its socket and
// rings: PacketSocketPort.swift).
//
// Design note: the kernel quirks this file handles, and where.
//
// - Rings, not syscalls (transmit, flush). `transmit` fills TX slots and marks them
//   TP_STATUS_SEND_REQUEST; `flush` makes one send(fd, NULL, 0, MSG_DONTWAIT) for the lot, or hands
//   that kick to the bridge's kick thread (TransmitKicker.swift: the send runs the receiving side's
//   stack, which is better done beside the bridge thread).
// - Offloads on TX (tpacket_snd / tpacket_parse_header, checked against net/packet/af_packet.c):
//   without PACKET_TX_HAS_OFF the data starts at tp_hdrlen - sizeof(sockaddr_ll) = 32 bytes into
//   the slot; with the vnet option the first 10 bytes of that data are the virtio_net_hdr and
//   tp_len counts them. With the vnet option the kernel does not clamp tp_len to the MTU (a GSO
//   frame is larger), only to the slot.
// - Refused frames (flush, reapTransmitted, reclaimWrongFormat). A frame the kernel refuses (bad
//   header) gets TP_STATUS_WRONG_FORMAT, the send fails, and the kernel's TX head STAYS on that
//   slot: nothing after it would ever go out. PACKET_LOSS would skip such frames silently, so
//   instead `flush` finds the slot, counts it (`events.txWrongFormat`) and moves the frames queued after it
//   one slot back so the kernel's head lands on a valid frame again (rare path; it copies, in
//   order).
// - TX copy (transmit). tpacket_snd copies vnet hdr_len bytes (at least the Ethernet header) into
//   the skb's head and attaches the rest of the frame as a fragment of the TX ring's page. A veth
//   peer in another namespace must then copy that fragment into a freshly allocated page
//   (skb_copy_ubufs), a page allocation per frame. For frames without GSO up to 2048 bytes the
//   header's hdr_len is set to the frame's length (the kernel accepts any hdr_len <= the length,
//   and raises it itself to cover a partial checksum), so the whole frame lands in the head: one
//   small copy instead of a page. GSO frames keep the zero-copy fragments. Measured in
//   docs/performance.md (broadcast +32%, TCP without offloads +19%).
// - Pending frames (transmit with a source): a long frame still in the ingress port's queue
//   (direct receive, PacketSocketPort+Receive.swift) that goes here alone, untagged, is read by
//   recv straight into the TX slot, vnet header first, exactly where the copy would have put it;
//   any other pending frame is materialized by the ingress port first and copied.
// - Long frames (transmit, sendWhole). A frame longer than `linearCopyLimit` in a ring slot is
//   attached to the skb as fragments of the ring's pages, which tpacket_snd marks zero-copy, so a
//   veth whose peer is in another namespace copies them into new pages (skb_orphan_frags_rx, on
//   the path of every GSO super-frame): the body is copied into the slot and again by the kernel.
//   Such a frame, untagged in and out, is sent instead with one sendmsg on a second socket of
//   the port, bound to the interface with protocol 0 and without rings (a socket with a TX ring
//   sends only from its ring, whatever sendmsg is given) (vnet header, then the
//   frame where it lies, in a bulk slot or the ring slot it arrived in): packet_snd copies it once
//   into pages of its own skb, which the veth passes on. Order: ring frames queued before it are
//   kicked first (the kernel takes them in order); if that kick cannot take them all, the frame
//   goes through the ring behind them. One syscall per long frame, as receiving one already costs.
//   Measured side by side in three runs (docs/performance.md, "Long frames by sendmsg"): a routed
//   TCP stream 8-14% faster every time, a bridged one ahead, behind and level once each.
//   `Options.sendLongFrames` false (USERSWITCH_LONG_SEND=0 for the daemon) sends every frame
//   through the ring, as before.
// - Vanishing interfaces (flush, collectKickErrors): a send on a deleted interface fails with
//   ENXIO, which makes the port dead ("Vanishing interfaces" in PacketSocketPort.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxNet
import SwitchCore

extension PacketSocketPort {
    /// True when a kick may be waiting in the kick thread: a full TX ring is then worth a kick.
    private var kicksHandedOver: Bool { kickSlot != nil && kicker?.isRunning == true }

    /// Copies the listed frames into free TX slots (VLAN tag rewritten, vnet header adjusted) and
    /// marks them for sending; each entry's outcome goes to `status`. At the first busy slot the
    /// ring is full: the entries from there on are `.ringFull`. A frame too long for a slot is
    /// `.oversize` and the next entry takes the slot. Nothing is sent before `flush()`.
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>) -> Int {
        transmit(batch, entries: entries, count: count, status: status, source: nil)
    }

    /// `transmit` for frames received on `source`, whose pending frames (direct receive) this
    /// port reads straight into its TX slots when they go here alone, untagged in and out: one
    /// copy of the body (the kernel's, in recv) instead of two. Any other pending frame is
    /// materialized by `source` first and copied as usual.
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>, source: PacketSocketPort?) -> Int {
        if count <= 0 { return 0 }
        if isDead {
            status.update(repeating: .error, count: count)
            return 0
        }
        let frames = batch.frames.base
        let lengths = batch.lengths.base
        let vnets = batch.vnet.base
        let info = batch.info.base
        let deferred = batch.deferred.base
        let slots = txSlots.base
        let ringCount = txCount
        let capacity = txFrameCapacity
        let dataOffset = Self.txDataOffset
        let vnetSize = Self.vnetSize
        let linearLimit = Self.linearCopyLimit
        var next = txNext
        var queued = 0
        /// Ring frames queued by this call and not yet counted in `txInFlight`.
        var ringQueued = 0
        var e = 0
        var kickedForRoom = false
        while e < count {
            // Long untagged frames go out by sendmsg, after the ring frames queued before them.
            if longFrameSocket >= 0, !(deferred[Int(entries[e].frame)] != 0 && source != nil) {
                let entry = entries[e]
                let i = Int(entry.frame)
                let length = Int(lengths[i])
                if length > linearLimit && entry.tci == 0 && info[i].tagLength == 0 {
                    if ringQueued > 0 || txInFlight > 0 {
                        // Ring frames ahead of it leave first (the kernel takes them in order): a
                        // kick only for those it has not taken yet; if the kick cannot take them
                        // all, this one goes through the ring behind them.
                        txInFlight += ringQueued
                        queuedSinceFlush += ringQueued
                        ringQueued = 0
                        // (A refused frame found by the reap moves the ring's tail: `next` follows.)
                        txNext = next
                        reapTransmitted()
                        if txInFlight > 0 {
                            _ = send(fileDescriptor, nil, 0, Int32(MSG_DONTWAIT))
                            reapTransmitted()
                        }
                        next = txNext
                        if txInFlight > 0 { kickPending = true }
                    }
                    if txInFlight == 0 {
                        e += 1
                        status[e - 1] = sendWhole(frames[i], length: length, vnet: vnets[i])
                        if status[e - 1] == .queued { queued += 1 }
                        if isDead {
                            if e < count { (status + e).update(repeating: .error, count: count - e) }
                            e = count
                        }
                        continue
                    }
                }
            }
            let slot = slots[next]
            let slotStatus = CLinuxNet_load_acquire_u32(slot.assumingMemoryBound(to: UInt32.self))
            let busy = CLinuxNet_TP_STATUS_SEND_REQUEST | CLinuxNet_TP_STATUS_SENDING | CLinuxNet_TP_STATUS_WRONG_FORMAT
            if slotStatus & busy != 0 {
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
            var written: Int
            if deferred[i] != 0, let source {
                if deferred[i] == PacketBatch.pending && entry.tci == 0 && info[i].tagLength == 0 && length <= capacity {
                    // Direct receive: earlier pending frames of the ingress queue go to its own
                    // memory first, then this one's body lands here, headers as the stages left them.
                    source.materialize(batch, through: i - 1)
                    guard source.pendingIsNext(i), source.readPending(into: data, room: capacity + vnetSize, batch) else {
                        status[e - 1] = .error
                        continue
                    }
                    frames[i] = data + vnetSize
                    written = length
                } else {
                    source.materialize(batch, through: i)
                    written = FrameRewrite.copy(from: frames[i], length: Int(lengths[i]), tagLength: Int(info[i].tagLength),
                                                tci: entry.tci, into: data + vnetSize, capacity: capacity)
                }
            } else {
                written = FrameRewrite.copy(from: frames[i], length: length, tagLength: Int(info[i].tagLength),
                                            tci: entry.tci, into: data + vnetSize, capacity: capacity)
            }
            if written < 14 {
                status[e - 1] = .oversize
                continue
            }
            var header = vnets[i].shifted(by: written - Int(lengths[i]))
            // A frame without GSO is copied by the kernel into the skb's linear area as a whole
            // (hdr_len is the kernel's copy length; see "TX copy" in the header) instead of being
            // attached as a fragment of the ring page. A header that was already invalid (hdr_len
            // beyond the frame) is left alone, so the kernel still refuses it (`events.txWrongFormat`).
            if header.gsoType == 0 && written <= linearLimit && Int(header.hdrLen) <= written {
                header.hdrLen = UInt16(truncatingIfNeeded: written)
            }
            if header.gsoType != 0 { queuedGSO = true }
            header.store(to: data)
            slot.assumingMemoryBound(to: tpacket2_hdr.self).pointee.tp_len = UInt32(truncatingIfNeeded: written + vnetSize)
            CLinuxNet_store_release_u32(slot.assumingMemoryBound(to: UInt32.self), CLinuxNet_TP_STATUS_SEND_REQUEST)
            next = next + 1 == ringCount ? 0 : next + 1
            status[e - 1] = .queued
            queued += 1
            ringQueued += 1
        }
        txNext = next
        if ringQueued > 0 {
            txInFlight += ringQueued
            queuedSinceFlush += ringQueued
            kickPending = true
        }
        if e < count { (status + e).update(repeating: .ringFull, count: count - e) }
        return queued
    }

    /// One long frame by sendmsg: the vnet header, then the frame where it lies. The kernel
    /// copies it into pages of its own skb (packet_snd), which no veth needs to copy again.
    private func sendWhole(_ frame: UnsafeMutableRawPointer, length: Int, vnet: VirtioNetHeader) -> TransmitStatus {
        vnet.store(to: longFrameHeader)
        var iov = (iovec(iov_base: longFrameHeader, iov_len: Self.vnetSize), iovec(iov_base: frame, iov_len: length))
        let r: Int = withUnsafeMutablePointer(to: &iov) { p in
            p.withMemoryRebound(to: iovec.self, capacity: 2) { vectors in
                var message = msghdr()
                message.msg_iov = vectors
                message.msg_iovlen = 2
                var n = sendmsg(longFrameSocket, &message, Int32(MSG_DONTWAIT))
                if n < 0 && errno == EINTR { n = sendmsg(longFrameSocket, &message, Int32(MSG_DONTWAIT)) }
                return n
            }
        }
        if r >= 0 { return .queued }
        switch errno {
        case EAGAIN, EWOULDBLOCK, ENOBUFS: return .ringFull
        case EMSGSIZE: return .oversize
        case ENXIO, ENODEV:
            isDead = true
            return .error
        case ENETDOWN: return .error
        default:
            events.txSendErrors &+= 1
            return .error
        }
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
                    if !reapTransmitted() { events.txSendErrors &+= 1 }
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
            events.txSendErrors &+= 1
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
        events.txWrongFormat &+= 1
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
}
