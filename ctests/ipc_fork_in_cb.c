/* A fork inside a callback: in the new child, everything the callback was given stays
 * valid until the callback returns. The worker sends a 1 MiB frame and a 1,000-byte one.
 * The master's handler of the large one calls mln_fork_restart(ev); in the new child
 * (return 0) the rest of the handler reads the whole payload, f_ptr->pid and *udata_ptr.
 * The handler of the small one walks the children with mln_fork_iterate, and the iterate
 * callback forks: in that child the rest of the callback reads f->pid and the small
 * payload still held by the handler below it. A master timer forks too. Each new child
 * checks what it reads, reports on a pipe ('B', 'I', 'T') and leaves the master's loop (it
 * then runs as a worker). The master must get all three reports and no failure; under
 * memcheck (make memcheck) no invalid read either.
 * The defect it was written for: the child had already freed those records: reading the 1 MiB payload
 * crashed with SIGSEGV, f->pid was an invalid read of a freed record. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_BIG 8701
#define T_SMALL 8702
#define BIG (1 << 20)
#define SMALL 1000

static int report[2];
static int generation; /* bumped in the master before each fork: new children send nothing */
static int reports_b, reports_i, reports_t;
static void *const UDATA = (void *)0x5eed;

static void say(char c)
{
    CHECK(write(report[1], &c, 1) == 1);
}

static int pattern_ok(const unsigned char *b, mln_u32_t len, unsigned seed)
{
    mln_u32_t i;
    for (i = 0; i < len; ++i)
        if (b[i] != (unsigned char)(i * 7 + seed)) return 0;
    return 1;
}

static void worker_process(mln_event_t *ev)
{
    static unsigned char big[BIG], small[SMALL];
    mln_u32_t i;
    if (generation != 0) return; /* a child forked by a master callback */
    for (i = 0; i < BIG; ++i) big[i] = (unsigned char)(i * 7 + 1);
    for (i = 0; i < SMALL; ++i) small[i] = (unsigned char)(i * 7 + 2);
    CHECK(mln_ipc_worker_send_prepare(ev, T_BIG, big, BIG) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_SMALL, small, SMALL) == 0);
}

static void master_big(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int pid = f->pid, r;
    ++generation;
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        /* The new child, inside the master's handler. */
        CHECK(len == BIG && pattern_ok(buf, len, 1));
        CHECK(f->pid == pid);
        CHECK(*udata_ptr == UDATA);
        say('B');
        mln_event_break_set(ev);
    }
}

struct walk {
    const unsigned char *buf;
    mln_u32_t len;
};

static int fork_in_walk(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct walk *w = data;
    int pid = f->pid, r;
    ++generation;
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        CHECK(f->pid == pid);
        CHECK(w->len == SMALL && pattern_ok(w->buf, w->len, 2));
        say('I');
        mln_event_break_set(ev);
        return -1; /* stop the walk here */
    }
    return -1; /* one fork is enough */
}

static void master_small(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct walk w;
    (void)f_ptr; (void)udata_ptr;
    w.buf = buf;
    w.len = len;
    (void)mln_fork_iterate(ev, fork_in_walk, &w);
    /* In the child, the handler goes on here too: its buf is still the payload. */
    CHECK(len == SMALL && pattern_ok(buf, len, 2));
}

static void fork_in_timer(mln_event_t *ev, void *data)
{
    int r;
    (void)data;
    ++generation;
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        say('T');
        mln_event_break_set(ev);
    }
}

static void read_reports(mln_event_t *ev, int fd, void *data)
{
    char c[16];
    ssize_t n, i;
    (void)fd; (void)data;
    while ((n = read(report[0], c, sizeof(c))) > 0)
        for (i = 0; i < n; ++i) {
            if (c[i] == 'B') ++reports_b;
            else if (c[i] == 'I') ++reports_i;
            else if (c[i] == 'T') ++reports_t;
        }
    if (reports_b && reports_i && reports_t) mln_event_break_set(ev);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog (reports B %d, I %d, T %d)\n", reports_b, reports_i, reports_t);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    CHECK(fcntl(report[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(mln_event_fd_set(ev, report[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL, read_reports) == 0);
    CHECK(mln_event_timer_set(ev, 50, NULL, fork_in_timer) != NULL);
    CHECK(mln_event_timer_set(ev, 60000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_BIG, master_big, NULL, UDATA, NULL)) return -1;
    return mln_ipc_handler_register(T_SMALL, master_small, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    pid_t master;
    CHECK(pipe(report) == 0);
    master = getpid();
    CHECK(ctest_framework_init(&a) == 0);
    if (getpid() != master) return 0; /* a forked child whose worker loop ended */
    CHECK(reports_b == 1 && reports_i == 1 && reports_t == 1);
    return 0;
}
