// bare-reader: the cheapest reader a userspace switch port can be, for the harness's generator
// ceiling (tools/bench/README.md, "Generator ceiling").
//
//   bare-reader IFNAME ring|recvmmsg
//
// Binds one AF_PACKET socket (ETH_P_ALL) to IFNAME and reads every frame until SIGINT/SIGTERM,
// busy-polling on one CPU, touching the first byte of each frame and nothing else: no switching,
// no transmit. `ring` reads a TPACKET_V2 RX ring of the same shape as userswitch's small ring
// (4096 slots of 2 KiB); `recvmmsg` reads batches of 64 with recvmmsg(MSG_DONTWAIT), as Open
// vSwitch's netdev datapath does. On exit it prints one JSON line: frames read, seconds, and the
// frames the kernel dropped because the reader fell behind (tp_drops). A reader that drops is not
// a ceiling: the kernel's drop path is cheaper than a delivery, so the harness rejects such a run.
// The kernel's side of every delivery runs on the sender's CPU (veth transmits in the sender's
// context), which is what the ceiling measures.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { SLOTS = 4096, SLOT_SIZE = 2048, BLOCK_SIZE = 1 << 16, BATCH = 64 };

static volatile sig_atomic_t stopping;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "ring") && strcmp(argv[2], "recvmmsg"))) {
        fprintf(stderr, "usage: bare-reader IFNAME ring|recvmmsg\n");
        return 2;
    }
    int ring = !strcmp(argv[2], "ring");
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) { perror(argv[1]); return 1; }
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) { perror("socket"); return 1; }
    unsigned char *map = NULL;
    if (ring) {
        int version = TPACKET_V2;
        struct tpacket_req req = { .tp_block_size = BLOCK_SIZE, .tp_frame_size = SLOT_SIZE,
                                   .tp_block_nr = SLOTS * SLOT_SIZE / BLOCK_SIZE, .tp_frame_nr = SLOTS };
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) ||
            setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) { perror("PACKET_RX_RING"); return 1; }
        map = mmap(NULL, (size_t)SLOTS * SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) { perror("mmap"); return 1; }
    } else {
        int bytes = 8 << 20;  // room for a burst while the reader is descheduled
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    }
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex };
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll)) { perror("bind"); return 1; }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static unsigned char buffers[BATCH][SLOT_SIZE];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){ .iov_base = buffers[i], .iov_len = SLOT_SIZE };
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // Drops before the measurement (the socket existed before traffic started) are not counted:
    // reading the statistics resets them.
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);

    unsigned long long frames = 0;
    unsigned head = 0;
    volatile unsigned char sink = 0;
    double start = seconds();
    while (!stopping) {
        if (ring) {
            for (int n = 0; n < BATCH; n++) {
                struct tpacket2_hdr *h = (struct tpacket2_hdr *)(map + (size_t)head * SLOT_SIZE);
                if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) break;
                sink ^= ((unsigned char *)h)[h->tp_mac];
                __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
                head = (head + 1) % SLOTS;
                frames++;
            }
        } else {
            int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            for (int i = 0; i < n; i++) sink ^= buffers[i][0];
            if (n > 0) frames += (unsigned long long)n;
        }
    }
    double elapsed = seconds() - start;
    len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);
    printf("{\"mode\": \"%s\", \"frames\": %llu, \"seconds\": %.3f, \"kernel_drops\": %u}\n",
           argv[2], frames, elapsed, st.tp_drops);
    return 0;
}
