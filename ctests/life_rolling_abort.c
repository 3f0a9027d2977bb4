/* Issue 22: a rolling restart whose replacements never become ready is aborted at its
 * ready timeout, and the old workers go on serving.
 *
 * 4 supervised workers. Each says hello (pid, generation) from worker_process; while the
 * master's global `hang` is set, a worker forked then blocks in worker_process after its
 * hello (pause()), so its loop never runs. The master sets hang = 1, generation = 2, and
 * calls mln_fork_rolling_restart(ev, 2, 500, 2000).
 * Checks:
 * - the first batch only: 2 replacements, STARTED in slots 0 and 1 (the oldest workers),
 *   restarts 0 (their hello is queued by a loop that never runs: it may never arrive);
 * - each gets EXITED how KILLED (exited 0, status SIGKILL), restart_in_ms -1, not before
 *   the 500 ms timeout; then M_IPC_ROLLING_DONE with f NULL and status -1, after both;
 * - no old worker ended: the list holds exactly the 4 old pids, each answers a request;
 * - the old workers stay supervised: SIGKILL to the one of slot 3 gives EXITED CRASHED
 *   (exited 0, status SIGKILL, restart_in_ms >= 0) and a STARTED in slot 3, restarts 1;
 * - with hang cleared (at the abort) and generation 3 a second rolling restart succeeds: 4 STARTED
 *   (slots 0..3, restarts unchanged: 0, 0, 0, 1), the 4 old workers EXITED STOPPED
 *   (exited 1, status 0), ROLLING_DONE status 0 after them, and the 4 new workers (all of
 *   generation 3) answer;
 * - a graceful stop of everything ends them (STOPPED); 4 + 2 + 1 + 4 processes in all.
 * Every process reports failures (life.h).
 * ROLLING_DONE -1 must come after the EXITED of both killed replacements (the end of the
 * first can be handled at once, before the second is closed). */
#include "life.h"

#define N 4
#define T_REQ 6111
#define T_ANS 6112
#define T_HI 6113
#define READY_MS 500

/* Master state the workers inherit. */
static volatile int hang;
static int generation = 1;

struct wk {
    pid_t pid;
    int slot, started, exited, said_hi, gen;
};
static struct wk wks[LIFE_MAX_PIDS];
static int n_wks;
static pid_t slot_pid[N];  /* the worker serving each slot */
static pid_t hung[2];      /* the replacements of the aborted run */
static pid_t restarted;    /* the restart of slot 3 */
static int phase;          /* see the steps below */
static int n_started, n_killed, n_old_exited, n_stop_exited, answers;
static pid_t answered[N];
static long t_call;
static int event_tag;

static struct wk *wk_find(pid_t pid)
{
    int i;
    for (i = 0; i < n_wks; ++i)
        if (wks[i].pid == pid) return &wks[i];
    return NULL;
}

static struct wk *wk_get(pid_t pid)
{
    struct wk *w = wk_find(pid);
    if (w != NULL) return w;
    CHECK(n_wks < LIFE_MAX_PIDS);
    w = &wks[n_wks++];
    memset(w, 0, sizeof(*w));
    w->pid = pid;
    w->slot = -1;
    return w;
}

/* One request to each listed child: the list must be exactly slot_pid[0..N-1]; `next`
 * runs once all answered. */
static void (*round_next)(mln_event_t *ev);

static void ask_all(mln_event_t *ev, void (*next)(mln_event_t *ev))
{
    struct life_kids k;
    int i, s, found;
    life_read_starts();
    life_kids_collect(ev, &k);
    if (k.n != N) fprintf(stderr, "master: %d children listed, %d expected\n", k.n, N);
    CHECK(k.n == N);
    for (s = 0; s < N; ++s) {
        found = 0;
        for (i = 0; i < k.n; ++i)
            if (k.pid[i] == slot_pid[s]) found = 1;
        if (!found) fprintf(stderr, "master: the worker of slot %d (%d) is not listed\n", s, (int)slot_pid[s]);
        CHECK(found);
    }
    answers = 0;
    round_next = next;
    for (i = 0; i < k.n; ++i) {
        CHECK(mln_ipc_master_send_prepare(ev, T_REQ, &generation, sizeof(generation), k.f[i]) == 0);
        answered[i] = 0;
    }
}

static void second_rolling(mln_event_t *ev);
static void stop_everything(mln_event_t *ev);

