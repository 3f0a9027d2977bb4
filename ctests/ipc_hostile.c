/* Hostile workers. Eight workers; the master gives each a role:
 *   0 garbage: 64 KiB of pseudo-random bytes
 *   1 truncated: a header announcing 100 bytes, then 50 of them, then silence
 *   2 header only: a header announcing 1000 bytes, then nothing
 *   3 4 GiB: a length field of 0xffffffff (above the maximum: protocol error)
 *   4 zeros: 100,000 length-0 frames (ignored), 100,000 empty frames of a registered type
 *     (each delivered, with len 0), then a marker frame
 *   5 closes mid-frame: a header announcing 1000 bytes, 10 of them, then _exit
 *   6, 7 good: 300 ping/pong round trips each, while the others misbehave
 * Meanwhile the master's 10 ms timer keeps firing (at least 50 times, no gap above 1 s),
 * its VmRSS grows by less than 64 MiB, the good workers finish, roles 3 and 5 are replaced
 * by restarted workers, roles 1 and 2 keep their connections (a partial frame is not an
 * error), and afterwards the good workers still answer. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <time.h>

#define N 8
#define T_ROLE 7101
#define T_PING 7102
#define T_PONG 7103
#define T_DONE 7104
#define T_EMPTY 7105
#define T_ZDONE 7106
#define ROUNDS 300
#define ZEROS 100000
#define RSS_GROWTH_KB (64 * 1024)
#define MIN_TICKS 50

static pid_t pids[N];
static int next_role, done, zdone, ticks, again;
static long empties, rss0_kb, rss_max_kb;
static double last_tick, max_gap, started;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Writes all of `b` to the master, waiting out a full socket. */
static void raw(const void *b, size_t n)
{
    int fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    const char *p = b;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            usleep(100);
            continue;
        }
        CHECK(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void header(mln_u32_t length, mln_u32_t type)
{
    mln_u32_t h[2];
    h[0] = length;
    h[1] = type;
    raw(h, sizeof(h));
}

static void zeros(void)
{
    static mln_u32_t z[ZEROS];
    static mln_u32_t e[2 * ZEROS];
    int i;
    raw(z, sizeof(z));
    for (i = 0; i < ZEROS; ++i) {
        e[2 * i] = 4;
        e[2 * i + 1] = T_EMPTY;
    }
    raw(e, sizeof(e));
    header(4, T_ZDONE);
}

static void worker_role(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    static unsigned char junk[65536];
    unsigned char part[100];
    unsigned x = 12345;
    int role, seq = 0;
    size_t i;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(role));
    memcpy(&role, buf, sizeof(role));
    memset(part, 'p', sizeof(part));
    switch (role) {
    case 0:
        for (i = 0; i < sizeof(junk); ++i) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            junk[i] = (unsigned char)x;
        }
        raw(junk, sizeof(junk));
        break;
    case 1: header(4 + 100, T_PING); raw(part, 50 - 4); break;
    case 2: header(1000, T_PING); break;
    case 3: header(0xffffffffu, T_PING); break;
    case 4: zeros(); break;
    case 5: header(1000, T_PING); raw(part, 10); _exit(0);
    default: CHECK(mln_ipc_worker_send_prepare(ev, T_PING, &seq, sizeof(seq)) == 0);
    }
}

static void worker_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int seq;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(seq));
    memcpy(&seq, buf, sizeof(seq));
    if (++seq < ROUNDS)
        CHECK(mln_ipc_worker_send_prepare(ev, T_PING, &seq, sizeof(seq)) == 0);
    else
        CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) == 0);
}

static void master_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    CHECK(len == sizeof(int));
    CHECK(mln_ipc_master_send_prepare(ev, T_PONG, buf, len, f_ptr) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++done;
}

static void master_empty(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    CHECK(len == 0);
    ++empties;
}

static void master_zdone(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(empties == ZEROS);
    zdone = 1;
}

static int assign(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    pids[next_role] = f->pid;
    CHECK(mln_ipc_master_send_prepare(ev, T_ROLE, &next_role, sizeof(next_role), f) == 0);
    ++next_role;
    return 0;
}

struct census { int n; int present[N]; };

/* After the damage: one more round trip with each good worker. */
static int poke_good(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int seq = ROUNDS - 1;
    (void)data;
    if (f->pid == pids[6] || f->pid == pids[7])
        CHECK(mln_ipc_master_send_prepare(ev, T_PONG, &seq, sizeof(seq), f) == 0);
    return 0;
}

static int find(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct census *c = data;
    int i;
    (void)ev;
    ++c->n;
    for (i = 0; i < N; ++i)
        if (f->pid == pids[i]) c->present[i] = 1;
    return 0;
}

static void tick(mln_event_t *ev, void *data)
{
    struct census c;
    double t = now();
    long rss = rss_kb();
    (void)data;
    ++ticks;
    if (t - last_tick > max_gap) max_gap = t - last_tick;
    last_tick = t;
    if (rss > rss_max_kb) rss_max_kb = rss;
    memset(&c, 0, sizeof(c));
    CHECK(mln_fork_iterate(ev, find, &c) == 0);
    if (!again && done == 2 && zdone && !c.present[3] && !c.present[5] && c.n == N) {
        CHECK(mln_fork_iterate(ev, poke_good, NULL) == 0);
        again = 1;
    }
    if ((again && done == 4 && ticks >= MIN_TICKS) || t - started > 30) {
        CHECK(c.present[1] && c.present[2] && c.present[6] && c.present[7]);
        mln_event_break_set(ev);
        return;
    }
    CHECK(mln_event_timer_set(ev, 10, NULL, tick) != NULL);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, assign, NULL) == 0 && next_role == N);
    rss0_kb = rss_max_kb = rss_kb();
    started = last_tick = now();
    CHECK(mln_event_timer_set(ev, 10, NULL, tick) != NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_ROLE, NULL, worker_role, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, NULL, worker_pong, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, master_ping, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_EMPTY, master_empty, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ZDONE, master_zdone, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    fprintf(stderr, "ticks %d, max gap %.3f s, VmRSS %ld -> max %ld kB, done %d, zdone %d, empties %ld\n",
            ticks, max_gap, rss0_kb, rss_max_kb, done, zdone, empties);
    CHECK(done == 4 && zdone && empties == ZEROS && ticks >= MIN_TICKS);
    CHECK(max_gap < 1.0);
    CHECK(rss_max_kb - rss0_kb < RSS_GROWTH_KB);
    return 0;
}
