/* A worker exits with status 127 once its master is gone (SIGKILL).
 *
 * The worker's status cannot be collected by waitpid: the dying master closes its socket
 * (so the worker sees end of stream and exits) before the kernel re-parents the worker,
 * and the master ignores SIGCHLD, so the worker may be reaped automatically. Instead the
 * worker reports the status its exit() was called with through an on_exit() hook. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static int ready[2], status_pipe[2];

static void report_status(int status, void *arg)
{
    (void)arg;
    if (write(status_pipe[1], &status, sizeof(status)) != (ssize_t)sizeof(status)) _exit(99);
}

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    (void)ev;
    CHECK(on_exit(report_status, NULL) == 0);
    CHECK(write(ready[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, NULL, worker_process};
    pid_t master, worker;
    int st = -1;
    CHECK(signal(SIGCHLD, SIG_DFL) != SIG_ERR);
    CHECK(pipe(ready) == 0 && pipe(status_pipe) == 0);
    master = fork();
    CHECK(master >= 0);
    if (master == 0) {
        ctest_framework_init(&a);
        _exit(0);
    }
    close(ready[1]);
    close(status_pipe[1]);
    CHECK(read(ready[0], &worker, sizeof(worker)) == (ssize_t)sizeof(worker));
    CHECK(kill(master, SIGKILL) == 0);
    CHECK(wait_status(master) == 128 + SIGKILL);
    CHECK(read(status_pipe[0], &st, sizeof(st)) == (ssize_t)sizeof(st));
    if (st != 127) fprintf(stderr, "worker %d exit status %d\n", (int)worker, st);
    CHECK(st == 127);
    return 0;
}
