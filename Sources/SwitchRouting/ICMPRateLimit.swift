// ICMPRateLimit: how often the router may send ICMP errors, as Linux limits them
// (net/ipv4/icmp.c): a global token bucket of 1000 messages a second with a burst of 50
// (icmp_msgs_per_sec, icmp_msgs_burst), and per destination one a second with a burst of 6
// (icmp_ratelimit 1000 ms, XRLIM_BURST_FACTOR). Echo replies and fragmentation-needed are not
// limited per destination (icmp_ratemask leaves them out, so path MTU discovery always gets its
// answer). The per-destination buckets live in a small table indexed by a keyed hash of the
// destination: two destinations that share a bucket share its budget, which errs on the side of
// sending fewer errors, and the table never grows.

import SwitchCore

public final class ICMPRateLimit {
    public static let perSecond: UInt32 = 1000
    public static let burst: UInt32 = 50
    public static let perDestinationBurst: UInt32 = 6
    public static let perDestinationIntervalMilliseconds: UInt32 = 1000

    var tokens: UInt32 = ICMPRateLimit.burst
    var lastRefill: UInt32 = 0
    let bucketTokens: FixedArray<UInt32>
    let bucketStamp: FixedArray<UInt32>
    let secret = UInt64.random(in: 1...UInt64.max)

    public init(buckets: Int = 256) {
        bucketTokens = FixedArray(repeating: ICMPRateLimit.perDestinationBurst, count: buckets)
        bucketStamp = FixedArray(repeating: 0, count: buckets)
    }

    /// Whether an error to `destination` may go now (and takes a token if so).
    public func allow(_ destination: UInt32, now: UInt32, perDestination: Bool = true) -> Bool {
        // Global bucket: refill by elapsed milliseconds.
        let elapsed = now &- lastRefill
        if elapsed > 0 {
            let add = UInt64(elapsed) * UInt64(ICMPRateLimit.perSecond) / 1000
            if add > 0 {
                tokens = UInt32(min(UInt64(ICMPRateLimit.burst), UInt64(tokens) + add))
                lastRefill = now
            }
        }
        guard tokens > 0 else { return false }
        if perDestination {
            var h = (UInt64(destination) ^ secret) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 32
            let b = Int(truncatingIfNeeded: h) & (bucketTokens.count - 1)
            let since = now &- bucketStamp[b]
            let refill = since / ICMPRateLimit.perDestinationIntervalMilliseconds
            if refill > 0 {
                bucketTokens[b] = min(ICMPRateLimit.perDestinationBurst, bucketTokens[b] &+ refill)
                bucketStamp[b] = now
            }
            guard bucketTokens[b] > 0 else { return false }
            bucketTokens[b] -= 1
        }
        tokens -= 1
        return true
    }
}
