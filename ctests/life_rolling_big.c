/* Rolling restarts of 200 workers:
 * P1 batch 50 (n / 4): EBUSY for a second call, EINVAL for batch/ready 0; 200 new STARTED (same
 *    slots, restarts 0), 200 old EXITED STOPPED before ROLLING_DONE 0; at every event at
 *    least 150 workers listed; the new workers answer.
 * P2 replacements crash in worker_process: ROLLING_DONE -1, the old workers kept (same
 *    pids, 200 listed, one per slot).
 * P3 batch 1000 (> n) while an old worker is SIGKILLed mid-run: ROLLING_DONE, then one
 *    live worker per slot, 200 listed, all answer.
 * Then mln_fork_stop(NULL) ends all. */
#include "life_rec.h"

/* 200 workers; 24 under valgrind (the melon build's memcheck ran past the watchdog). */
#define NMAX 200
#define N n_workers
static int n_workers = NMAX;
#define T_PING 9221
#define T_PONG 9222

static int phase, crash_replacements, pongs, pong_target;
static pid_t slot_pid[NMAX];
static pid_t p1_pids[NMAX];
static int slot_of_pid[1 << 22];
static int min_live = 1 << 30;
static int done_status = 99, p3_killed;
static int final_exits;

static int live_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *seen = data, s = slot_of_pid[f->pid] - 1;
    (void)ev;
    if (s < 0) return 0; /* listed before its STARTED (a replacement not ready yet) */
    ACHECK(s < N);
    ++seen[s];
    return 0;
}

/* returns the number listed; checks one per slot when `unique` */
static int listed(mln_event_t *ev, int unique)
{
    int seen[NMAX] = {0}, i, n = 0;
    ACHECK(mln_fork_iterate(ev, live_cb, seen) == 0);
    for (i = 0; i < N; ++i) {
        n += seen[i];
        if (unique && seen[i] != 1) { fprintf(stderr, "slot %d listed %d times\n", i, seen[i]); ACHECK(0); }
    }
    return n;
}

static int ping_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    ACHECK(mln_ipc_master_send_prepare(ev, T_PING, NULL, 0, f) == 0);
    return 0;
}

static void next_phase(mln_event_t *ev);

static int old_kept_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int s = slot_of_pid[f->pid] - 1;
    (void)ev; (void)data;
    ACHECK(s >= 0 && f->pid == p1_pids[s]);
    return 0;
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (++pongs == pong_target) next_phase(ev);
}

static void next_phase(mln_event_t *ev)
{
    int i;
    ++phase;
    fprintf(stderr, "phase %d (t=%ld, events %d, min listed %d)\n", phase, now_ms(), rec_nev, min_live);
    if (phase == 1) {
        errno = 0;
        ACHECK(mln_fork_rolling_restart(ev, 0, 1000, 1000) == -1 && errno == EINVAL);
        errno = 0;
        ACHECK(mln_fork_rolling_restart(ev, 1, 0, 1000) == -1 && errno == EINVAL);
        ACHECK(mln_fork_rolling_restart(ev, N / 4, 20000, 5000) == 0);
        errno = 0;
        ACHECK(mln_fork_rolling_restart(ev, N / 4, 20000, 5000) == -1 && errno == EBUSY);
    } else if (phase == 2) { /* after P1 pongs */
        for (i = 0; i < N; ++i) p1_pids[i] = slot_pid[i];
        crash_replacements = 1;
        done_status = 99;
        ACHECK(mln_fork_rolling_restart(ev, N / 4, 20000, 2000) == 0);
    } else if (phase == 3) {
        crash_replacements = 0;
        done_status = 99;
        ACHECK(mln_fork_rolling_restart(ev, 1000, 20000, 2000) == 0);
    } else if (phase == 4) {
        ACHECK(mln_fork_stop(ev, NULL, 3000) == 0);
    }
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    int n;
    (void)data;
    if (phase >= 1 && phase <= 3) {
        n = listed(ev, 0);
        if (n < min_live) min_live = n;
    }
    switch (e->type) {
    case M_IPC_CHILD_STARTED:
        ACHECK((int)e->slot < N);
        ACHECK(f->pid == e->pid);
        slot_of_pid[e->pid] = (int)e->slot + 1;
        slot_pid[e->slot] = e->pid;
        ACHECK(e->restarts == 0 || (phase == 3 && p3_killed));
        if (phase == 0 && rec_count(M_IPC_CHILD_STARTED, -1) == N) next_phase(ev);
        if (phase == 3 && !p3_killed) {
            /* kill an old worker not yet replaced, if any */
            p3_killed = 1;
            for (int s = N - 1; s >= 0; --s) {
                if (slot_pid[s] == p1_pids[s]) {
                    fprintf(stderr, "P3: SIGKILL old worker of slot %d (pid %d)\n", s, (int)p1_pids[s]);
                    ACHECK(kill(p1_pids[s], SIGKILL) == 0);
                    break;
                }
            }
        }
        break;
    case M_IPC_CHILD_EXITED:
        if (phase == 1) {
            ACHECK(r->how == M_IPC_END_STOPPED && r->exited == 1 && r->status == 0 && r->restart_in_ms == -1);
        }
        if (phase == 4 && ++final_exits == N) mln_event_break_set(ev);
        break;
    case M_IPC_ROLLING_DONE:
        ACHECK(f == NULL);
        done_status = e->status;
        fprintf(stderr, "ROLLING_DONE %d in phase %d\n", e->status, phase);
        if (phase == 1) {
            ACHECK(e->status == 0);
            ACHECK(rec_count(M_IPC_CHILD_STARTED, -1) == 2 * N);
            ACHECK(rec_count(M_IPC_CHILD_EXITED, -1) == N);
            ACHECK(min_live >= N - N / 4);
        } else if (phase == 2) {
            ACHECK(e->status == -1);
            ACHECK(listed(ev, 1) == N);
            ACHECK(mln_fork_iterate(ev, old_kept_cb, NULL) == 0);
        } else if (phase == 3) {
            ACHECK(listed(ev, 1) == N);
        }
        pongs = 0;
        pong_target = listed(ev, 1);
        ACHECK(mln_fork_iterate(ev, ping_cb, NULL) == 0);
        break;
    default:
        ACHECK(0);
    }
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, NULL, 0) == 0);
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    if (crash_replacements) _exit(5);
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
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (valgrind()) n_workers = 24;
    rec_init(55);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(getpid() == rec_master);
    ACHECK(phase == 4);
    rec_check_pids();
    return 0;
}
