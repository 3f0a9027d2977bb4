/* CTEST_STANDALONE_ONLY: the end of the master's loop is Melon's framework's there (docs/melon-build.md) */
/* Frames sent from a signal handler just before the loop is broken are delivered: a
 * SIGTERM handler in the master iterates the workers, sends each a goodbye and breaks the
 * loop; every worker must get its goodbye before the framework ends it. The master keeps
 * its loop busy sending pings (so the signal often interrupts the library and the goodbyes
 * are parked), and the run is repeated ROUNDS times, each in a fresh process. The workers
 * report each goodbye on a pipe; each round must count WORKERS of them.
 * The defect it was written for: the goodbyes were lost in 7-16 of 30 runs: the parked frames were never
 * queued once the break ended the framework. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8601
#define T_PING 8602
#define T_BYE 8603
#define WORKERS 3
#define ROUNDS 10

static int report[2];
static mln_event_t *mev;
static int hellos;

static void worker_process(mln_event_t *ev)
{
    int pid = (int)getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &pid, sizeof(pid)) == 0);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
}

static void worker_bye(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    char c = 'b';
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(write(report[1], &c, 1) == 1);
}

static int bye_each(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (mln_ipc_master_send_prepare(ev, T_BYE, "bye", 3, f) != 0) {
        char c = 'x'; /* a refused goodbye is a failure too */
        if (write(report[1], &c, 1) != 1) _exit(7);
    }
    return 0;
}

static void on_term(int sig)
{
    int e = errno;
    (void)sig;
    (void)mln_fork_iterate(mev, bye_each, NULL);
    mln_event_break_set(mev);
    errno = e;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    if (++hellos == WORKERS) {
        /* From another process, at a moment nothing here chooses. */
        if (fork() == 0) {
            usleep(2000);
            kill(getppid(), SIGTERM);
            _exit(0);
        }
    }
}

static int ping_each(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    (void)mln_ipc_master_send_prepare(ev, T_PING, "p", 1, f);
    return 0;
}

static void busy(mln_event_t *ev, void *data)
{
    (void)data;
    (void)mln_fork_iterate(ev, ping_each, NULL);
    CHECK(mln_event_timer_set(ev, 0, NULL, busy) != NULL);
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    mev = ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, busy) != NULL);
}

static int global_init(void)
{
    ctest_workers(WORKERS);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_BYE, NULL, worker_bye, NULL, NULL) ? 0 : -1;
}

static int one_round(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(ctest_framework_init(&a) == 0);
    return 0;
}

int main(int argc, char *argv[])
{
    int round, lost = 0;
    CHECK(pipe(report) == 0);
    CHECK(fcntl(report[0], F_SETFL, O_NONBLOCK) == 0);
    for (round = 0; round < ROUNDS; ++round) {
        pid_t pid = fork();
        char buf[64];
        int got = 0, bad = 0;
        ssize_t n;
        CHECK(pid >= 0);
        if (pid == 0) _exit(one_round(argc, argv));
        CHECK(wait_status(pid) == 0);
        /* The round's master has returned: its workers ended before that. */
        while ((n = read(report[0], buf, sizeof(buf))) > 0) {
            ssize_t i;
            for (i = 0; i < n; ++i) {
                if (buf[i] == 'b') ++got;
                else ++bad;
            }
        }
        if (got != WORKERS || bad != 0) {
            fprintf(stderr, "round %d: %d goodbyes of %d, %d refused\n", round, got, WORKERS, bad);
            ++lost;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {} /* the SIGTERM senders */
    }
    CHECK(lost == 0);
    return 0;
}
