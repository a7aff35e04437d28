// bare-reader: the cheapest reader a userspace switch port can be, for the harness's generator
// ceiling (tools/bench/README.md, "Generator ceiling").
//
//   [BACKOFF=N] bare-reader IFNAME ring|ring-userswitch|ring-v3|recvmmsg|none [SLOTS SLOT_SIZE]
//
// Binds one AF_PACKET socket (ETH_P_ALL) to IFNAME and reads every frame until SIGINT/SIGTERM,
// busy-polling on one CPU, touching the first byte of each frame and nothing else: no switching,
// no transmit. `ring` reads a TPACKET_V2 RX ring of the same shape as userswitch's small ring
// (4096 slots of 2 KiB, or SLOTS slots of SLOT_SIZE bytes: reader-ceiling.sh compares
// geometries); `ring-userswitch` reads the same ring with userswitch's socket setup around it
// (PacketSocketPort+Receive.swift, "One RX socket": PACKET_VNET_HDR and PACKET_COPY_THRESH), so
// that the kernel does per frame what it does for userswitch;
// `ring-v3` reads a TPACKET_V3 ring (SLOTS blocks of SLOT_SIZE bytes, default 16 of 512 KiB),
// where the kernel packs frames into a block and hands the block over whole, so the reader writes
// one status word per block instead of one per frame;
// `recvmmsg` reads batches of 64 with recvmmsg(MSG_DONTWAIT), as Open vSwitch's netdev datapath
// does; `none` opens no socket at all (the kernel drops each frame), the sender's own ceiling.
// BACKOFF=N makes a V2 ring reader wait N pause instructions after a pass that found the ring
// empty, instead of reading the head slot's status word again at once while the kernel writes it.
// On exit it prints one JSON line: frames read, seconds, and the
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

enum { DEFAULT_SLOTS = 4096, DEFAULT_SLOT_SIZE = 2048, BLOCK_SIZE = 1 << 16, BATCH = 64, BUFFER = 2048 };

