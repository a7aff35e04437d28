// packet shims: the status word accesses are `static inline` in include/packet_shim.h (they are per
// frame and must not cost a call); only the set-up helper below lives here.
#include "packet_shim.h"

#include <linux/filter.h>

int CLinuxNet_attach_length_filter(int fd, uint32_t limit, int accept_longer) {
    // A = skb->len; if A > limit goto longer else goto shorter.
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, limit, accept_longer ? 1 : 0, accept_longer ? 0 : 1),
        BPF_STMT(BPF_RET | BPF_K, 0),          // drop
        BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFFu), // accept the whole frame
    };
    struct sock_fprog program = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
}

int CLinuxNet_set_fanout_length_program(int fd, uint32_t limit) {
    // A = skb->len; if A > limit return 0 (member 0) else return 1 (member 1). Unlike a socket
    // filter, the group's program runs before af_packet pushes the MAC header back
    // (packet_rcv_fanout), so skb->len counts from the network header: compare with the limit
    // less the 14-byte Ethernet header (a tag the kernel stripped is in neither length).
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, limit - ETH_HLEN, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 1),
    };
    struct sock_fprog program = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
    return setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &program, sizeof(program));
}
