/* Memory after a burst. N workers (200; 20 under valgrind) answer a
 * ping, so every channel has been used once both ways; the master's VmRSS then is the
 * baseline. Then:
 *   A. from one handler call (Melon-style), the master queues a 1 MiB burst (64 x 16 KiB)
 *      to each worker in turn; each worker checks its frames (order, content) and
 *      confirms. Once every worker confirmed, the master's queues are empty and it must
 *      have given back what the bursts needed beyond a small cache: VmRSS at most
 *      TX_KEEP_KB per idle worker above the baseline (each peer used to keep up to 64
 *      spare 64 KiB chunks: 275-385 KiB per worker here).
 *   B. the receive side: BIG_N workers get 4 frames of 1 MiB each; each measures its own
 *      VmRSS before and, from a 0 ms timer after the last frame (the receive pass has
 *      ended), after, and reports the growth: at most RX_KEEP_KB (the buffer grown for a
 *      1 MiB frame used to stay, up to 4 MiB, for good).
 * The RSS bounds are not checked under valgrind (its own allocator and RSS); everything
 * else is. */
#include <stdint.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_PING 8101  /* master -> worker */
#define T_PONG 8102  /* worker -> master: its index */
#define T_DATA 8103  /* master -> worker: phase A, 16 KiB */
#define T_DONE 8104  /* worker -> master: phase A received */
#define T_BIG 8105   /* master -> worker: phase B, 1 MiB */
#define T_BDONE 8106 /* worker -> master: struct bdone */
#define MAX_N 200
#define SIZE (16 * 1024)
#define FRAMES 64
#define BIG (1024 * 1024)
#define BIG_FRAMES 4
#define BIG_N 8
#define TX_KEEP_KB 160
#define RX_KEEP_KB 512

struct bdone {
    uint32_t i;
    long rss_before, rss_after; /* the worker's VmRSS, kB */
};

static unsigned n;
static mln_fork_t *kids[MAX_N];
static unsigned pongs, dones, bdones;
static long rss_base, rss_after;
static int finished;
static uint32_t me; /* worker: its index */
static unsigned got;
static long wrss_before;
static unsigned char msg[BIG];

static unsigned char pat(uint32_t seq, size_t i) { return (unsigned char)(i * 7 + seq * 13 + (i >> 10)); }

static void fill(size_t len, uint32_t seq)
{
    size_t i;
    for (i = 0; i < len; ++i) msg[i] = pat(seq, i);
}

static void check_frame(const unsigned char *b, size_t len, uint32_t seq)
{
    size_t i;
    for (i = 0; i < len; i += 509) CHECK(b[i] == pat(seq, i));
    CHECK(b[len - 1] == pat(seq, len - 1));
}

/* ---- worker ---- */

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    CHECK(len == sizeof(me));
    memcpy(&me, buf, sizeof(me));
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, &me, sizeof(me)) == 0);
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    CHECK(len == SIZE);
    check_frame(buf, len, got);
    if (++got < FRAMES) return;
    got = 0;
    wrss_before = rss_kb();
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &me, sizeof(me)) == 0);
}

/* After the receive pass that delivered the last 1 MiB frame. */
static void worker_report(mln_event_t *ev, void *data)
{
    struct bdone d;
    (void)data;
    memset(&d, 0, sizeof(d));
    d.i = me;
    d.rss_before = wrss_before;
    d.rss_after = rss_kb();
    CHECK(mln_ipc_worker_send_prepare(ev, T_BDONE, &d, sizeof(d)) == 0);
}

static void worker_big(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    CHECK(len == BIG);
    check_frame(buf, len, 1000 + got);
    if (++got < BIG_FRAMES) return;
    CHECK(mln_event_timer_set(ev, 0, NULL, worker_report) != NULL);
}

/* ---- master ---- */

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: pongs %u, dones %u, bdones %u of %u\n", pongs, dones, bdones, n);
    exit(3);
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint32_t i, k, f;
    (void)u;
    CHECK(len == sizeof(i));
    memcpy(&i, buf, sizeof(i));
    CHECK(i < n && f_ptr == kids[i]);
    if (++pongs < n) return;
    /* Every channel was used both ways: the baseline. */
    rss_base = rss_kb();
    /* Phase A: a 1 MiB burst to every worker, from this one handler call. */
    for (k = 0; k < n; ++k)
        for (f = 0; f < FRAMES; ++f) {
            fill(SIZE, f);
            CHECK(mln_ipc_master_send_prepare(ev, T_DATA, msg, SIZE, kids[k]) == 0);
        }
}

static void measure(mln_event_t *ev, void *data)
{
    mln_ipc_stats_t s;
    uint32_t k, f;
    (void)data;
    for (k = 0; k < n; ++k) {
        CHECK(mln_ipc_stats_get(kids[k], &s) == 0);
        CHECK(s.queued_bytes == 0 && s.queued_frames == 0);
        CHECK(s.frames_sent == 1 + FRAMES);
    }
    rss_after = rss_kb();
    fprintf(stderr, "master VmRSS: %ld kB before the bursts, %ld kB after (%ld kB per idle "
            "worker above the baseline; bound %d)\n", rss_base, rss_after,
            (rss_after - rss_base) / (long)n, TX_KEEP_KB);
    if (!valgrind()) CHECK(rss_after - rss_base <= (long)n * TX_KEEP_KB);
    /* Phase B: 4 x 1 MiB to a few workers. */
    for (f = 0; f < BIG_FRAMES; ++f) {
        fill(BIG, 1000 + f);
        for (k = 0; k < BIG_N && k < n; ++k)
            CHECK(mln_ipc_master_send_prepare(ev, T_BIG, msg, BIG, kids[k]) == 0);
    }
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint32_t i;
    (void)u;
    CHECK(len == sizeof(i));
    memcpy(&i, buf, sizeof(i));
    CHECK(i < n && f_ptr == kids[i]);
    if (++dones < n) return;
    /* Measured from the loop, once this receive pass is over. */
    CHECK(mln_event_timer_set(ev, 0, NULL, measure) != NULL);
}

static void master_bdone(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct bdone d;
    (void)u;
    CHECK(len == sizeof(d));
    memcpy(&d, buf, sizeof(d));
    CHECK(d.i < BIG_N && f_ptr == kids[d.i]);
    fprintf(stderr, "worker %u VmRSS: %ld kB before 4 x 1 MiB, %ld kB after (bound +%d)\n", d.i,
            d.rss_before, d.rss_after, RX_KEEP_KB);
    if (!valgrind()) CHECK(d.rss_after - d.rss_before <= RX_KEEP_KB);
    if (++bdones < (BIG_N < n ? BIG_N : n)) return;
    finished = 1;
    mln_event_break_set(ev);
}

static int collect(mln_event_t *ev, mln_fork_t *f, void *data)
{
    unsigned *k = data;
    (void)ev;
    CHECK(*k < n);
    kids[(*k)++] = f;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    unsigned k = 0, i;
    CHECK(mln_event_timer_set(ev, valgrind() ? 240000 : 30000, NULL, watchdog) != NULL);
    CHECK(mln_fork_iterate(ev, collect, &k) == 0);
    CHECK(k == n);
    for (i = 0; i < n; ++i)
        CHECK(mln_ipc_master_send_prepare(ev, T_PING, &i, sizeof(i), kids[i]) == 0);
}

static int global_init(void)
{
    ctest_workers(n);
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BIG, NULL, worker_big, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BDONE, master_bdone, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    n = valgrind() ? 20 : MAX_N;
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