static volatile sig_atomic_t stopping;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if ((argc != 3 && argc != 5) ||
        (strcmp(argv[2], "ring") && strcmp(argv[2], "ring-userswitch") && strcmp(argv[2], "ring-v3") &&
         strcmp(argv[2], "recvmmsg") && strcmp(argv[2], "none"))) {
        fprintf(stderr, "usage: bare-reader IFNAME ring|ring-userswitch|ring-v3|recvmmsg|none [SLOTS SLOT_SIZE]\n");
        return 2;
    }
    unsigned slots = DEFAULT_SLOTS, slot_size = DEFAULT_SLOT_SIZE;
    if (argc == 5) {
        slots = (unsigned)strtoul(argv[3], NULL, 0);
        slot_size = (unsigned)strtoul(argv[4], NULL, 0);
        // The ring is built of 64 KiB blocks, and the kernel wants slots that tile a block and
        // a whole number of blocks; 128 bytes holds the header and a 64-byte frame.
        if (strcmp(argv[2], "ring-v3") && (slots == 0 || slot_size < 128 || slot_size % 16 || slot_size > BLOCK_SIZE ||
            BLOCK_SIZE % slot_size || (unsigned long long)slots * slot_size % BLOCK_SIZE)) {
            fprintf(stderr, "bare-reader: %s x %s: slots must be a power of two from 128 bytes to 64 KiB and fill whole 64 KiB blocks\n",
                    argv[3], argv[4]);
            return 2;
        }
    }
    int v3 = !strcmp(argv[2], "ring-v3");
    if (!strcmp(argv[2], "none")) {
        // No socket at all: what the sender offers when nothing reads the port.
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        double start = seconds();
        while (!stopping) pause();
        printf("{\"mode\": \"none\", \"frames\": 0, \"seconds\": %.3f, \"kernel_drops\": 0}\n", seconds() - start);
        return 0;
    }
    int ring = strcmp(argv[2], "recvmmsg") != 0 && !v3;
    int as_userswitch = !strcmp(argv[2], "ring-userswitch");
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) { perror(argv[1]); return 1; }
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex };
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) { perror("socket"); return 1; }
    if (as_userswitch) {
        int on = 1, bytes = 8 << 20;
        if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on)) { perror("PACKET_VNET_HDR"); return 1; }
        // Long frames would be queued on the socket (none in the sink): the kernel checks the
        // threshold per frame all the same.
        if (setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &on, sizeof on)) { perror("PACKET_COPY_THRESH"); return 1; }
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    }
    unsigned char *map = NULL;
    // TPACKET_V3: frames packed into blocks (here SLOTS x SLOT_SIZE bytes, default 16 blocks of
    // 512 KiB), handed over a block at a time; the retire timer (1 ms) closes a block that does
    // not fill.
    unsigned v3_blocks = argc == 5 ? slots : 16, v3_block_size = argc == 5 ? slot_size : 1u << 19;
    if (v3) {
        int version = TPACKET_V3;
        struct tpacket_req3 req = { .tp_block_size = v3_block_size, .tp_block_nr = v3_blocks,
                                    .tp_frame_size = 2048, .tp_frame_nr = v3_block_size / 2048 * v3_blocks,
                                    .tp_retire_blk_tov = 1 };
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) ||
            setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) { perror("PACKET_RX_RING v3"); return 1; }
        map = mmap(NULL, (size_t)v3_blocks * v3_block_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) { perror("mmap"); return 1; }
    }
    if (ring) {
        int version = TPACKET_V2;
        struct tpacket_req req = { .tp_block_size = BLOCK_SIZE, .tp_frame_size = slot_size,
                                   .tp_block_nr = slots * slot_size / BLOCK_SIZE, .tp_frame_nr = slots };
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) ||
            setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) { perror("PACKET_RX_RING"); return 1; }
        map = mmap(NULL, (size_t)slots * slot_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) { perror("mmap"); return 1; }
    } else {
        int bytes = 8 << 20;  // room for a burst while the reader is descheduled
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    }
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll)) { perror("bind"); return 1; }
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static unsigned char buffers[BATCH][BUFFER];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){ .iov_base = buffers[i], .iov_len = BUFFER };
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // Drops before the measurement (the socket existed before traffic started) are not counted:
    // reading the statistics resets them.
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);

    // BACKOFF=N: after a pass that found the ring empty, N pause instructions before the next
    // look at the head slot, whose line the kernel is about to write.
    unsigned backoff = getenv("BACKOFF") ? (unsigned)strtoul(getenv("BACKOFF"), NULL, 0) : 0;
    unsigned long long frames = 0;
    unsigned head = 0;
    volatile unsigned char sink = 0;
    double start = seconds();
    while (!stopping) {
        if (v3) {
            struct tpacket_block_desc *b = (struct tpacket_block_desc *)(map + (size_t)head * v3_block_size);
            if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) continue;
            unsigned char *f = (unsigned char *)b + b->hdr.bh1.offset_to_first_pkt;
            for (unsigned i = 0; i < b->hdr.bh1.num_pkts; i++) {
                struct tpacket3_hdr *h = (struct tpacket3_hdr *)f;
                sink ^= f[h->tp_mac];
                f += h->tp_next_offset;
            }
            frames += b->hdr.bh1.num_pkts;
            __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            head = (head + 1) % v3_blocks;
        } else if (ring) {
            int n = 0;
            for (; n < BATCH; n++) {
                struct tpacket2_hdr *h = (struct tpacket2_hdr *)(map + (size_t)head * slot_size);
                if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) break;
                sink ^= ((unsigned char *)h)[h->tp_mac];
                __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
                head = (head + 1) % slots;
                frames++;
            }
            if (n == 0) for (unsigned i = 0; i < backoff; i++) __builtin_ia32_pause();
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
