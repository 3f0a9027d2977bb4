/* Bad arguments and stale records of the lifecycle-control functions, and errno left alone
 * on success (errno is set to EDOM before each successful call and checked after).
 * In master_process (before the loop runs):
 * - EINVAL: mln_fork_stop with ev NULL (f NULL or a live record), mln_fork_rolling_restart
 *   with ev NULL, batch 0, ready_timeout_ms 0; mln_fork_restart_policy_set(1, 0);
 * - ESRCH: mln_fork_stop of a record that never was a child (a zeroed mln_fork_t);
 * - accepted: mln_fork_restart_policy_set(0, 0), (0, 5), (5, 60000), then (0, 0) again;
 *   mln_ipc_child_event_handler_set(NULL, NULL) and mln_ipc_worker_quit_handler_set(NULL,
 *   NULL), then the real event handler (set before the loop runs: every event comes).
 * Two supervised workers; on the loop, driven by the events:
 * - both STARTED: worker 0 is told to exit(3). During its EXITED event mln_fork_stop(ev, f)
 *   is -1 ESRCH (a dead record); after the event (a 0 ms timer) again ESRCH, and
 *   mln_ipc_stats_get(f) ESRCH;
 * - its replacement's STARTED (restarts 1): mln_fork_stop(ev, f, 5000) is 0, a second stop
 *   of f is -1 ESRCH (already stopping); at its EXITED (STOPPED, restart_in_ms -1) and
 *   after it, ESRCH again;
 * - then mln_fork_rolling_restart(ev, 1, 10000, 5000) is 0 and a second call at once is
 *   -1 EBUSY, as are EINVAL checks still EINVAL meanwhile (batch 0); the run replaces worker
 *   1 (STARTED slot 1 restarts 0, then the old one's EXITED how STOPPED, restart_in_ms -1),
 *   then ROLLING_DONE (f NULL, status 0);
 * - from that ROLLING_DONE handler a new rolling restart is accepted (the run ended) and
 *   ends with another ROLLING_DONE status 0; that ends the test. */
#include "life.h"

#define N 2
#define T_DIE 2601

static mln_event_t *loop_ev;
static int started, phase, finished, rolls_done;
static mln_fork_t *w1, *new_w1, *dead_f, *stopped_f;
static int old_w1_exited;

#define OK_CALL(call) do { errno = EDOM; CHECK((call) == 0); CHECK(errno == EDOM); } while (0)
#define ERR_CALL(call, err) do { errno = 0; CHECK((call) == -1); CHECK(errno == (err)); } while (0)

static void worker_die(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    exit(3);
}