/* Step 1 (all started): the aborted run. */
static void first_rolling(mln_event_t *ev)
{
    CHECK(phase == 0);
    phase = 1;
    hang = 1;
    generation = 2;
    t_call = now_ms();
    CHECK(mln_fork_rolling_restart(ev, 2, READY_MS, 2000) == 0);
    CHECK(mln_fork_rolling_restart(ev, 2, READY_MS, 2000) == -1 && errno == EBUSY);
}

/* Step 3 (the old workers answered after the abort): kill the one of slot 3. */
static void kill_one(mln_event_t *ev)
{
    (void)ev;
    CHECK(phase == 2);
    phase = 3;
    CHECK(kill(slot_pid[3], SIGKILL) == 0);
}

/* Step 5 (its replacement answered too): the second rolling restart. */
static void second_rolling(mln_event_t *ev)
{
    CHECK(phase == 4);
    phase = 5;
    generation = 3;
    t_call = now_ms();
    CHECK(mln_fork_rolling_restart(ev, 2, 5000, 5000) == 0);
}

/* Step 7 (the new workers answered): stop everything. */
static void stop_everything(mln_event_t *ev)
{
    CHECK(phase == 6);
    phase = 7;
    CHECK(mln_fork_stop(ev, NULL, 5000) == 0);
}

/* Step 4: the restarted worker of slot 3 started (event) and said hello (either may come
 * first): ask everyone. */
static void maybe_step4(mln_event_t *ev)
{
    struct wk *w = restarted != 0 ? wk_find(restarted) : NULL;
    if (w == NULL || !w->started || !w->said_hi) return;
    slot_pid[3] = restarted;
    phase = 4;
    ask_all(ev, second_rolling);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    struct wk *w;
    int s;
    CHECK(getpid() == life_master);
    CHECK(data == &event_tag);
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(f != NULL && f->pid == e->pid && e->slot < N);
        w = wk_get(e->pid);
        CHECK(!w->started);
        w->started = 1;
        w->slot = (int)e->slot;
        if (phase == 0) {
            CHECK(e->restarts == 0 && slot_pid[e->slot] == 0);
            slot_pid[e->slot] = e->pid;
            if (++n_started == N && life_hellos.n == N) ask_all(ev, first_rolling);
        } else if (phase == 1) {
            /* The first batch: the two oldest workers' slots. */
            CHECK(e->slot == 0 || e->slot == 1);
            CHECK(e->restarts == 0);
            CHECK(hung[e->slot] == 0);
            hung[e->slot] = e->pid;
        } else if (phase == 3) {
            CHECK(e->slot == 3 && e->restarts == 1);
            CHECK(restarted == 0);
            restarted = e->pid;
            maybe_step4(ev);
        } else {
            CHECK(phase == 5);
            CHECK(e->restarts == (e->slot == 3 ? 1u : 0u));
            CHECK(slot_pid[e->slot] != 0 && slot_pid[e->slot] != e->pid);
        }
        return;
    }
    if (e->type == M_IPC_CHILD_EXITED) {
        CHECK(f != NULL && f->pid == e->pid);
        w = wk_find(e->pid);
        CHECK(w != NULL && w->started && !w->exited);
        CHECK((int)e->slot == w->slot);
        w->exited = 1;
        if (phase == 1) {
            long dt = now_ms() - t_call;
            if (e->pid != hung[e->slot] || e->how != M_IPC_END_KILLED || e->exited != 0
                || e->status != SIGKILL || e->restart_in_ms != -1 || dt < READY_MS)
                fprintf(stderr, "master: EXITED pid %d slot %u how %d exited %d status %d "
                                "restart_in_ms %lld, %ld ms after the call\n",
                        (int)e->pid, e->slot, (int)e->how, e->exited, e->status,
                        (long long)e->restart_in_ms, dt);
            CHECK(e->pid == hung[e->slot]); /* no old worker ends */
            CHECK(e->how == M_IPC_END_KILLED);
            CHECK(e->exited == 0 && e->status == SIGKILL);
            CHECK(e->restart_in_ms == -1);
            CHECK(dt >= READY_MS);
            ++n_killed;
            /* Its hello was queued by a loop that never ran: count it as said (life.h). */
            life_read_starts();
            life_pids_add(&life_hellos, e->pid);
        } else if (phase == 3) {
            CHECK(e->pid == slot_pid[3] && e->slot == 3);
            CHECK(e->how == M_IPC_END_CRASHED);
            CHECK(e->exited == 0 && e->status == SIGKILL);
            CHECK(e->restart_in_ms >= 0);
        } else if (phase == 5) {
            CHECK(e->pid == slot_pid[e->slot]);
            CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
            CHECK(e->restart_in_ms == -1);
            ++n_old_exited;
        } else {
            CHECK(phase == 7);
            CHECK(e->pid == slot_pid[e->slot]);
            CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
            CHECK(e->restart_in_ms == -1);
            if (++n_stop_exited == N) mln_event_break_set(ev);
        }
        return;
    }
    if (e->type == M_IPC_ROLLING_DONE) {
        CHECK(f == NULL);
        if (phase == 1) {
            long dt = now_ms() - t_call;
            fprintf(stderr, "master: aborted run ended %ld ms after the call (status %d)\n", dt, e->status);
            CHECK(e->status == -1);
            CHECK(n_killed == 2);
            CHECK(dt >= READY_MS);
            phase = 2;
            hang = 0; /* the restart of step 4 must run its loop */
            /* The old workers, same pids, still serve. */
            ask_all(ev, kill_one);
            return;
        }
        CHECK(phase == 5);
        fprintf(stderr, "master: second run ended %ld ms after the call (status %d)\n",
                now_ms() - t_call, e->status);
        CHECK(e->status == 0);
        CHECK(n_old_exited == N);
        /* The new workers now serve the slots. */
        for (s = 0; s < N; ++s) slot_pid[s] = 0;
        for (s = 0; s < n_wks; ++s)
            if (wks[s].started && !wks[s].exited) {
                CHECK(wks[s].slot >= 0 && wks[s].slot < N && slot_pid[wks[s].slot] == 0);
                CHECK(wks[s].said_hi && wks[s].gen == 3);
                slot_pid[wks[s].slot] = wks[s].pid;
            }
        for (s = 0; s < N; ++s) CHECK(slot_pid[s] != 0);
        phase = 6;
        ask_all(ev, stop_everything);
        return;
    }
    fprintf(stderr, "master: unexpected event %d\n", (int)e->type);
    CHECK(0);
}

