/* mln_ipc_stats_get agrees on both sides (issue: backpressure). A known exchange between
 * the master and its worker, with frames of many sizes (0 B to 1 MiB) and some of a type
 * the receiver has no handler for (dropped, but received):
 *   master: HELLO <- worker; 7 DATA + 2 unhandled + Q1 ->; <- 4 WDATA + 1 unhandled + A1;
 *           Q2 ->; <- A2 (the worker's stats, taken in its Q2 handler).
 * Then, in the A2 handler: frames and payload bytes sent by one side = received by the
 * other (counted when a frame is dispatched or dropped, before its handler runs); nothing
 * queued on either side; queue_peak_bytes > 0 on both (small frames are queued before
 * they are written) and at most what was sent; no refusal; restarts 0; a fresh child had
 * peak 0 and only its HELLO received.
 * Then the worker is killed twice: each replacement's record is new, its restarts count
 * is 1, then 2 (restarts of the slot), its other counters start from zero, and the
 * pointers of the dead ones give -1/ESRCH. NULL in the master gives ESRCH, a NULL `out`
 * EINVAL. */
#include <stdint.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 7601
#define T_DATA 7602
#define T_NOH_W 7603 /* no handler in the worker */
#define T_Q1 7604
#define T_WDATA 7605
#define T_NOH_M 7606 /* no handler in the master */
#define T_A1 7607
#define T_Q2 7608
#define T_A2 7609

static const size_t m_sizes[] = {0, 1, 100, 4096, 16384, 100000, 1 << 20};
static const size_t m_noh[] = {5, 70000};
static const size_t w_sizes[] = {0, 3, 20000, 300000};
static const size_t w_noh[] = {7};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct a2 {
    mln_ipc_stats_t ws;
    uint64_t data_handled; /* T_DATA frames the worker's handler saw */
};

static unsigned char *buf;
static mln_fork_t *gen[3];
static pid_t pids[3];
static int n_gen, finished;
static uint64_t data_handled, wdata_handled;

static uint64_t sum(const size_t *a, size_t n)
{
    uint64_t s = 0;
    size_t i;
    for (i = 0; i < n; ++i) s += a[i];
    return s;
}

static void send_all(mln_event_t *ev, mln_fork_t *f, mln_u32_t type, const size_t *sizes, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        if (f != NULL) CHECK(mln_ipc_master_send_prepare(ev, type, buf, sizes[i], f) == 0);
        else CHECK(mln_ipc_worker_send_prepare(ev, type, buf, sizes[i]) == 0);
    }
}

static void no_stats(mln_fork_t *f)
{
    mln_ipc_stats_t st;
    errno = 0;
    CHECK(mln_ipc_stats_get(f, &st) == -1 && errno == ESRCH);
}

/* Worker. */
static void worker_data(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)b; (void)len; (void)u;
    ++data_handled;
}

static void worker_q1(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)b; (void)len; (void)u;
    send_all(ev, NULL, T_WDATA, w_sizes, COUNT(w_sizes));
    send_all(ev, NULL, T_NOH_M, w_noh, COUNT(w_noh));
    CHECK(mln_ipc_worker_send_prepare(ev, T_A1, buf, 0) == 0);
}

static void worker_q2(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    struct a2 r;
    (void)f_ptr; (void)b; (void)len; (void)u;
    memset(&r, 0, sizeof(r));
    CHECK(mln_ipc_stats_get(NULL, &r.ws) == 0);
    r.data_handled = data_handled;
    CHECK(mln_ipc_worker_send_prepare(ev, T_A2, &r, sizeof(r)) == 0);
}

static void worker_process(mln_event_t *ev)
{
    mln_ipc_stats_t st;
    pid_t me = getpid();
    CHECK(mln_ipc_stats_get(NULL, &st) == 0);
    CHECK(st.frames_sent == 0 && st.frames_received == 0 && st.restarts == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &me, sizeof(me)) == 0);
}

/* Master. */
static void master_hello(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    mln_fork_t *f = f_ptr;
    mln_ipc_stats_t st;
    pid_t pid;
    int i;
    (void)u;
    CHECK(len == sizeof(pid));
    memcpy(&pid, b, sizeof(pid));
    CHECK(pid == f->pid);
    CHECK(n_gen < 3);
    for (i = 0; i < n_gen; ++i) {
        CHECK(f != gen[i] && pid != pids[i]); /* a new record for a new process */
        no_stats(gen[i]);                      /* the dead ones' pointers are stale */
    }
    gen[n_gen] = f;
    pids[n_gen] = pid;
    /* A fresh child: its HELLO, nothing else; restarts of the slot so far. */
    CHECK(mln_ipc_stats_get(f, &st) == 0);
    CHECK(st.frames_received == 1 && st.bytes_received == sizeof(pid));
    CHECK(st.frames_sent == 0 && st.bytes_sent == 0);
    CHECK(st.queued_frames == 0 && st.queued_bytes == 0 && st.queue_peak_bytes == 0);
    CHECK(st.sends_refused == 0);
    CHECK(st.restarts == (mln_u64_t)n_gen);
    ++n_gen;
    if (n_gen == 1) {
        send_all(ev, f, T_DATA, m_sizes, COUNT(m_sizes));
        send_all(ev, f, T_NOH_W, m_noh, COUNT(m_noh));
        CHECK(mln_ipc_master_send_prepare(ev, T_Q1, buf, 0, f) == 0);
        return;
    }
    if (n_gen == 2) {
        CHECK(kill(pid, SIGKILL) == 0);
        return;
    }
    /* The third: done. */
    errno = 0;
    CHECK(mln_ipc_stats_get(NULL, &st) == -1 && errno == ESRCH); /* not a worker */
    errno = 0;
    CHECK(mln_ipc_stats_get(f, NULL) == -1 && errno == EINVAL);
    finished = 1;
    mln_event_break_set(ev);
}

