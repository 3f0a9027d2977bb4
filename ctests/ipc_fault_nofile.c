/* Descriptor exhaustion (RLIMIT_NOFILE): with no descriptor to spare, mln_fork_restart,
 * mln_fork_spawn and mln_fork return -1 and leak nothing; with exactly the two a
 * socketpair needs (so no pidfd, which is optional) forking still works; once the limit is
 * raised again everything works, and the worker forked at the edge exchanges messages.
 * mln_event_new returns NULL when no descriptor is left. The melon build's mln_fork()
 * returns 1 there, as Melon's does (docs/melon-build.md). */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include <sys/resource.h>

#define T_PING 7301
#define T_PONG 7302

static int pongs;

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, buf, len) == 0);
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    ++pongs;
    mln_event_break_set(ev);
}

static int ping(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    ++*(int *)data;
    return mln_ipc_master_send_prepare(ev, T_PING, "ping", 4, f);
}

static void limit(rlim_t n)
{
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0);
    r.rlim_cur = n;
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0);
}

static void guard(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "no answer from the workers\n");
    exit(3);
}

int main(void)
{
    struct rlimit saved;
    char a0[] = "/bin/true";
    char *args[1];
    mln_event_t *ev, *wev;
    int fds, r, n = 0;
    args[0] = a0;
    CHECK(mln_fork_worker_ipc_handler_set(T_PING, worker_ping, NULL) == 0);
    CHECK(mln_fork_master_ipc_handler_set(T_PONG, master_pong, NULL) == 0);
    CHECK(mln_fork_prepare() == 0);
    CHECK(ctest_conf_load() == 0); /* before the descriptors run out */
    ev = mln_event_new();
    CHECK(ev != NULL);
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);

    /* Not one descriptor to spare. */
    fds = count_fds();
    limit((rlim_t)fds + 4); /* a few to spare, then filled up below */
    {
        /* Fill the table up to the limit with copies of stdin. */
        int filler[16], k = 0, d;
        while ((d = dup(0)) >= 0) { CHECK(k < 16); filler[k++] = d; }
        CHECK(errno == EMFILE);
        fds = count_fds();
        CHECK(mln_event_new() == NULL);
        ctest_workers(2);
        /* valgrind does not hold socketpair to the limit it emulates (epoll_create and dup
         * are held): the starts below may succeed there, so they are checked natively. */
        if (!valgrind()) {
            CHECK(mln_fork_restart(ev) == -1);
            CHECK(mln_fork_spawn(M_PST_SUP, args, 1, ev) == -1);
#ifdef CTEST_MELON
            CHECK(mln_fork() == 1); /* as Melon's: a worker whose fork fails is skipped */
#else
            CHECK(mln_fork() == -1);
#endif
        }
        CHECK(count_fds() == fds);
        /* Exactly two free: the socketpair, no pidfd. */
        CHECK(k >= 2);
        close(filler[--k]);
        close(filler[--k]);
        r = mln_fork_restart(ev);
        CHECK(r >= 0);
        if (r == 0) {
            /* The worker: its own loop (the limit is inherited: free a descriptor). */
            setrlimit(RLIMIT_NOFILE, &saved);
            wev = mln_event_new();
            CHECK(wev != NULL);
            mln_fork_worker_events_set(wev);
            mln_event_dispatch(wev);
            _exit(0);
        }
        while (k > 0) close(filler[--k]);
    }
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);

    /* Everything works again, and so does the worker forked at the edge. */
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        wev = mln_event_new();
        CHECK(wev != NULL);
        mln_fork_worker_events_set(wev);
        mln_event_dispatch(wev);
        _exit(0);
    }
    CHECK(mln_fork_iterate(ev, ping, &n) == 0 && n == 2);
    CHECK(mln_event_timer_set(ev, 20000, NULL, guard) != NULL);
    while (pongs < 2) {
        mln_event_dispatch(ev);
        ev->is_break = 0;
    }
    mln_event_free(ev);
    return 0;
}
