/* A worker exits with status 127 once its master is gone (SIGKILL). Before it has handled
 * that end of stream, its sends are refused with ESRCH as soon as a write to the master has
 * failed: the worker's timer waits (poll) until the master's end of the socket
 * is closed, then sends 64 KiB (written at once, so the write fails: -1, ESRCH) and 8
 * bytes (the channel is known broken: -1, ESRCH), and reports both results.
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

#include <poll.h>

static int ready[2], status_pipe[2], result_pipe[2];
static char big[64 * 1024];

/* In the worker: runs once the loop is up. */
static void probe(mln_event_t *ev, void *data)
{
    pid_t me = getpid();
    struct pollfd p;
    int res[4];
    (void)data;
    p.fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    p.events = POLLIN; /* the master sends nothing: readable means its end closed */
    CHECK(p.fd >= 0);
    CHECK(write(ready[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
    CHECK(poll(&p, 1, 20000) == 1);
    errno = 0;
    res[0] = mln_ipc_worker_send_prepare(ev, 1, big, sizeof(big));
    res[1] = errno;
    errno = 0;
    res[2] = mln_ipc_worker_send_prepare(ev, 1, "12345678", 8);
    res[3] = errno;
    CHECK(write(result_pipe[1], res, sizeof(res)) == (ssize_t)sizeof(res));
}

static void report_status(int status, void *arg)
{
    (void)arg;
    if (write(status_pipe[1], &status, sizeof(status)) != (ssize_t)sizeof(status)) _exit(99);
}

static void worker_process(mln_event_t *ev)
{
    CHECK(on_exit(report_status, NULL) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, probe) != NULL);
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, NULL, NULL, NULL, worker_process};
    pid_t master, worker;
    int st = -1, res[4];
    CHECK(signal(SIGCHLD, SIG_DFL) != SIG_ERR);
    CHECK(pipe(ready) == 0 && pipe(status_pipe) == 0 && pipe(result_pipe) == 0);
    master = fork();
    CHECK(master >= 0);
    if (master == 0) {
        ctest_framework_init(&a);
        _exit(0);
    }
    close(ready[1]);
    close(status_pipe[1]);
    close(result_pipe[1]);
    CHECK(read(ready[0], &worker, sizeof(worker)) == (ssize_t)sizeof(worker));
    CHECK(kill(master, SIGKILL) == 0);
    CHECK(wait_status(master) == 128 + SIGKILL);
    CHECK(read(result_pipe[0], res, sizeof(res)) == (ssize_t)sizeof(res));
    if (res[0] != -1 || res[1] != ESRCH || res[2] != -1 || res[3] != ESRCH)
        fprintf(stderr, "worker sends after the master's death: %d (errno %d), %d (errno %d)\n",
                res[0], res[1], res[2], res[3]);
    CHECK(res[0] == -1 && res[1] == ESRCH);
    CHECK(res[2] == -1 && res[3] == ESRCH);
    CHECK(read(status_pipe[0], &st, sizeof(st)) == (ssize_t)sizeof(st));
    if (st != 127) fprintf(stderr, "worker %d exit status %d\n", (int)worker, st);
    CHECK(st == 127);
    return 0;
}
