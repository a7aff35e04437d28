// packet shims: the status word accesses are `static inline` in include/packet_shim.h (they are per
// frame and must not cost a call); only the set-up helpers below live here.
#include "packet_shim.h"

#include <linux/filter.h>

/// Installs, with setsockopt(fd, level, option), the classic BPF program
/// "return skb->len > threshold ? longer : shorter" that both helpers below need.
static int set_length_program(int fd, int level, int option, uint32_t threshold, uint32_t longer, uint32_t shorter) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, threshold, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, longer),
        BPF_STMT(BPF_RET | BPF_K, shorter),
    };
    struct sock_fprog program = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
    return setsockopt(fd, level, option, &program, sizeof(program));
}

int CLinuxNet_attach_length_filter(int fd, uint32_t limit, int accept_longer) {
    // A socket filter returns how many bytes to keep: 0 drops, 0xFFFFFFFF keeps the whole frame.
    uint32_t keep = 0xFFFFFFFFu, drop = 0;
    return set_length_program(fd, SOL_SOCKET, SO_ATTACH_FILTER, limit,
                              accept_longer ? keep : drop, accept_longer ? drop : keep);
}

int CLinuxNet_set_fanout_length_program(int fd, uint32_t limit) {
    // A fanout program returns the member: long frames to member 0, the others to member 1. Unlike
    // a socket filter, it runs before af_packet pushes the MAC header back (packet_rcv_fanout), so
    // skb->len counts from the network header: compare with the limit less the 14-byte Ethernet
    // header (a tag the kernel stripped is in neither length).
    return set_length_program(fd, SOL_PACKET, PACKET_FANOUT_DATA, limit - ETH_HLEN, 0, 1);
}
