// uring-reader: a bare reader like bare-reader.c, reading the port's packet socket through
// io_uring instead (tools/bench/reader-ceiling.sh, reader `uring`).
//
//   uring-reader IFNAME
//
// One multishot recv on an AF_PACKET socket bound to IFNAME (no RX ring: the kernel queues each
// frame on the socket), with buffers from a provided-buffer ring of 4096 x 2 KiB, on a ring set up
// with IORING_SETUP_DEFER_TASKRUN: the sender's side of a delivery then queues the skb and task
// work for the reader, and the copy into a buffer runs on the reader's CPU when it enters the
// kernel (io_uring_get_events, only when IORING_SQ_TASKRUN says work is pending). It busy-polls
// the completion ring on one CPU, touches the first byte of each frame and hands the buffer back.
// On SIGINT/SIGTERM it prints one JSON line, as bare-reader does: frames read, kernel entries,
// and the frames the kernel dropped because the socket's queue was full (tp_drops).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUFFERS = 4096, BUFFER_SIZE = 2048, GROUP = 0 };

static volatile sig_atomic_t stopping;
static void on_signal(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: uring-reader IFNAME\n"); return 2; }
    unsigned ifindex = if_nametoindex(argv[1]);
    if (!ifindex) { perror(argv[1]); return 1; }
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) { perror("socket"); return 1; }
    int bytes = 8 << 20;  // room for a burst while the reader is descheduled, as bare-reader's
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex };
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll)) { perror("bind"); return 1; }

    struct io_uring ring;
    struct io_uring_params params = {
        .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE,
        .cq_entries = 2 * BUFFERS,
    };
    int r = io_uring_queue_init_params(64, &ring, &params);
    if (r) { fprintf(stderr, "io_uring_queue_init_params: %s\n", strerror(-r)); return 1; }
    struct io_uring_buf_ring *buffers = mmap(NULL, BUFFERS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                                             MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (buffers == MAP_FAILED) { perror("mmap"); return 1; }
    io_uring_buf_ring_init(buffers);
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)buffers, .ring_entries = BUFFERS, .bgid = GROUP };
    r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r) { fprintf(stderr, "io_uring_register_buf_ring: %s\n", strerror(-r)); return 1; }
    unsigned char *memory = aligned_alloc(4096, (size_t)BUFFERS * BUFFER_SIZE);
    if (!memory) { perror("aligned_alloc"); return 1; }
    int mask = io_uring_buf_ring_mask(BUFFERS);
    for (int i = 0; i < BUFFERS; i++)
        io_uring_buf_ring_add(buffers, memory + (size_t)i * BUFFER_SIZE, BUFFER_SIZE, (unsigned short)i, mask, i);
    io_uring_buf_ring_advance(buffers, BUFFERS);

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    // Drops before the measurement are not counted: reading the statistics resets them.
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);

    unsigned long long frames = 0, entries = 0;
    volatile unsigned char sink = 0;
    int armed = 0;
    while (!stopping) {
        if (!armed) {
            // The multishot recv ends (no IORING_CQE_F_MORE) when it runs out of buffers or fails.
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = GROUP;
            io_uring_submit(&ring);
            armed = 1;
        }
        if (IO_URING_READ_ONCE(*ring.sq.kflags) & IORING_SQ_TASKRUN) {
            io_uring_get_events(&ring);
            entries++;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            if (!(cqe->flags & IORING_CQE_F_MORE)) armed = 0;
            if (cqe->res < 0 || !(cqe->flags & IORING_CQE_F_BUFFER)) continue;
            unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            unsigned char *b = memory + (size_t)id * BUFFER_SIZE;
            sink ^= b[0];
            io_uring_buf_ring_add(buffers, b, BUFFER_SIZE, (unsigned short)id, mask, 0);
            io_uring_buf_ring_advance(buffers, 1);
            frames++;
        }
        if (seen) io_uring_cq_advance(&ring, seen);
    }
    len = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len);
    printf("{\"mode\": \"uring\", \"frames\": %llu, \"kernel_entries\": %llu, \"kernel_drops\": %u}\n",
           frames, entries, st.tp_drops);
    return 0;
}
