/* Edge cases of one worker at a time (a master global says how the next child behaves):
 * S1 mln_fork_stop with deadline UINT32_MAX while the quit handler works 1.5 s: STOPPED
 *    (no early SIGTERM from a wrapped deadline);
 * S2 a worker whose worker_process never returns (its loop never runs), stop 500 ms:
 *    TERMINATED at about 500 ms;
 * S3 a worker stopped right after mln_fork_restart, before its handshake (its clear
 *    handler sleeps 2 s): not listed at once, EXITED comes, never restarted;
 * S4 a rolling restart whose replacement never gets ready (worker_process blocks),
 *    ready_timeout 800: ROLLING_DONE -1, the replacement EXITED KILLED, the old kept;
 * S5 a rolling restart with ready_timeout and deadline UINT32_MAX: completes. */
#include "life_rec.h"

static int mode; /* 0 normal, 1 worker_process blocks, 2 handshake delayed */
static int step;
static long t0;
static pid_t old_pid, repl_pid;

static int first_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    *(mln_fork_t **)data = f;
    return 0;
}

static int restart_one(mln_event_t *ev)
{
    int r = mln_fork_restart(ev);
    ACHECK(r >= 0);
    if (r == 0) mln_event_break_set(ev);
    return r;
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    long dt = now_ms() - t0;
    (void)data;
    if (step == 0 && e->type == M_IPC_CHILD_STARTED) {
        step = 1; t0 = now_ms();
        ACHECK(mln_fork_stop(ev, f, 0xFFFFFFFFu) == 0);
    } else if (step == 1 && e->type == M_IPC_CHILD_EXITED) {
        fprintf(stderr, "S1: %s status %d after %ld ms\n", rec_how_name(r->how), r->status, dt);
        ACHECK(r->how == M_IPC_END_STOPPED && r->exited == 1 && r->status == 0 && dt >= 1400);
        step = 2; mode = 1;
        if (restart_one(ev) == 0) return;
    } else if (step == 2 && e->type == M_IPC_CHILD_STARTED) {
        t0 = now_ms();
        ACHECK(mln_fork_stop(ev, f, 500) == 0);
    } else if (step == 2 && e->type == M_IPC_CHILD_EXITED) {
        fprintf(stderr, "S2: %s status %d after %ld ms\n", rec_how_name(r->how), r->status, dt);
        ACHECK(r->how == M_IPC_END_TERMINATED && r->exited == 0 && r->status == SIGTERM);
        ACHECK(dt >= 450 && dt < 1500);
        step = 3; mode = 2;
        if (restart_one(ev) == 0) return;
        mln_fork_t *c = NULL;
        ACHECK(mln_fork_iterate(ev, first_cb, &c) == 0 && c != NULL);
        t0 = now_ms();
        ACHECK(mln_fork_stop(ev, c, 500) == 0);
        ACHECK(rec_live(ev) == 0);
    } else if (step == 3 && e->type == M_IPC_CHILD_EXITED) {
        fprintf(stderr, "S3: %s exited %d status %d after %ld ms, restart_in %lld\n", rec_how_name(r->how),
                r->exited, r->status, dt, r->restart_in_ms);
        ACHECK(r->restart_in_ms == -1);
        ACHECK(dt < 3500);
        step = 4; mode = 0;
        if (restart_one(ev) == 0) return;
    } else if (step == 3 && e->type == M_IPC_CHILD_STARTED) {
        fprintf(stderr, "S3: STARTED of a child stopped before its handshake\n");
    } else if (step == 4 && e->type == M_IPC_CHILD_STARTED) {
        step = 5; mode = 1; old_pid = e->pid; t0 = now_ms();
        ACHECK(mln_fork_rolling_restart(ev, 1, 800, 1000) == 0);
    } else if (step == 5 && e->type == M_IPC_CHILD_STARTED) {
        repl_pid = e->pid; /* the replacement's handshake: not ready yet */
    } else if (step == 5 && e->type == M_IPC_CHILD_EXITED) {
        ACHECK(e->pid != old_pid);
        fprintf(stderr, "S4: replacement %s status %d after %ld ms\n", rec_how_name(r->how), r->status, dt);
        ACHECK(r->how == M_IPC_END_KILLED);
    } else if (step == 5 && e->type == M_IPC_ROLLING_DONE) {
        fprintf(stderr, "S4: ROLLING_DONE %d after %ld ms\n", e->status, dt);
        ACHECK(e->status == -1);
        ACHECK(rec_count(M_IPC_CHILD_EXITED, -1) == 4);
        ACHECK(rec_live(ev) == 1 && !pid_exited(old_pid));
        step = 6; mode = 0;
        ACHECK(mln_fork_rolling_restart(ev, 1, 0xFFFFFFFFu, 0xFFFFFFFFu) == 0);
    } else if (step == 6 && e->type == M_IPC_CHILD_EXITED) {
        ACHECK(e->pid == old_pid && r->how == M_IPC_END_STOPPED);
    } else if (step == 6 && e->type == M_IPC_ROLLING_DONE) {
        fprintf(stderr, "S5: ROLLING_DONE %d\n", e->status);
        ACHECK(e->status == 0);
        step = 7;
        mln_event_break_set(ev);
    } else if (e->type != M_IPC_CHILD_STARTED) {
        fprintf(stderr, "unexpected event in step %d\n", step);
        ACHECK(0);
    }
}

static int quit(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    if (step == 0) usleep(1500000); /* the first worker (forked at step 0) */
    return 0;
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    if (mode == 1) for (;;) pause();
}

static void clr(void *d)
{
    (void)d;
    if (mode == 2) sleep(2);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(on_event, NULL);
    mln_ipc_worker_quit_handler_set(quit, NULL);
    mln_fork_resource_clear_handler_set(clr, NULL);
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    rec_init(40);
    if (ctest_framework_init(&a) < 0) return 1;
    if (getpid() != rec_master) return 0;
    ACHECK(step == 7);
    return 0;
}
