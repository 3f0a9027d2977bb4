/* Zero workers: the handler is set in master_process (after the fork); a rolling restart
 * has nothing to replace: ROLLING_DONE 0 must still come, from the loop (not inside the
 * call), once; EBUSY until then. A stop of every child with none: 0 or ESRCH, no event. */
#include "life_rec.h"

static int in_call, done_n, phase;

static void finish(mln_event_t *ev, void *d)
{
    (void)d;
    ACHECK(done_n == 1);
    ACHECK(rec_nev == 1);
    phase = 2;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    rec_record(f, e);
    ACHECK(!in_call);
    ACHECK(e->type == M_IPC_ROLLING_DONE && e->status == 0);
    ++done_n;
    ACHECK(mln_event_timer_set(ev, 300, NULL, finish) != NULL);
}

static void master_process(mln_event_t *ev)
{
    int r;
    mln_ipc_child_event_handler_set(on_event, NULL);
    in_call = 1;
    r = mln_fork_stop(ev, NULL, 100);
    ACHECK(r == 0 || errno == ESRCH);
    ACHECK(mln_fork_rolling_restart(ev, 4, 1000, 1000) == 0);
    in_call = 0;
    errno = 0;
    r = mln_fork_rolling_restart(ev, 4, 1000, 1000);
    ACHECK(r == 0 || errno == EBUSY);
    fprintf(stderr, "second rolling right after: %d\n", r);
    phase = 1;
}

static int global_init(void)
{
    ctest_workers(0);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    rec_init(15);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 2);
    return 0;
}
