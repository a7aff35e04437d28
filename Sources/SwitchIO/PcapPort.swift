// PcapPort: a port backed by capture files, through libpcap. It replays an input capture as the
// frames the port receives and records every frame the switch sends on it into an output capture,
// so the forwarding logic is testable end to end without root or a network. Also here: reading
// and writing whole capture files (`PcapFile`) and compiling BPF filter expressions (`BPFFilter`)
// for `userswitchctl capture`.
//
// Design notes
// - Not on the fast path, but it keeps the port contract anyway: frames are copied into a receive
//   pool and a transmit pool allocated once, so a benchmark or a test through this port measures
//   the pipeline, not this port's allocations.
// - Receive returns at most one batch of frames per call and 0 once the input is exhausted
//   (`atEndOfInput`). Frames larger than a pool buffer are skipped and counted.
// - Transmit applies the egress VLAN rewrite (`FrameRewrite.copy`) exactly as a real port would, so
//   the output capture shows the frames as they would leave on the wire, tag pushed or popped.
//   The offload header is not written (pcap has no place for it): a CHECKSUM_PARTIAL frame is
//   recorded with its partial checksum, as tcpdump shows such frames on a host.
// - `flush()` writes the queued frames (timestamped with the time of the flush) and flushes the
//   file, so a reader of the output sees complete batches.
// - Only Ethernet captures (DLT_EN10MB) are accepted as input.
// - Used by one thread at a time; Sendable only so that it can be handed to a bridge thread.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPcap
import SwitchCore

/// A libpcap failure, with libpcap's own message.
public struct PcapError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// libpcap's error buffer, PCAP_ERRBUF_SIZE bytes.
private func withErrorBuffer<T>(_ body: (UnsafeMutablePointer<CChar>) -> T) -> (T, String) {
    var buffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (result, message)
}

/// Snapshot length of the captures this module writes: libpcap's maximum, so no frame (not even
/// a GSO super-frame) is cut.
private let captureSnapshotLength: Int32 = 262_144

public final class PcapPort: FramePort, @unchecked Sendable {
    /// The input capture, if any.
    public let inputPath: String?
    /// The output capture, if any.
    public let outputPath: String?
    /// True once every input frame was received (always true without input).
    public private(set) var atEndOfInput: Bool
    /// The error that ended the input early, if any (a truncated file, say).
    public private(set) var inputError: PcapError?
    /// Input records larger than a pool buffer, skipped (`rxTruncated`). Traffic itself is
    /// counted by the engine.
    public internal(set) var events = PortEvents()
    /// Bytes of each pool buffer: the largest frame the port carries.
    public let bufferSize: Int

    private var input: OpaquePointer?
    private var deadHandle: OpaquePointer?
    private var dumper: OpaquePointer?
    private let bufferCount: Int
    private let rxMemory: FixedBytes
    private let txMemory: FixedBytes
    private let txLength: FixedArray<UInt32>
    private var rxPool: UnsafeMutableRawPointer { rxMemory.base }
    private var txPool: UnsafeMutableRawPointer { txMemory.base }
    private var txCount = 0

    /// Opens the input capture for reading and/or creates (truncates) the output capture.
    /// - Parameters:
    ///   - input: capture file to replay as received frames (nil: the port never receives).
    ///   - output: capture file to record transmitted frames in (nil: transmitted frames are dropped).
    ///   - bufferCount: frames per receive and frames queued between flushes.
    ///   - bufferSize: the largest frame carried, in bytes.
    /// - Throws: `PcapError` with libpcap's message (no such file, not a capture, not Ethernet).
    public init(input: String? = nil, output: String? = nil, bufferCount: Int = 256,
                bufferSize: Int = 65536 + 64) throws(PcapError) {
        precondition(bufferCount > 0 && bufferSize >= 64)
        self.inputPath = input
        self.outputPath = output
        self.bufferCount = bufferCount
        self.bufferSize = bufferSize
        var inputHandle: OpaquePointer? = nil
        var dead: OpaquePointer? = nil
        var dump: OpaquePointer? = nil
        if let input {
            let (handle, message) = withErrorBuffer { pcap_open_offline(input, $0) }
            guard let handle else { throw PcapError("cannot open capture '\(input)': \(message)") }
            let linkType = pcap_datalink(handle)
            guard linkType == DLT_EN10MB else {
                pcap_close(handle)
                throw PcapError("capture '\(input)' has link type \(linkType), not Ethernet (DLT_EN10MB)")
            }
            inputHandle = handle
        }
        if let output {
            dead = pcap_open_dead(DLT_EN10MB, captureSnapshotLength)
            guard let dead else {
                if let inputHandle { pcap_close(inputHandle) }
                throw PcapError("pcap_open_dead failed")
            }
            dump = pcap_dump_open(dead, output)
            if dump == nil {
                let message = String(cString: pcap_geterr(dead))
                pcap_close(dead)
                if let inputHandle { pcap_close(inputHandle) }
                throw PcapError("cannot create capture '\(output)': \(message)")
            }
            // Write the file header now, so that the output is a valid (empty) capture at once.
            pcap_dump_flush(dump)
        }
        self.input = inputHandle
        self.deadHandle = dead
        self.dumper = dump
        atEndOfInput = inputHandle == nil
        rxMemory = FixedBytes(byteCount: bufferCount * bufferSize)
        txMemory = FixedBytes(byteCount: bufferCount * bufferSize)
        txLength = FixedArray(repeating: 0, count: bufferCount)
    }

