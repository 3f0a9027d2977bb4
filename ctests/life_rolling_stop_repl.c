/* During a rolling restart (4 workers, batch 1) the program stops the first replacement
 * as soon as it STARTED (mln_fork_stop(ev, f_replacement)). Whatever the run then does,
 * it must end with one ROLLING_DONE, and no slot may be left with two live workers or
 * none unless the docs say so: the old worker of that slot is either kept (abort) or
 * stopped (the replacement counted as done). Expected here: ROLLING_DONE, and after it
 * every slot other than the stopped one's has exactly one live worker. */
#include "life_rec.h"

#define N 4

static int phase, done_status = 99;
static int slot_of_pid[1 << 22];
static pid_t stopped_pid;

static int cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *seen = data, s = slot_of_pid[f->pid] - 1;
    (void)ev;
    ACHECK(s >= 0);
    ++seen[s];
    return 0;
}

static void finish(mln_event_t *ev, void *d)
{
    int seen[N] = {0}, i;
    (void)d;
    ACHECK(done_status != 99);
    ACHECK(mln_fork_iterate(ev, cb, seen) == 0);
    for (i = 0; i < N; ++i) fprintf(stderr, "slot %d: %d live\n", i, seen[i]);
    for (i = 1; i < N; ++i) ACHECK(seen[i] == 1);
    ACHECK(seen[0] <= 1);
    phase = 3;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED) {
        slot_of_pid[e->pid] = (int)e->slot + 1;
        if (phase == 0 && rec_count(M_IPC_CHILD_STARTED, -1) == N) {
            phase = 1;
            ACHECK(mln_fork_rolling_restart(ev, 1, 3000, 3000) == 0);
        } else if (phase == 1) {
            phase = 2;
            stopped_pid = f->pid;
            ACHECK(mln_fork_stop(ev, f, 1000) == 0);
        }
    } else if (e->type == M_IPC_ROLLING_DONE) {
        ACHECK(done_status == 99);
        done_status = e->status;
        fprintf(stderr, "ROLLING_DONE %d\n", e->status);
        ACHECK(mln_event_timer_set(ev, 1500, NULL, finish) != NULL);
    }
}

static int global_init(void)
{
    ctest_workers(N);
    mln_ipc_child_event_handler_set(on_event, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(30);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(phase == 3);
    rec_check_pids();
    return 0;
}
