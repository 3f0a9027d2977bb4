/* A worker that forks inside its own frame handler: in the new child (mln_fork_restart
 * returns 0) the rest of the handler reads the 64 KiB payload it was given, which must
 * still be there; the child then ends its loop and returns from mln_framework_init. That
 * child is supervised by the worker, which restarts it: the replacement must run the
 * worker routine (as a worker of the worker), not return from mln_framework_init at once
 * and be restarted for ever. Reports go to a pipe: 'W' from the child that forked inside
 * the handler (payload intact), 'R' from the replacement's worker_process.
 * The defect it was written for: the child read a freed buffer (SIGSEGV), and the
 * replacement exited at once and was restarted with backoff for ever. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_GO 8901
#define SZ (64 << 10)

static int report[2];
static int generation; /* 0 in the first worker; set before the worker forks */
static int got_w, got_r;

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_u32_t i;
    int r, ok = 1;
    (void)f_ptr; (void)udata_ptr;
    generation = 1;
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        char c;
        for (i = 0; i < len; ++i)
            if (((unsigned char *)buf)[i] != (unsigned char)(i * 3)) { ok = 0; break; }
        c = ok && len == SZ ? 'W' : 'x';
        CHECK(write(report[1], &c, 1) == 1);
        mln_event_break_set(ev);
    }
}

static void worker_process(mln_event_t *ev)
{
    char c = 'R';
    (void)ev;
    if (generation != 0) CHECK(write(report[1], &c, 1) == 1); /* the replacement */
}

static int send_go(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static unsigned char b[SZ];
    int i;
    (void)data;
    for (i = 0; i < SZ; ++i) b[i] = (unsigned char)(i * 3);
    CHECK(mln_ipc_master_send_prepare(ev, T_GO, b, SZ, f) == 0);
    return 0;
}

static void read_reports(mln_event_t *ev, int fd, void *data)
{
    char c[16];
    ssize_t n, i;
    (void)data;
    while ((n = read(fd, c, sizeof(c))) > 0)
        for (i = 0; i < n; ++i) {
            CHECK(c[i] == 'W' || c[i] == 'R');
            if (c[i] == 'W') ++got_w;
            else ++got_r;
        }
#ifdef CTEST_MELON
    /* Melon's framework runs the worker: what a worker's replacement child does after it
     * left the worker's loop is Melon's (docs/melon-build.md); only the payload is checked. */
    if (got_w >= 1) mln_event_break_set(ev);
#else
    if (got_w >= 1 && got_r >= 1) mln_event_break_set(ev);
#endif
}

static void start(mln_event_t *ev, void *data)
{
    (void)data;
    CHECK(mln_fork_iterate(ev, send_go, NULL) == 0);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog ('W' %d, 'R' %d)\n", got_w, got_r);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    CHECK(fcntl(report[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(mln_event_fd_set(ev, report[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL, read_reports) == 0);
    CHECK(mln_event_timer_set(ev, 10, NULL, start) != NULL);
    CHECK(mln_event_timer_set(ev, 30000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    return mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    pid_t master;
    CHECK(pipe(report) == 0);
    master = getpid();
    CHECK(ctest_framework_init(&a) == 0);
    if (getpid() != master) return 0; /* the child that forked in the handler, or a worker */
#ifdef CTEST_MELON
    CHECK(got_w == 1);
#else
    CHECK(got_w == 1 && got_r >= 1);
#endif
    return 0;
}