    deinit { close() }

    /// Flushes and closes both captures. Idempotent; also done by deinit.
    public func close() {
        flush()
        if let dumper { pcap_dump_close(dumper) }
        if let deadHandle { pcap_close(deadHandle) }
        if let input { pcap_close(input) }
        dumper = nil
        deadHandle = nil
        input = nil
        atEndOfInput = true
    }

    // MARK: FramePort

    /// The next frames of the input capture; 0 at its end.
    public func receive(into batch: PacketBatch) -> Int {
        batch.count = 0
        guard let input, !atEndOfInput else { return 0 }
        let want = min(batch.capacity, bufferCount)
        var got = 0
        var header: UnsafeMutablePointer<pcap_pkthdr>? = nil
        var data: UnsafePointer<UInt8>? = nil
        while got < want {
            let r = pcap_next_ex(input, &header, &data)
            if r == 1, let header, let data {
                let length = Int(header.pointee.caplen)
                guard length <= bufferSize else { events.rxTruncated &+= 1; continue }
                let slot = rxPool + got * bufferSize
                slot.copyMemory(from: data, byteCount: length)
                batch.frames[got] = slot
                batch.lengths[got] = UInt32(length)
                batch.vnet[got] = .none
                got += 1
            } else if r == 0 {
                continue  // live captures only: a timeout
            } else {
                if r != PCAP_ERROR_BREAK {  // -2: end of file
                    inputError = PcapError("reading capture '\(inputPath ?? "")': \(String(cString: pcap_geterr(input)))")
                }
                atEndOfInput = true
                break
            }
        }
        batch.count = got
        return got
    }

    /// Nothing to give back: the pool buffers are reused by the next receive.
    public func releaseReceived() {}

    public func updateEvents() {}

    /// Queues the entries' frames for the output capture; without an output file every entry is
    /// `.error`, beyond the pool `.ringFull`, a frame larger than a buffer `.oversize`.
    public func transmit(_ batch: PacketBatch, entries: UnsafePointer<EgressEntry>, count: Int,
                         status: UnsafeMutablePointer<TransmitStatus>) -> Int {
        if count <= 0 { return 0 }
        guard dumper != nil else {
            status.update(repeating: .error, count: count)
            return 0
        }
        var queued = 0
        for e in 0..<count {
            guard txCount < bufferCount else {
                (status + e).update(repeating: .ringFull, count: count - e)
                break
            }
            let entry = entries[e]
            let f = Int(entry.frame)
            let written = FrameRewrite.copy(from: batch.frames[f], length: Int(batch.lengths[f]),
                                            tagLength: Int(batch.info[f].tagLength), tci: entry.tci,
                                            into: txPool + txCount * bufferSize, capacity: bufferSize)
            guard written >= 0 else { status[e] = .oversize; continue }
            txLength[txCount] = UInt32(written)
            txCount += 1
            status[e] = .queued
            queued += 1
        }
        return queued
    }

    /// Writes the frames queued since the last flush to the output capture and flushes the file.
    public func flush() {
        guard let dumper, txCount > 0 else { return }
        var now = timeval()
        gettimeofday(&now, nil)
        let user = UnsafeMutablePointer<UInt8>(dumper)
        for i in 0..<txCount {
            var header = pcap_pkthdr(ts: now, caplen: txLength[i], len: txLength[i])
            pcap_dump(user, &header, (txPool + i * bufferSize).assumingMemoryBound(to: UInt8.self))
        }
        txCount = 0
        pcap_dump_flush(dumper)
    }
}

