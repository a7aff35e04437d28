// CPrefetch: software prefetch for Swift, which has no prefetch builtin.
//
// Header-only on purpose: the wrapper is `static inline`, so the Swift compiler imports it through
// Clang and inlines it into the caller as a single prefetch instruction (prefetcht0 on x86_64,
// prfm pldl1keep on arm64) with no call. Used by the FDB's batched lookup (SwitchCore/MACTable.swift)
// to start the cache misses of a whole batch before the first probe.
#ifndef CPREFETCH_H
#define CPREFETCH_H

/// Hints the CPU to bring the cache line holding `address` into every cache level, for reading.
/// Never faults, whatever the address. The corresponding builtin is `__builtin_prefetch(p, 0, 3)`.
static inline __attribute__((always_inline)) void CPrefetch_read(const void *_Nonnull address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
