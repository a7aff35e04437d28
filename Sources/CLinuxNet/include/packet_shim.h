// packet shims (see CLinuxNet.h): what an AF_PACKET port with mmap'd TPACKET_V2 rings needs that
// Swift cannot express or import on its own.
//
// - The ring slot status word (tp_status) is shared with the kernel, which writes it from softirq
//   context on another CPU. Userspace must read it with acquire semantics (so the frame bytes the
//   kernel wrote before the status are visible) and write it with release semantics (so the
//   kernel sees our frame bytes before it sees TP_STATUS_SEND_REQUEST / TP_STATUS_KERNEL).
//   Swift has no atomics on foreign memory, so the two accesses are here, `static inline` so that
//   they compile to a plain load/store plus a compiler barrier on x86 (no call per frame).
// - The TP_STATUS_* / PACKET_* macros are `(1 << n)` expressions or plain numbers; they are
//   re-exported as typed constants so the Swift side never depends on macro import rules.
#ifndef CLINUXNET_PACKET_SHIM_H
#define CLINUXNET_PACKET_SHIM_H

#include <stdint.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>

/// Reads a ring slot's tp_status with acquire ordering (__atomic_load_n, __ATOMIC_ACQUIRE).
static inline uint32_t CLinuxNet_load_acquire_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/// Writes a ring slot's tp_status with release ordering (__atomic_store_n, __ATOMIC_RELEASE).
static inline void CLinuxNet_store_release_u32(uint32_t *p, uint32_t value) {
    __atomic_store_n(p, value, __ATOMIC_RELEASE);
}

// Socket options of SOL_PACKET (linux/if_packet.h).
static const int CLinuxNet_SOL_PACKET = SOL_PACKET;
static const int CLinuxNet_PACKET_ADD_MEMBERSHIP = PACKET_ADD_MEMBERSHIP;
static const int CLinuxNet_PACKET_RX_RING = PACKET_RX_RING;
static const int CLinuxNet_PACKET_STATISTICS = PACKET_STATISTICS;
static const int CLinuxNet_PACKET_VERSION = PACKET_VERSION;
static const int CLinuxNet_PACKET_RESERVE = PACKET_RESERVE;
static const int CLinuxNet_PACKET_TX_RING = PACKET_TX_RING;
static const int CLinuxNet_PACKET_LOSS = PACKET_LOSS;
static const int CLinuxNet_PACKET_VNET_HDR = PACKET_VNET_HDR;
static const int CLinuxNet_PACKET_QDISC_BYPASS = PACKET_QDISC_BYPASS;
static const int CLinuxNet_PACKET_IGNORE_OUTGOING = PACKET_IGNORE_OUTGOING;
static const int CLinuxNet_PACKET_MR_PROMISC = PACKET_MR_PROMISC;
static const int CLinuxNet_TPACKET_V2 = TPACKET_V2;
static const uint16_t CLinuxNet_ETH_P_ALL = ETH_P_ALL;

// tp_status bits of RX ring slots.
static const uint32_t CLinuxNet_TP_STATUS_KERNEL = TP_STATUS_KERNEL;
static const uint32_t CLinuxNet_TP_STATUS_USER = TP_STATUS_USER;
static const uint32_t CLinuxNet_TP_STATUS_VLAN_VALID = TP_STATUS_VLAN_VALID;
static const uint32_t CLinuxNet_TP_STATUS_VLAN_TPID_VALID = TP_STATUS_VLAN_TPID_VALID;
static const uint32_t CLinuxNet_TP_STATUS_COPY = TP_STATUS_COPY;
static const int CLinuxNet_PACKET_COPY_THRESH = PACKET_COPY_THRESH;
// tp_status values of TX ring slots.
static const uint32_t CLinuxNet_TP_STATUS_AVAILABLE = TP_STATUS_AVAILABLE;
static const uint32_t CLinuxNet_TP_STATUS_SEND_REQUEST = TP_STATUS_SEND_REQUEST;
static const uint32_t CLinuxNet_TP_STATUS_SENDING = TP_STATUS_SENDING;
static const uint32_t CLinuxNet_TP_STATUS_WRONG_FORMAT = TP_STATUS_WRONG_FORMAT;

/// TPACKET_ALIGNMENT: ring frames and the data in them are aligned to this.
static const int CLinuxNet_TPACKET_ALIGNMENT = TPACKET_ALIGNMENT;
/// TPACKET2_HDRLEN: struct tpacket2_hdr (aligned) followed by struct sockaddr_ll.
static const int CLinuxNet_TPACKET2_HDRLEN = (int)TPACKET2_HDRLEN;

#endif
