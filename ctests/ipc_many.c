/* Many workers under the common descriptor limit (issue: backpressure). 960 workers start
 * with RLIMIT_NOFILE 1024 (n workers, limit n + 64: room for one descriptor per child, not
 * two) and each answers a ping; the master holds about one descriptor per child (its
 * socketpair end: no pidfd is kept for a live child), counted in /proc/self/fd before the
 * fork, once the workers are up, and after every answer. Each answer comes from the child
 * it was sent to (f_ptr and pid), exactly once.
 * n: 960 (ctest_workers(960)); 40 under valgrind; 480 in the melon build, where each idle
 * worker runs Melon's loop, which wakes every 3-7 ms (epoll_wait with Melon's
 * M_EV_TIMEOUT_MS / M_EV_NOLOCK_TIMEOUT_MS, whether or not anything is due): 960 of them
 * keep two CPUs busy and the forks crawl (24 s on an idle 2-CPU machine, against 2.3 s
 * for 480 and 2.5 s for 960 in the standalone build, whose idle loops sleep). */
#include <stdint.h>
#include <sys/resource.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_PING 7801
#define T_PONG 7802
#define MAX_N 960
#ifdef CTEST_MELON
#define NATIVE_N 480
#else
#define NATIVE_N MAX_N
#endif
/* Descriptors of the master besides the children's: its loop, the wake-up eventfd, what
 * Melon's framework opens (log), and a few to spare. */
#define OWN_FDS 12

struct pong {
    uint32_t i;
    pid_t pid;
};

static unsigned n;
static int fds_before, fds_max, pongs, finished;
static mln_fork_t *kids[MAX_N];
static char seen[MAX_N];

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct pong p;
    (void)f_ptr; (void)u;
    CHECK(len == sizeof(p.i));
    memcpy(&p.i, buf, sizeof(p.i));
    p.pid = getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, &p, sizeof(p)) == 0);
}

static void check_fds(const char *when)
{
    int now = count_fds();
    if (now > fds_max) fds_max = now;
    if (now > fds_before + (int)n + OWN_FDS) {
        fprintf(stderr, "%s: %d descriptors open for %u children (%d before the fork)\n", when,
                now, n, fds_before);
        exit(2);
    }
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct pong p;
    (void)u;
    CHECK(len == sizeof(p));
    memcpy(&p, buf, sizeof(p));
    CHECK(p.i < n && !seen[p.i]);
    CHECK(f_ptr == kids[p.i] && kids[p.i]->pid == p.pid);
    seen[p.i] = 1;
    check_fds("an answer");
    if (++pongs < (int)n) return;
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

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: %d of %u workers answered\n", pongs, n);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    unsigned k = 0, i;
    CHECK(mln_event_timer_set(ev, valgrind() ? 240000 : 50000, NULL, watchdog) != NULL);
    CHECK(mln_fork_iterate(ev, collect, &k) == 0);
    CHECK(k == n); /* every worker started */
    check_fds("the workers started");
    for (i = 0; i < n; ++i)
        CHECK(mln_ipc_master_send_prepare(ev, T_PING, &i, sizeof(i), kids[i]) == 0);
}

static int global_init(void)
{
    ctest_workers(n);
    fds_before = count_fds();
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    struct rlimit r;
    n = valgrind() ? 40 : NATIVE_N;
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0);
    CHECK(r.rlim_max == RLIM_INFINITY || r.rlim_max >= n + 64);
    r.rlim_cur = n + 64; /* 1024 for 960 workers */
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished && pongs == (int)n);
    fprintf(stderr, "%u workers answered; descriptors: %d before the fork, at most %d after\n",
            n, fds_before, fds_max);
    return 0;
}
