/* A stopped worker whose quit handler starts a helper process (fork: as system("cmd &")
 * would) that inherits the worker's end of the channel, then returns 0: the worker exits
 * 0 at once, but no end of stream comes while the helper holds the socket. Checks:
 * - EXITED comes as soon as the worker is gone (not at the deadline + 1 s of SIGKILL):
 *   well before the 3 s deadline;
 * - how STOPPED, exited 1, status 0 (no SIGTERM or SIGKILL was sent: it had exited);
 * - the helper is not ours: it is not signalled, and ends by itself when the master
 *   closes its end of the channel (it reads it until end of file).
 * Without a pidfd (valgrind, old kernels) the master learns it at the deadline instead:
 * still STOPPED, still no signal. */
#include "ctest.h"

#define DEADLINE 3000

static long t_stop, t_exited;
static int done, how, exited, status;

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        t_stop = now_ms();
        if (mln_fork_stop(ev, f, DEADLINE) != 0) {
            perror("mln_fork_stop");
            exit(2);
        }
    } else if (e->type == M_IPC_CHILD_EXITED) {
        t_exited = now_ms();
        how = e->how;
        exited = e->exited;
        status = e->status;
        done = 1;
        mln_event_break_set(ev);
    }
}

static int quit(mln_event_t *ev, void *data)
{
    int fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    pid_t p;
    (void)ev; (void)data;
    p = fork();
    if (p == 0) {
        char b;
        while (read(fd, &b, 1) > 0) {}
        _exit(0);
    }
    return 0;
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(on_event, NULL);
    mln_ipc_worker_quit_handler_set(quit, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    if (!done) {
        fprintf(stderr, "no EXITED event\n");
        return 1;
    }
    fprintf(stderr, "EXITED %ld ms after the stop: how %d exited %d status %d\n",
            t_exited - t_stop, how, exited, status);
    if (how != M_IPC_END_STOPPED || exited != 1 || status != 0) return 1;
    /* With a pidfd: at once. Without (valgrind): at the deadline, never after SIGKILL. */
    if (t_exited - t_stop >= (valgrind() ? DEADLINE + 900 : DEADLINE / 2)) return 1;
    return 0;
}