static void master_hi(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int hi[2];
    struct wk *w;
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(len == sizeof(hi));
    memcpy(hi, buf, sizeof(hi));
    CHECK(hi[0] == (int)f->pid);
    w = wk_get(f->pid);
    CHECK(!w->said_hi);
    w->said_hi = 1;
    w->gen = hi[1];
    CHECK(w->gen == generation);
    CHECK(life_pids_add(&life_hellos, f->pid));
    life_read_starts();
    if (phase == 0 && n_started == N && life_hellos.n == N) ask_all(ev, first_rolling);
    if (phase == 3) maybe_step4(ev);
}

static void master_ans(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int r[3], i;
    (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    CHECK(r[1] == (int)f->pid);
    CHECK(r[0] == generation); /* the request's content */
    CHECK(r[2] == wk_find(f->pid)->gen);
    for (i = 0; i < answers; ++i) CHECK(answered[i] != f->pid);
    CHECK(answers < N);
    answered[answers++] = f->pid;
    if (answers == N) round_next(ev);
}

static void worker_req(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)f_ptr; (void)udata_ptr;
    CHECK(getpid() != life_master);
    CHECK(len == sizeof(int));
    memcpy(&r[0], buf, sizeof(int));
    r[1] = (int)getpid();
    r[2] = generation;
    CHECK(mln_ipc_worker_send_prepare(ev, T_ANS, r, sizeof(r)) == 0);
}

static void worker_process(mln_event_t *ev)
{
    int hi[2];
    hi[0] = (int)getpid();
    hi[1] = generation;
    CHECK(getpid() != life_master);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HI, hi, sizeof(hi)) == 0);
    /* A replacement of the aborted run: its loop never runs (the library kills it). */
    while (hang) pause();
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 240 : 50);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N + 2 + 1 + N;
    if (!mln_ipc_handler_register(T_HI, master_hi, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ANS, master_ans, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_REQ, NULL, worker_req, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    life_init();
    mln_ipc_child_event_handler_set(on_event, &event_tag);
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 7 && n_stop_exited == N);
    CHECK(life_started.n == N + 2 + 1 + N);
    return 0;
}
