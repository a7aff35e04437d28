// MonotonicClock: the monotonic clocks of the dataplane threads (the bridge thread's FDB timestamps and
// spin windows, the kick thread's spin window), in one place for the daemon and SwitchIO.

#if canImport(Glibc)
import Glibc
#endif

public enum MonotonicClock {
    /// Coarse monotonic milliseconds (wraps after 49 days; the FDB uses wrapping arithmetic).
    @inline(__always)
    public static func milliseconds() -> UInt32 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt32(truncatingIfNeeded: Int(ts.tv_sec) &* 1000 &+ Int(ts.tv_nsec) / 1_000_000)
    }

    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
