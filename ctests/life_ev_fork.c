/* The child-event handler forks a new worker with mln_fork_restart(ev) from EXITED (the
 * documented way to add a worker inside the master's loop: the child breaks the loop and
 * the framework makes it a worker). Three workers are stopped at once so that several
 * EXITED wait for delivery when the first handler forks. Docs: the handler runs in the
 * master, "never from inside ... a fork"; the forked child must never see a child event
 * (it is a worker, not the master). */
#include "life_rec.h"

static int rep[2];
static int started, exits, forks, phase;

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    if (getpid() != rec_master) {
        char m[128];
        int n = snprintf(m, sizeof(m), "child %d got a %s event (slot %u pid %d)\n", (int)getpid(),
                         rec_type_name(e->type), e->slot, (int)e->pid);
        (void)!write(rep[1], m, (size_t)n);
        _exit(9);
    }
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED) {
        ++started;
        if (started == 3 && phase == 0) {
            phase = 1;
            ACHECK(mln_fork_stop(ev, NULL, 2000) == 0);
        } else if (phase == 1 && started == 3 + forks) {
            /* all replacements forked from the handler said hello: done */
            if (forks == 3) { phase = 2; mln_event_break_set(ev); }
        }
    } else if (e->type == M_IPC_CHILD_EXITED && phase == 1) {
        ++exits;
        int r = mln_fork_restart(ev);
        ACHECK(r >= 0);
        if (r == 0) { /* the new worker: leave the master's loop */
            mln_event_break_set(ev);
            return;
        }
        ++forks;
    }
}

static int global_init(void)
{
    ctest_workers(3);
    mln_ipc_child_event_handler_set(on_event, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    char buf[512];
    ssize_t n;
    CHECK(pipe(rep) == 0);
    CHECK(fcntl(rep[0], F_SETFL, O_NONBLOCK) == 0);
    rec_init(20);
    if (ctest_framework_init(&a) < 0) return 1;
    if (getpid() != rec_master) { fprintf(stderr, "worker returned from the framework\n"); _exit(8); }
    usleep(200000);
    n = read(rep[0], buf, sizeof(buf) - 1);
    if (n > 0) { buf[n] = 0; fprintf(stderr, "%s", buf); return 3; }
    ACHECK(phase == 2);
    ACHECK(rec_check_pids() == 0);
    return 0;
}
