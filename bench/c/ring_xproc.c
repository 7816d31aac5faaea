/*
 * The baseline for ring.xproc.*: the netif tx exchange of bench/XenIo.Bench/Rings driven by Xen's
 * own io/ring.h macros (RING_PUSH_*_AND_CHECK_NOTIFY, RING_FINAL_CHECK_FOR_*, RING_COPY_*), a
 * netfront-like producer and a netback-like consumer in two processes (fork) over a MAP_SHARED
 * mapping, notifying each other over a Unix datagram socketpair as the C# side does.
 *
 *   gcc -O2 -o ring_xproc ring_xproc.c && ./ring_xproc COUNT WARM
 *
 * Prints one line: done= seconds= req_per_s= notifies= notify_per_req= mismatches=
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ring.h (interface version < 0x00030208) maps xen_*mb() onto the kernel's names. x86 orders
 * loads with loads and stores with stores, so rmb/wmb are acquire/release fences (compiler
 * barriers there); mb is a full fence, as Linux's virt_mb(). */
#define mb() __sync_synchronize()
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/netif.h>

#define PAGE 4096
#define STALL_MS 20000

struct stats {
    volatile uint64_t back_done, back_mismatches, back_notifies;
};

/* Payloads derived from the sequence number, exactly as NetifTxExchange.Request/Response. */
static inline void fill_request(netif_tx_request_t *r, uint64_t seq)
{
    r->gref = (uint32_t)(seq * 2654435761ULL);
    r->offset = (uint16_t)(seq & 0xFFF);
    r->flags = (uint16_t)(seq & 0xF);
    r->id = (uint16_t)(seq * 7);
    r->size = (uint16_t)(seq >> 5);
}

static inline int request_matches(const netif_tx_request_t *r, uint64_t seq)
{
    netif_tx_request_t e;
    fill_request(&e, seq);
    return r->gref == e.gref && r->offset == e.offset && r->flags == e.flags && r->id == e.id && r->size == e.size;
}

static inline int16_t response_status(uint64_t seq) { return (int16_t)((int64_t)(seq % 3) - 1); }

static inline void notify(int fd)
{
    char b = 1;
    (void)send(fd, &b, 1, MSG_DONTWAIT);
}

/* Like DatagramRingNotifier.Wait: drain what is pending, else block up to timeout_ms. */
static int wait_notified(int fd, int timeout_ms)
{
    char buf[16];
    int any = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) any = 1;
    if (any) return 1;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0) return 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) any = 1;
    return any;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* netback: take every published request (copied once), answer it, push, final-check, sleep. */
static int run_back(netif_tx_sring_t *sring, RING_IDX start, uint64_t count, int fd, struct stats *st)
{
    netif_tx_back_ring_t back;
    BACK_RING_ATTACH(&back, sring, start, PAGE);
    uint64_t done = 0, mismatches = 0, notifies = 0;
    double last = now();
    while (done < count) {
        RING_IDX rp = back.sring->req_prod;
        xen_rmb();
        if (RING_REQUEST_PROD_OVERFLOW(&back, rp)) {
            fprintf(stderr, "back: req_prod overflow\n");
            return 1;
        }
        RING_IDX cons = back.req_cons;
        int any = 0;
        while (cons != rp && done < count) {
            netif_tx_request_t req;
            RING_COPY_REQUEST(&back, cons, &req);
            if (!request_matches(&req, done)) mismatches++;
            netif_tx_response_t *rsp = RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
            rsp->id = (uint16_t)(done * 7);
            rsp->status = response_status(done);
            back.rsp_prod_pvt++;
            cons++;
            done++;
            any = 1;
        }
        back.req_cons = cons;
        if (any) {
            int n;
            RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, n);
            if (n) { notify(fd); notifies++; }
            last = now();
            continue;
        }
        int more;
        RING_FINAL_CHECK_FOR_REQUESTS(&back, more);
        if (more) continue;
        if (!wait_notified(fd, 1000) && (now() - last) * 1000 > STALL_MS) {
            fprintf(stderr, "back stalled at %llu\n", (unsigned long long)done);
            return 1;
        }
    }
    st->back_done = done;
    st->back_mismatches = mismatches;
    st->back_notifies = notifies;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s COUNT WARM\n", argv[0]);
        return 2;
    }
    uint64_t count = strtoull(argv[1], NULL, 10), warm = strtoull(argv[2], NULL, 10);
    const RING_IDX start = 0xFFFFFFFFu - 1000; /* wraps early, like the C# run */

    void *mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    netif_tx_sring_t *sring = mem;
    struct stats *st = (struct stats *)((char *)mem + PAGE);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) { perror("socketpair"); return 1; }

    /* XEN_FRONT_RING_INIT at `start` instead of 0. */
    SHARED_RING_INIT(sring);
    sring->req_prod = sring->rsp_prod = start;
    sring->req_event = sring->rsp_event = start + 1;
    netif_tx_front_ring_t front;
    FRONT_RING_ATTACH(&front, sring, start, PAGE);

    pid_t child = fork();
    if (child < 0) { perror("fork"); return 1; }
    if (child == 0) {
        close(sv[0]);
        _exit(run_back(sring, start, count, sv[1], st));
    }
    close(sv[1]);
    int fd = sv[0];

    /* netfront: fill the ring, push and notify when asked, reap responses, final-check, sleep. */
    uint64_t sent = 0, done = 0, mismatches = 0, notifies = 0;
    double t_warm = now(), last = now();
    while (done < count) {
        int produced = 0;
        while (sent < count && !RING_FULL(&front)) {
            fill_request(RING_GET_REQUEST(&front, front.req_prod_pvt), sent);
            front.req_prod_pvt++;
            sent++;
            produced = 1;
        }
        if (produced) {
            int n;
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, n);
            if (n) { notify(fd); notifies++; }
        }
        RING_IDX prod = front.sring->rsp_prod;
        xen_rmb();
        if (RING_RESPONSE_PROD_OVERFLOW(&front, prod)) { fprintf(stderr, "front: rsp_prod overflow\n"); return 1; }
        int reaped = 0;
        for (RING_IDX cons = front.rsp_cons; cons != prod; cons++) {
            netif_tx_response_t rsp;
            RING_COPY_RESPONSE(&front, cons, &rsp);
            if (rsp.id != (uint16_t)(done * 7) || rsp.status != response_status(done)) mismatches++;
            done++;
            reaped = 1;
            if (done == warm) t_warm = now();
        }
        front.rsp_cons = prod;
        if (reaped || produced) { last = now(); continue; }
        int more;
        RING_FINAL_CHECK_FOR_RESPONSES(&front, more);
        if (more) continue;
        if (!wait_notified(fd, 1000) && (now() - last) * 1000 > STALL_MS) {
            fprintf(stderr, "front stalled at %llu\n", (unsigned long long)done);
            kill(child, 9);
            return 1;
        }
    }
    double t_end = now();
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "back failed\n"); return 1; }
    mismatches += st->back_mismatches;
    uint64_t total_notifies = notifies + st->back_notifies;
    double secs = t_end - t_warm;
    printf("done=%llu seconds=%.6f req_per_s=%.1f notifies=%llu notify_per_req=%.6f mismatches=%llu\n",
           (unsigned long long)done, secs, (double)(count - warm) / secs,
           (unsigned long long)total_notifies, (double)total_notifies / (double)count,
           (unsigned long long)mismatches);
    return mismatches == 0 && st->back_done == count ? 0 : 1;
}