static void stale_checks(mln_event_t *ev, void *data)
{
    mln_fork_t *f = data;
    mln_ipc_stats_t st;
    ERR_CALL(mln_fork_stop(ev, f, 100), ESRCH);
    ERR_CALL(mln_fork_stop(ev, f, 0), ESRCH);
    ERR_CALL(mln_ipc_stats_get(f, &st), ESRCH);
    ERR_CALL(mln_ipc_master_send_prepare(ev, T_DIE, NULL, 0, f), ESRCH);
    if (f == stopped_f) {
        /* Both stale checks done: the rolling restart. */
        CHECK(phase == 2);
        phase = 3;
        OK_CALL(mln_fork_rolling_restart(ev, 1, 10000, 5000));
        ERR_CALL(mln_fork_rolling_restart(ev, 1, 10000, 5000), EBUSY);
        ERR_CALL(mln_fork_rolling_restart(ev, 0, 10000, 5000), EINVAL);
        ERR_CALL(mln_fork_rolling_restart(ev, 2, 0, 5000), EINVAL);
    }
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    life_event_record(f, e);
    CHECK(data == (void *)&loop_ev);
    switch (phase) {
    case 0: /* the initial starts */
        CHECK(e->type == M_IPC_CHILD_STARTED && e->restarts == 0 && e->slot < N);
        CHECK(f != NULL && f->pid == e->pid);
        if (e->slot == 1) w1 = f;
        else dead_f = f;
        if (++started < N) return;
        phase = 1;
        CHECK(mln_ipc_master_send_prepare(ev, T_DIE, NULL, 0, dead_f) == 0);
        return;
    case 1: /* worker 0's death, then its replacement */
        CHECK(e->slot == 0 && f != NULL && f->pid == e->pid);
        if (e->type == M_IPC_CHILD_EXITED) {
            CHECK(f == dead_f && e->how == M_IPC_END_CRASHED && e->exited == 1 && e->status == 3);
            CHECK(e->restart_in_ms >= 0);
            ERR_CALL(mln_fork_stop(ev, f, 100), ESRCH);
            CHECK(mln_event_timer_set(ev, 0, dead_f, stale_checks) != NULL);
            return;
        }
        CHECK(e->type == M_IPC_CHILD_STARTED && e->restarts == 1 && f != dead_f);
        stopped_f = f;
        OK_CALL(mln_fork_stop(ev, f, 5000));
        ERR_CALL(mln_fork_stop(ev, f, 5000), ESRCH);
        phase = 2;
        return;
    case 2: /* the stopped one ends */
        CHECK(e->type == M_IPC_CHILD_EXITED && e->slot == 0 && f == stopped_f);
        CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
        CHECK(e->restart_in_ms == -1);
        ERR_CALL(mln_fork_stop(ev, f, 100), ESRCH);
        CHECK(mln_event_timer_set(ev, 0, stopped_f, stale_checks) != NULL);
        return;
    case 3: /* the rolling restarts of worker 1 */
        if (e->type == M_IPC_ROLLING_DONE) {
            CHECK(f == NULL && e->status == 0);
            CHECK(new_w1 != NULL && old_w1_exited);
            w1 = new_w1;
            new_w1 = NULL;
            old_w1_exited = 0;
            if (++rolls_done == 1) {
                /* The run has ended: a new one is accepted. */
                OK_CALL(mln_fork_rolling_restart(ev, 1, 10000, 5000));
                return;
            }
            finished = 1;
            mln_event_break_set(ev);
            return;
        }
        CHECK(e->slot == 1 && f != NULL && f->pid == e->pid);
        if (e->type == M_IPC_CHILD_STARTED) {
            CHECK(e->restarts == 0 && f != w1 && new_w1 == NULL && !old_w1_exited);
            new_w1 = f;
            return;
        }
        CHECK(e->type == M_IPC_CHILD_EXITED && f == w1 && new_w1 != NULL && !old_w1_exited);
        CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
        CHECK(e->restart_in_ms == -1);
        ERR_CALL(mln_fork_stop(ev, f, 100), ESRCH);
        old_w1_exited = 1;
        return;
    }
    CHECK(0);
}

static void master_process(mln_event_t *ev)
{
    mln_fork_t fake, *any = NULL;
    struct life_kids kids;
    life_master_watch(ev);
    life_watchdog(valgrind() ? 200 : 40);
    loop_ev = ev;
    life_kids_collect(ev, &kids);
    CHECK(kids.n == N);
    any = kids.f[0];

    ERR_CALL(mln_fork_stop(NULL, NULL, 100), EINVAL);
    ERR_CALL(mln_fork_stop(NULL, any, 100), EINVAL);
    ERR_CALL(mln_fork_rolling_restart(NULL, 1, 1000, 1000), EINVAL);
    ERR_CALL(mln_fork_rolling_restart(ev, 0, 1000, 1000), EINVAL);
    ERR_CALL(mln_fork_rolling_restart(ev, 1, 0, 1000), EINVAL);
    ERR_CALL(mln_fork_restart_policy_set(1, 0), EINVAL);
    memset(&fake, 0, sizeof(fake));
    ERR_CALL(mln_fork_stop(ev, &fake, 100), ESRCH);

    OK_CALL(mln_fork_restart_policy_set(0, 0));
    OK_CALL(mln_fork_restart_policy_set(0, 5));
    OK_CALL(mln_fork_restart_policy_set(5, 60000));
    OK_CALL(mln_fork_restart_policy_set(0, 0));

    errno = EDOM;
    mln_ipc_child_event_handler_set(NULL, NULL);
    mln_ipc_worker_quit_handler_set(NULL, NULL);
    mln_ipc_child_event_handler_set(on_event, &loop_ev);
    CHECK(errno == EDOM);
    /* Nothing above changed the workers. */
    life_kids_collect(ev, &kids);
    CHECK(kids.n == N && kids.f[0] == any);
}

static int global_init(void)
{
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_DIE, NULL, worker_die, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    if (!finished) life_events_dump();
    CHECK(finished && rolls_done == 2);
    return 0;
}
