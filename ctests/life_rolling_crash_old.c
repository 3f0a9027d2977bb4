/* Rolling restart of 6 workers, batch 1. When the first replacement starts, the old worker
 * of slot 5 (not yet replaced) is SIGKILLed: it is a crash (restarted), and the run goes
 * on. Expected: its EXITED says CRASHED with a restart coming; ROLLING_DONE 0; then exactly
 * one live worker per slot, each answering a ping; no slot ever has two live workers once
 * the run ended. */
#include "life_rec.h"

#define N 6
#define T_PING 9231
#define T_PONG 9232

static int phase, killed, pongs, expect_pongs;
static pid_t victim;
static int slot_of_pid[1 << 22];

static int uniq_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *seen = data, s = slot_of_pid[f->pid] - 1;
    (void)ev;
    ACHECK(s >= 0 && s < N); /* listed but never STARTED? */
    ++seen[s];
    ACHECK(mln_ipc_master_send_prepare(ev, T_PING, NULL, 0, f) == 0);
    return 0;
}

static void check_and_ping(mln_event_t *ev)
{
    int seen[N] = {0}, i, n = 0;
    ACHECK(mln_fork_iterate(ev, uniq_cb, seen) == 0);
    for (i = 0; i < N; ++i) {
        if (seen[i] != 1) fprintf(stderr, "slot %d: %d live\n", i, seen[i]);
        n += seen[i];
    }
    for (i = 0; i < N; ++i) ACHECK(seen[i] == 1);
    expect_pongs = n;
}

static void settle(mln_event_t *ev, void *d)
{
    (void)d;
    check_and_ping(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        slot_of_pid[e->pid] = (int)e->slot + 1;
        if (phase == 0 && rec_count(M_IPC_CHILD_STARTED, -1) == N) {
            phase = 1;
            ACHECK(mln_fork_rolling_restart(ev, 1, 5000, 2000) == 0);
        } else if (phase == 1 && !killed) {
            int i;
            killed = 1;
            for (i = 0; i < rec_nev; ++i)
                if (rec_evs[i].type == M_IPC_CHILD_STARTED && rec_evs[i].slot == N - 1) victim = rec_evs[i].pid;
            ACHECK(kill(victim, SIGKILL) == 0);
        }
    } else if (e->type == M_IPC_CHILD_EXITED) {
        if (e->pid == victim) {
            ACHECK(r->how == M_IPC_END_CRASHED && r->exited == 0 && r->status == SIGKILL);
            ACHECK(r->restart_in_ms >= 0);
        }
    } else if (e->type == M_IPC_ROLLING_DONE) {
        ACHECK(e->status == 0);
        phase = 2;
        ACHECK(mln_event_timer_set(ev, 1500, NULL, settle) != NULL);
    }
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (++pongs == expect_pongs) { phase = 3; mln_event_break_set(ev); }
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, NULL, 0) == 0);
}

static int global_init(void)
{
    ctest_workers(N);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
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
