/* The child-event handler runs the master's loop itself (mln_event_dispatch, 30 ms, as
 * the docs allow for IPC handlers), swaps itself for another handler and back. 4 workers;
 * at the 4th STARTED all are stopped (2 of them crash first via SIGKILL, restarted, and
 * the replacements are stopped too). Expected: each event delivered once (per pid one
 * STARTED, one EXITED, STARTED first), nothing lost: every pid ever STARTED gets EXITED. */
#include "life_rec.h"

#define N 4

static int depth, maxdepth, phase, stop_all_done;

static void unnest(mln_event_t *ev, void *d)
{
    (void)d;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data);

static void on_event2(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    CHECK(data == (void *)2);
    mln_ipc_child_event_handler_set(on_event, (void *)1);
    on_event(ev, f, e, (void *)1);
}

static void finish(mln_event_t *ev, void *d)
{
    int i, j;
    (void)d;
    for (i = 0; i < rec_nev; ++i) {
        int ex = 0;
        if (rec_evs[i].type != M_IPC_CHILD_STARTED) continue;
        for (j = 0; j < rec_nev; ++j) if (rec_evs[j].type == M_IPC_CHILD_EXITED && rec_evs[j].pid == rec_evs[i].pid) ++ex;
        if (ex != 1) { fprintf(stderr, "pid %d: %d EXITED\n", (int)rec_evs[i].pid, ex); ACHECK(0); }
    }
    ACHECK(rec_check_pids() == 0);
    ACHECK(rec_live(ev) == 0);
    fprintf(stderr, "events %d, max nesting %d\n", rec_nev, maxdepth);
    phase = 2;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    CHECK(data == (void *)1);
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED) {
        int started = rec_count(M_IPC_CHILD_STARTED, -1);
        if (started == 2 || started == 3) ACHECK(kill(e->pid, SIGKILL) == 0);
        if (started == N + 2 && !stop_all_done) {
            stop_all_done = 1;
            ACHECK(mln_fork_stop(ev, NULL, 2000) == 0);
            ACHECK(mln_event_timer_set(ev, 4000, NULL, finish) != NULL);
        }
    }
    if (rec_nev % 2) mln_ipc_child_event_handler_set(on_event2, (void *)2);
    if (depth < 3) {
        ++depth;
        if (depth > maxdepth) maxdepth = depth;
        ACHECK(mln_event_timer_set(ev, 30, NULL, unnest) != NULL);
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
        --depth;
    }
}

static int global_init(void)
{
    ctest_workers(N);
    mln_ipc_child_event_handler_set(on_event, (void *)1);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(30);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 2);
    return 0;
}
