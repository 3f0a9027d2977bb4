/* Adversarial: bursts to 200 workers in turn (the opportunistic writes scaled by the
 * number of dirty peers, src/process/flush.rs), with one worker in ten stalled (it does
 * not read until the end), one in ten killed in the middle of the burst, the rest
 * reading. Queue limit 256 KiB per peer, largest frame 64 KiB.
 * Checks:
 * - no send blocks the master: every send returns within 1 s (a blocking write would
 *   never return: the stalled workers do not read);
 * - a stalled worker's queue stays within the limit (EAGAIN beyond it), its
 *   queue_peak_bytes <= limit + one frame; every peer's frames_sent + queued_frames ==
 *   frames accepted;
 * - every reading worker and every stalled one (released at the end) received exactly
 *   the frames accepted for it, in order, with their sizes and contents;
 * - every killed worker's EXITED event counts as lost exactly the frames queued to it
 *   when it died (frames accepted - frames written: nothing is written to it after its
 *   death, which the master waits for with waitid WNOWAIT). */
#define _GNU_SOURCE
#include "ctest.h"
#include <stdint.h>
#include <sys/wait.h>
#include "mln_event.h"

#define N 200
/* The workers: N, a tenth of it under valgrind (200 valgrind processes of the melon
 * build, each running Melon's loop, do not finish within the test's alarm). */
static int n_workers = N;
#define FRAMES 40
#define LIMIT (256 * 1024)
#define MAXMSG (64 * 1024)
#define T_HELLO 9301
#define T_DATA 9302
#define T_FIN 9303
#define T_RESULT 9304
#define T_STALL 9305

enum role { READER, STALLED, DEAD, SPARE };

struct peer {
    mln_fork_t *f;
    pid_t pid;
    enum role role;
    uint64_t accepted, lost_expected;
    int fin_sent, done;
};

static struct peer peers[N];
static int npeers, results, exits_dead;
static int release_pipe[2];
static unsigned char buf[MAXMSG];
static double max_send_s;
static pid_t master_pid;

static size_t size_of(uint32_t seq) { return (size_t)((seq * 7919u) % (MAXMSG - 8)); }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct peer *peer_of(mln_fork_t *f)
{
    int i;
    for (i = 0; i < npeers; ++i)
        if (peers[i].f == f && peers[i].pid == f->pid) return &peers[i];
    return NULL;
}

static void invariant(struct peer *p)
{
    mln_ipc_stats_t s;
    CHECK(mln_ipc_stats_get(p->f, &s) == 0);
    CHECK(s.frames_sent + s.queued_frames == p->accepted);
    CHECK(s.queued_bytes <= LIMIT);
    CHECK(s.queue_peak_bytes <= LIMIT + MAXMSG);
}

static int send_timed(mln_event_t *ev, uint32_t ty, void *b, size_t n, mln_fork_t *f)
{
    double t0 = now(), d;
    int r = mln_ipc_master_send_prepare(ev, ty, b, n, f);
    d = now() - t0;
    if (d > max_send_s) max_send_s = d;
    return r;
}

static void try_fins(mln_event_t *ev, void *data);

static void maybe_end(mln_event_t *ev)
{
    int want = 0, i;
    for (i = 0; i < npeers; ++i)
        if (peers[i].role == READER || peers[i].role == STALLED) ++want;
    if (results == want && exits_dead == n_workers / 10) mln_event_break_set(ev);
}

static void burst(mln_event_t *ev)
{
    uint32_t seq;
    int i;
    for (seq = 0; seq < FRAMES; ++seq) {
        size_t n = size_of(seq);
        memset(buf, (int)(seq & 0xff), n);
        if (n >= 4) memcpy(buf, &seq, 4);
        for (i = 0; i < npeers; ++i) {
            struct peer *p = &peers[i];
            int r = send_timed(ev, T_DATA, buf, n, p->f);
            if (r == 0) ++p->accepted;
            else CHECK(errno == EAGAIN);
            invariant(p);
        }
        if (seq == FRAMES / 2) {
            for (i = 0; i < npeers; ++i) {
                struct peer *p = &peers[i];
                mln_ipc_stats_t s;
                siginfo_t si;
                if (p->role != DEAD) continue;
                CHECK(kill(p->pid, SIGKILL) == 0);
                memset(&si, 0, sizeof(si));
                CHECK(waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOWAIT | __WALL) == 0);
                CHECK(mln_ipc_stats_get(p->f, &s) == 0);
                CHECK(s.frames_sent + s.queued_frames == p->accepted);
                p->lost_expected = s.queued_frames;
                p->role = SPARE + 1; /* dead: no more sends */
            }
            /* The dead ones are left out of the rest of the burst. */
            for (i = 0; i < npeers;) {
                if (peers[i].role == SPARE + 1) {
                    /* kept for the EXITED check: moved to the end */
                    struct peer t = peers[i];
                    memmove(&peers[i], &peers[i + 1], sizeof(peers[0]) * (size_t)(npeers - i - 1));
                    peers[--npeers] = t;
                    peers[npeers].role = DEAD;
                } else {
                    ++i;
                }
            }
        }
    }
}