static void master_wdata(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)ev; (void)b; (void)len; (void)u;
    CHECK(f_ptr == gen[0]);
    ++wdata_handled;
}

static void master_a1(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)b; (void)len; (void)u;
    CHECK(mln_ipc_master_send_prepare(ev, T_Q2, buf, 0, f_ptr) == 0);
}

static void master_a2(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    struct a2 r;
    mln_ipc_stats_t ms, *ws = &r.ws;
    uint64_t m_frames = COUNT(m_sizes) + COUNT(m_noh) + 2; /* + Q1, Q2 */
    uint64_t m_bytes = sum(m_sizes, COUNT(m_sizes)) + sum(m_noh, COUNT(m_noh));
    uint64_t w_frames = 1 + COUNT(w_sizes) + COUNT(w_noh) + 1; /* HELLO + ... + A1 */
    uint64_t w_bytes = sizeof(pid_t) + sum(w_sizes, COUNT(w_sizes)) + sum(w_noh, COUNT(w_noh));
    (void)ev; (void)u;
    CHECK(f_ptr == gen[0] && len == sizeof(r));
    memcpy(&r, b, sizeof(r));
    CHECK(mln_ipc_stats_get(gen[0], &ms) == 0);
    fprintf(stderr, "master: sent %lu/%lu received %lu/%lu peak %lu; worker: sent %lu/%lu "
            "received %lu/%lu peak %lu\n", (unsigned long)ms.frames_sent,
            (unsigned long)ms.bytes_sent, (unsigned long)ms.frames_received,
            (unsigned long)ms.bytes_received, (unsigned long)ms.queue_peak_bytes,
            (unsigned long)ws->frames_sent, (unsigned long)ws->bytes_sent,
            (unsigned long)ws->frames_received, (unsigned long)ws->bytes_received,
            (unsigned long)ws->queue_peak_bytes);
    /* Master -> worker: everything the master sent (Q2 included) was received. */
    CHECK(ms.frames_sent == m_frames && ms.bytes_sent == m_bytes);
    CHECK(ws->frames_received == ms.frames_sent && ws->bytes_received == ms.bytes_sent);
    CHECK(r.data_handled == COUNT(m_sizes)); /* the unhandled ones were dropped */
    /* Worker -> master: everything the worker had sent, and then this A2. */
    CHECK(ws->frames_sent == w_frames && ws->bytes_sent == w_bytes);
    CHECK(ms.frames_received == ws->frames_sent + 1);
    CHECK(ms.bytes_received == ws->bytes_sent + sizeof(r));
    CHECK(wdata_handled == COUNT(w_sizes));
    /* Nothing queued now; something was, at most what was sent. */
    CHECK(ms.queued_frames == 0 && ms.queued_bytes == 0);
    CHECK(ws->queued_frames == 0 && ws->queued_bytes == 0);
    CHECK(ms.queue_peak_bytes > 0 && ms.queue_peak_bytes <= m_bytes + 8 * m_frames);
    CHECK(ws->queue_peak_bytes > 0 && ws->queue_peak_bytes <= w_bytes + 8 * w_frames);
    CHECK(ms.sends_refused == 0 && ws->sends_refused == 0);
    CHECK(ms.restarts == 0 && ws->restarts == 0);
    /* Next: kill it; its replacement says HELLO. */
    CHECK(kill(pids[0], SIGKILL) == 0);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: %d generation(s) of the worker seen\n", n_gen);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, getenv("CTEST_VALGRIND_LOGS") ? 240000 : 45000, NULL,
                              watchdog) != NULL);
}

static int global_init(void)
{
    static const struct { mln_u32_t type; ipc_handler m, w; } h[] = {
        {T_HELLO, master_hello, NULL}, {T_DATA, NULL, worker_data}, {T_Q1, NULL, worker_q1},
        {T_WDATA, master_wdata, NULL}, {T_A1, master_a1, NULL},     {T_Q2, NULL, worker_q2},
        {T_A2, master_a2, NULL},
    };
    size_t i;
    ctest_workers(1);
    for (i = 0; i < COUNT(h); ++i)
        if (!mln_ipc_handler_register(h[i].type, h[i].m, h[i].w, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    buf = calloc(1, 1 << 20);
    CHECK(buf != NULL);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    free(buf);
    return 0;
}
