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

/// Attaches a classic BPF socket filter to packet socket `fd` that accepts whole frames whose length
/// (skb->len: from the MAC header, without a tag the kernel stripped) is above `limit` when
/// `accept_longer` is non-zero, or at most `limit` otherwise, and drops the rest before they reach
/// the socket's ring. Two sockets on one interface with complementary filters split its frames by
/// size, each frame reaching exactly one of them. Returns setsockopt's result (errno set on -1).
int CLinuxNet_attach_length_filter(int fd, uint32_t limit, int accept_longer);

/// Gives the fanout group of packet socket `fd` (joined with PACKET_FANOUT_CBPF) a classic BPF
/// program (PACKET_FANOUT_DATA) that sends frames longer than `limit` to member 0 and the others
/// to member 1: the same split as the two length filters, decided once per frame for the group
/// instead of once per socket. Returns setsockopt's result (errno set on -1).
int CLinuxNet_set_fanout_length_program(int fd, uint32_t limit);

// Fanout (linux/if_packet.h). PACKET_FANOUT_FLAG_IGNORE_OUTGOING is Linux 6.2; older headers lack it.
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000
#endif
static const int CLinuxNet_PACKET_FANOUT = PACKET_FANOUT;
static const int CLinuxNet_PACKET_FANOUT_CBPF = PACKET_FANOUT_CBPF;
static const int CLinuxNet_PACKET_FANOUT_FLAG_UNIQUEID = PACKET_FANOUT_FLAG_UNIQUEID;
static const int CLinuxNet_PACKET_FANOUT_FLAG_IGNORE_OUTGOING = PACKET_FANOUT_FLAG_IGNORE_OUTGOING;

/// TPACKET_ALIGNMENT: ring frames and the data in them are aligned to this.
static const int CLinuxNet_TPACKET_ALIGNMENT = TPACKET_ALIGNMENT;
/// TPACKET2_HDRLEN: struct tpacket2_hdr (aligned) followed by struct sockaddr_ll.
static const int CLinuxNet_TPACKET2_HDRLEN = (int)TPACKET2_HDRLEN;

#endif