static void release(mln_event_t *ev, void *data)
{
    int i;
    (void)data;
    for (i = 0; i < n_workers / 10; ++i) CHECK(write(release_pipe[1], "r", 1) == 1);
    try_fins(ev, NULL);
}

static void try_fins(mln_event_t *ev, void *data)
{
    int i, left = 0;
    (void)data;
    for (i = 0; i < npeers; ++i) {
        struct peer *p = &peers[i];
        if (p->fin_sent || (p->role != READER && p->role != STALLED)) continue;
        if (send_timed(ev, T_FIN, &p->accepted, sizeof(p->accepted), p->f) == 0) {
            p->fin_sent = 1;
        } else {
            CHECK(errno == EAGAIN);
            ++left;
        }
    }
    if (left > 0) mln_event_timer_set(ev, 5, NULL, try_fins);
}

static int hellos;
static int dead_total; /* peers[] entries beyond npeers that are dead */

static void master_hello(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    mln_fork_t *f = f_ptr;
    int i;
    (void)b; (void)len; (void)u;
    if (hellos >= n_workers) return; /* a replacement of a killed worker */
    i = hellos++;
    peers[i].f = f;
    peers[i].pid = f->pid;
    peers[i].role = i % 10 == 3 ? STALLED : i % 10 == 7 ? DEAD : READER;
    npeers = hellos;
    if (peers[i].role == STALLED) CHECK(mln_ipc_master_send_prepare(ev, T_STALL, NULL, 0, f) == 0);
    if (hellos < n_workers) return;
    /* The stall frames first, alone (counted as accepted). */
    for (i = 0; i < n_workers; ++i)
        if (peers[i].role == STALLED) peers[i].accepted = 1;
    burst(ev);
    dead_total = n_workers - npeers;
    /* The readers get their FIN now; the stalled ones once released. */
    try_fins(ev, NULL);
    mln_event_timer_set(ev, 100, NULL, release);
}

static void master_result(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    struct peer *p = peer_of(f_ptr);
    uint64_t got[2];
    (void)u;
    CHECK(p != NULL && !p->done && len == sizeof(got));
    memcpy(got, b, sizeof(got));
    if (got[0] != p->accepted)
        fprintf(stderr, "worker %d (role %d): %llu frames received, %llu accepted\n", (int)p->pid,
                (int)p->role, (unsigned long long)got[0], (unsigned long long)p->accepted);
    CHECK(got[0] == p->accepted && got[1] == 1);
    p->done = 1;
    ++results;
    maybe_end(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    int i;
    (void)f; (void)data;
    if (e->type != M_IPC_CHILD_EXITED) return;
    for (i = npeers; i < n_workers; ++i) {
        struct peer *p = &peers[i];
        if (p->pid != e->pid) continue;
        if (e->frames_lost != p->lost_expected)
            fprintf(stderr, "worker %d: frames_lost %llu, %llu queued at its death\n", (int)p->pid,
                    (unsigned long long)e->frames_lost, (unsigned long long)p->lost_expected);
        CHECK(e->frames_lost == p->lost_expected);
        ++exits_dead;
        maybe_end(ev);
        return;
    }
    fprintf(stderr, "unexpected EXITED of %d\n", (int)e->pid);
    CHECK(0);
}

/* worker */
static uint64_t w_count;
static int64_t w_last = -1;
static int w_order_ok = 1;

static void worker_stall(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    char c;
    (void)ev; (void)f_ptr; (void)b; (void)len; (void)u;
    ++w_count;
    while (read(release_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    unsigned char *p = b;
    uint32_t seq;
    size_t i;
    (void)ev; (void)f_ptr; (void)u;
    CHECK(len >= 4 || len == size_of(0));
    if (len >= 4) {
        memcpy(&seq, p, 4);
    } else {
        seq = 0;
    }
    CHECK(len == size_of(seq));
    for (i = 4; i < len; ++i) CHECK(p[i] == (unsigned char)(seq & 0xff));
    if ((int64_t)seq <= w_last) w_order_ok = 0;
    w_last = seq;
    ++w_count;
}

static void worker_fin(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    uint64_t out[2];
    (void)f_ptr; (void)b; (void)len; (void)u;
    out[0] = w_count;
    out[1] = (uint64_t)w_order_ok;
    CHECK(mln_ipc_worker_send_prepare(ev, T_RESULT, out, sizeof(out)) == 0);
}

static void master_process(mln_event_t *ev) { (void)ev; }

static void worker_process(mln_event_t *ev)
{
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static int global_init(void)
{
    ctest_workers(n_workers);
    CHECK(mln_ipc_max_message_set(MAXMSG) == 0);
    CHECK(mln_ipc_queue_limit_set(LIMIT) == 0);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FIN, NULL, worker_fin, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_RESULT, master_result, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_STALL, NULL, worker_stall, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    master_pid = getpid();
    if (valgrind()) n_workers = N / 10;
    CHECK(pipe(release_pipe) == 0);
    alarm(55);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(getpid() == master_pid);
    fprintf(stderr, "longest send %.3f ms; %d dead\n", max_send_s * 1e3, dead_total);
    CHECK(max_send_s < 1.0);
    CHECK(exits_dead == n_workers / 10 && dead_total == n_workers / 10);
    return 0;
}