/// Whole capture files at once, for tests and tools.
public enum PcapFile {
    /// Writes `frames` (Ethernet, FCS excluded) as an Ethernet capture at `path`, replacing it.
    /// Frames are timestamped one microsecond apart.
    public static func write(frames: [[UInt8]], to path: String) throws(PcapError) {
        guard let dead = pcap_open_dead(DLT_EN10MB, captureSnapshotLength) else {
            throw PcapError("pcap_open_dead failed")
        }
        defer { pcap_close(dead) }
        guard let dumper = pcap_dump_open(dead, path) else {
            throw PcapError("cannot create capture '\(path)': \(String(cString: pcap_geterr(dead)))")
        }
        let user = UnsafeMutablePointer<UInt8>(dumper)
        for (i, frame) in frames.enumerated() {
            var header = pcap_pkthdr(ts: timeval(tv_sec: 1_700_000_000, tv_usec: i % 1_000_000),
                                     caplen: UInt32(frame.count), len: UInt32(frame.count))
            frame.withUnsafeBufferPointer { pcap_dump(user, &header, $0.baseAddress) }
        }
        let flushed = pcap_dump_flush(dumper)
        pcap_dump_close(dumper)
        if flushed != 0 { throw PcapError("cannot write capture '\(path)'") }
    }

    /// Every frame of the capture at `path`, in order (as captured: `caplen` bytes each).
    public static func read(_ path: String) throws(PcapError) -> [[UInt8]] {
        let (opened, message) = withErrorBuffer { pcap_open_offline(path, $0) }
        guard let handle = opened else { throw PcapError("cannot open capture '\(path)': \(message)") }
        defer { pcap_close(handle) }
        var frames: [[UInt8]] = []
        var header: UnsafeMutablePointer<pcap_pkthdr>? = nil
        var data: UnsafePointer<UInt8>? = nil
        while true {
            let r = pcap_next_ex(handle, &header, &data)
            if r == 1, let header, let data {
                frames.append(Array(UnsafeBufferPointer(start: data, count: Int(header.pointee.caplen))))
            } else if r == PCAP_ERROR_BREAK {
                return frames
            } else if r != 0 {
                throw PcapError("reading capture '\(path)': \(String(cString: pcap_geterr(handle)))")
            }
        }
    }
}

/// One classic BPF instruction (`struct bpf_insn`, the same layout as the kernel's
/// `struct sock_filter` for SO_ATTACH_FILTER).
public struct BPFInstruction: Equatable, Sendable {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32
    public init(code: UInt16, jt: UInt8, jf: UInt8, k: UInt32) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }
}

/// A compiled tcpdump-style filter expression ("arp or icmp", "vlan 10 and host 10.0.0.1").
public struct BPFFilter: Equatable, Sendable {
    public let expression: String
    public let instructions: [BPFInstruction]

    /// Compiles `expression` for Ethernet frames with libpcap (optimised), without any device.
    /// - Throws: `PcapError` with libpcap's message, e.g. "syntax error", "unknown host 'x'".
    public static func compile(expression: String, snapshotLength: Int32 = 262_144) throws(PcapError) -> BPFFilter {
        guard let dead = pcap_open_dead(DLT_EN10MB, snapshotLength) else {
            throw PcapError("pcap_open_dead failed")
        }
        defer { pcap_close(dead) }
        var program = bpf_program()
        guard pcap_compile(dead, &program, expression, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw PcapError("invalid filter '\(expression)': \(String(cString: pcap_geterr(dead)))")
        }
        defer { pcap_freecode(&program) }
        let instructions = UnsafeBufferPointer(start: program.bf_insns, count: Int(program.bf_len)).map {
            BPFInstruction(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k)
        }
        return BPFFilter(expression: expression, instructions: instructions)
    }

    /// Whether the filter accepts the frame (Ethernet header first). Allocation-free.
    public func matches(_ frame: UnsafeRawPointer, length: Int) -> Bool {
        instructions.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: bpf_insn.self) { insns in
                var program = bpf_program(bf_len: UInt32(insns.count),
                                          bf_insns: UnsafeMutablePointer(mutating: insns.baseAddress))
                var header = pcap_pkthdr(ts: timeval(), caplen: UInt32(length), len: UInt32(length))
                return pcap_offline_filter(&program, &header, frame.assumingMemoryBound(to: UInt8.self)) != 0
            }
        }
    }
}
