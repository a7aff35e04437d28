// Test helpers on any port: transmit from an array of entries and get each entry's status back.

import SwitchCore

extension FramePort {
    /// Queues `entries` of `batch` and returns what the port made of each (allocates: tests only).
    public func transmit(_ batch: PacketBatch, _ entries: [EgressEntry]) -> [TransmitStatus] {
        var status = [TransmitStatus](repeating: .error, count: entries.count)
        let queued = entries.withUnsafeBufferPointer { e in
            status.withUnsafeMutableBufferPointer { transmit(batch, entries: e.baseAddress!, count: e.count, status: $0.baseAddress!) }
        }
        precondition(queued == status.filter { $0 == .queued }.count, "a port's count and its statuses disagree")
        return status
    }
}
