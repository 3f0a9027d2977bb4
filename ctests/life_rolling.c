/* Issue 22: a rolling restart of 8 supervised workers in batches of 2 under a steady
 * request load.
 *
 * Load: each child mln_fork_iterate lists always has 2 numbered requests to answer (a 1 ms
 * tick tops every listed child up to 2, and each answer brings the next request); each
 * worker answers every request with its number, its pid and its generation (a global the
 * master sets to 1 before the workers start and to 2 just before
 * mln_fork_rolling_restart(ev, 2, 5000, 5000)). Each worker says hello (pid, generation)
 * at the end of worker_process, so on the channel that hello comes before the library's
 * "ready" frame, which is sent once the worker's loop runs. A replacement spends 20 ms in
 * worker_process (a start cost), so the run lasts about 4 batches x 20 ms under load.
 * Checks:
 * - the initial workers: one STARTED each (slots 0..7, restarts 0, f the listed record);
 * - bad arguments (EINVAL) and a second call while one runs (EBUSY);
 * - each replacement: STARTED in the slot of a worker of the run (restarts unchanged: 0),
 *   generation 2 (forked from the master as it is now), and its predecessor still listed
 *   when the replacement's hello arrived (an old worker is stopped only once its
 *   replacement is ready);
 * - each old worker: EXITED how STOPPED, exited 1, status 0, restart_in_ms -1,
 *   frames_lost 0, in its own slot, and every request sent to it answered before that
 *   EXITED (EXITED comes after every frame it sent was handled);
 * - M_IPC_ROLLING_DONE (f NULL, status 0) after the EXITED of all 8 old workers; every slot
 *   0..7 then holds a new pid;
 * - at every tick no fewer than 6 listed workers that said hello ("serving"), and never
 *   more than 8 + 2 listed;
 * - a send is refused (ESRCH) only to a worker no longer listed (being stopped);
 * - no request lost: every request whose send returned 0 got its answer (from the worker
 *   it went to); then a graceful stop of everything (mln_fork_stop(ev, NULL, ...)): from
 *   the call on nothing listed, a send, stats and a second stop refused with ESRCH; the 8
 *   new workers end STOPPED (exited 1, status 0); no process other than those 16 ran.
 * Every process reports failures (life.h). */
#include "life.h"

#define N 8
#define BATCH 2
#define T_REQ 6101
#define T_ANS 6102
#define T_HI 6103
#define MAX_REQ (1 << 20)
#define WARMUP_TICKS 50
#define AFTER_MS 200
#define START_COST_MS 20
#define IN_FLIGHT 2 /* requests each worker has to answer at any time */

/* The workers report it; the master sets 2 before the rolling restart. */
static int generation = 1;

/* Master side. */
struct wk {
    pid_t pid;
    int slot, started, exited, said_hi, gen;
    unsigned outstanding, answers;
    unsigned old_listed_at_hi; /* bit s: the old worker of slot s was listed at its hello */
};
static struct wk wks[LIFE_MAX_PIDS];
static int n_wks;
static pid_t old_pid[N], new_pid[N];
static pid_t req_pid[MAX_REQ]; /* the worker each request went to; 0 once answered */
static unsigned next_seq, sent_n, answered_n, refused_n, sent_rolling;
static int phase; /* 0 starting, 1 warm-up load, 2 rolling, 3 load after, 4 stopping */
static int ticks, n_started, old_exited, stop_exited, min_serving = 1 << 30, max_listed;
static long t_call, t_done;
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

static int is_listed(const struct life_kids *k, pid_t pid)
{
    int i;
    for (i = 0; i < k->n; ++i)
        if (k->pid[i] == pid) return 1;
    return 0;
}

static void tick(mln_event_t *ev, void *data);

/* One numbered request to `f`. A listed child must take it; an answering one (`may_refuse`)
 * may refuse it with ESRCH only if it is no longer listed (being stopped). */
static void send_req(mln_event_t *ev, mln_fork_t *f, int may_refuse)
{
    struct wk *w = wk_get(f->pid);
    mln_u32_t seq = next_seq;
    struct life_kids k;
    CHECK(seq < MAX_REQ);
    if (mln_ipc_master_send_prepare(ev, T_REQ, &seq, sizeof(seq), f) != 0) {
        CHECK(may_refuse && errno == ESRCH);
        life_kids_collect(ev, &k);
        CHECK(!is_listed(&k, f->pid));
        ++refused_n;
        return;
    }
    req_pid[seq] = f->pid;
    ++next_seq;
    ++sent_n;
    ++w->outstanding;
    if (phase == 2) ++sent_rolling;
}

static void start_rolling(mln_event_t *ev)
{
    CHECK(mln_fork_rolling_restart(NULL, BATCH, 5000, 5000) == -1 && errno == EINVAL);
    CHECK(mln_fork_rolling_restart(ev, 0, 5000, 5000) == -1 && errno == EINVAL);
    CHECK(mln_fork_rolling_restart(ev, BATCH, 0, 5000) == -1 && errno == EINVAL);
    generation = 2; /* the replacements are forked from the master as it is now */
    phase = 2;
    t_call = now_ms();
    CHECK(mln_fork_rolling_restart(ev, BATCH, 5000, 5000) == 0);
    CHECK(mln_fork_rolling_restart(ev, BATCH, 5000, 5000) == -1 && errno == EBUSY);
}

static void stop_all(mln_event_t *ev)
{
    struct life_kids k;
    mln_u32_t seq = 0;
    mln_ipc_stats_t st;
    life_kids_collect(ev, &k);
    CHECK(k.n == N);
    phase = 4;
    CHECK(mln_fork_stop(ev, NULL, 5000) == 0);
    /* From the call on: not listed, sends and stats refused with ESRCH, a second stop too. */
    CHECK(mln_ipc_master_send_prepare(ev, T_REQ, &seq, sizeof(seq), k.f[0]) == -1 && errno == ESRCH);
    CHECK(mln_ipc_stats_get(k.f[1], &st) == -1 && errno == ESRCH);
    CHECK(mln_fork_stop(ev, k.f[2], 5000) == -1 && errno == ESRCH);
    life_kids_collect(ev, &k);
    CHECK(k.n == 0);
}

static void tick(mln_event_t *ev, void *data)
{
    struct life_kids k;
    int i, serving = 0;
    (void)data;
    CHECK(getpid() == life_master);
    life_read_starts();
    life_kids_collect(ev, &k);
    for (i = 0; i < k.n; ++i) {
        struct wk *w = wk_find(k.pid[i]);
        if (w != NULL && w->said_hi) ++serving;
    }
    if (phase == 2 || phase == 3) {
        if (serving < min_serving) min_serving = serving;
        if (k.n > max_listed) max_listed = k.n;
        if (serving < 6 || k.n > N + BATCH)
            fprintf(stderr, "master: %d listed, %d of them serving (ms %ld into the run)\n",
                    k.n, serving, now_ms() - t_call);
        CHECK(serving >= N - BATCH);
        CHECK(k.n <= N + BATCH);
    }
    for (i = 0; i < k.n; ++i)
        while (wk_get(k.pid[i])->outstanding < IN_FLIGHT) send_req(ev, k.f[i], 0);
    ++ticks;
    if (phase == 1 && ticks >= WARMUP_TICKS) start_rolling(ev);
    if (phase == 3 && now_ms() - t_done >= AFTER_MS) {
        stop_all(ev);
        return;
    }
    CHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
}

static void maybe_begin(mln_event_t *ev)
{
    int i;
    if (phase != 0 || n_started < N || life_hellos.n < N) return;
    for (i = 0; i < N; ++i) CHECK(old_pid[i] != 0 && wk_find(old_pid[i])->said_hi);
    phase = 1;
    CHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
}

static void finish(mln_event_t *ev)
{
    int s;
    for (s = 0; s < n_wks; ++s) CHECK(wks[s].outstanding == 0);
    if (answered_n != sent_n)
        fprintf(stderr, "master: %u requests sent, %u answered\n", sent_n, answered_n);
    CHECK(answered_n == sent_n);
    fprintf(stderr, "master: %u requests (%u during the rolling restart), all answered, %u refused "
                    "(worker being stopped); rolling restart %ld ms; at least %d serving, at most %d "
                    "listed\n",
            sent_n, sent_rolling, refused_n, t_done - t_call, min_serving, max_listed);
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    struct wk *w;
    int s;
    CHECK(getpid() == life_master);
    CHECK(data == &event_tag);
    switch (e->type) {
    case M_IPC_CHILD_STARTED:
        CHECK(f != NULL && f->pid == e->pid);
        CHECK(e->slot < N);
        CHECK(e->restarts == 0);
        w = wk_get(e->pid);
        CHECK(!w->started && !w->exited);
        w->started = 1;
        w->slot = (int)e->slot;
        if (phase == 0) {
            CHECK(old_pid[e->slot] == 0);
            old_pid[e->slot] = e->pid;
            ++n_started;
            maybe_begin(ev);
        } else {
            CHECK(phase == 2);
            CHECK(old_pid[e->slot] != 0 && old_pid[e->slot] != e->pid);
            CHECK(new_pid[e->slot] == 0);
            new_pid[e->slot] = e->pid;
        }
        break;
    case M_IPC_CHILD_EXITED:
        CHECK(f != NULL && f->pid == e->pid);
        w = wk_find(e->pid);
        CHECK(w != NULL && w->started && !w->exited);
        w->exited = 1;
        if ((int)e->slot != w->slot || e->how != M_IPC_END_STOPPED || e->exited != 1 || e->status != 0
            || e->restart_in_ms != -1 || e->frames_lost != 0 || w->outstanding != 0)
            fprintf(stderr, "master: EXITED pid %d slot %u (started in %d) how %d exited %d status %d "
                            "restart_in_ms %lld frames_lost %llu, %u requests unanswered\n",
                    (int)e->pid, e->slot, w->slot, (int)e->how, e->exited, e->status,
                    (long long)e->restart_in_ms, (unsigned long long)e->frames_lost, w->outstanding);
        CHECK((int)e->slot == w->slot);
        CHECK(e->how == M_IPC_END_STOPPED);
        CHECK(e->exited == 1 && e->status == 0);
        CHECK(e->restart_in_ms == -1);
        CHECK(e->frames_lost == 0);
        CHECK(w->outstanding == 0); /* every request it got was answered before its end */
        if (phase == 2) {
            CHECK(old_pid[e->slot] == e->pid);
            ++old_exited;
        } else {
            CHECK(phase == 4);
            CHECK(new_pid[e->slot] == e->pid);
            if (++stop_exited == N) finish(ev);
        }
        break;
    case M_IPC_ROLLING_DONE:
        CHECK(f == NULL);
        CHECK(phase == 2);
        if (e->status != 0 || old_exited != N)
            fprintf(stderr, "master: ROLLING_DONE status %d after %d old workers exited\n", e->status,
                    old_exited);
        CHECK(e->status == 0);
        CHECK(old_exited == N);
        for (s = 0; s < N; ++s) {
            CHECK(new_pid[s] != 0);
            w = wk_find(new_pid[s]);
            CHECK(w != NULL && w->said_hi && w->gen == 2 && !w->exited);
            if (!(w->old_listed_at_hi & (1u << s)))
                fprintf(stderr, "master: the old worker of slot %d was stopped before its "
                                "replacement %d said hello\n", s, (int)new_pid[s]);
            CHECK(w->old_listed_at_hi & (1u << s));
        }
        t_done = now_ms();
        phase = 3;
        break;
    default:
        fprintf(stderr, "master: unexpected event %d\n", (int)e->type);
        CHECK(0);
    }
}

static void master_hi(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int hi[2], s;
    struct wk *w;
    struct life_kids k;
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(len == sizeof(hi));
    memcpy(hi, buf, sizeof(hi));
    CHECK(hi[0] == (int)f->pid);
    w = wk_get(f->pid);
    CHECK(!w->said_hi);
    w->said_hi = 1;
    w->gen = hi[1];
    CHECK(life_pids_add(&life_hellos, f->pid));
    life_read_starts();
    if (phase == 0) {
        CHECK(w->gen == 1);
        maybe_begin(ev);
        return;
    }
    CHECK(phase == 2);
    CHECK(w->gen == 2);
    life_kids_collect(ev, &k);
    for (s = 0; s < N; ++s)
        if (is_listed(&k, old_pid[s])) w->old_listed_at_hi |= 1u << s;
}

static void master_ans(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int r[3];
    struct wk *w;
    (void)ev; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    CHECK(r[0] >= 0 && (unsigned)r[0] < next_seq);
    CHECK(r[1] == (int)f->pid);
    if (req_pid[r[0]] != f->pid)
        fprintf(stderr, "master: answer to request %d from %d, sent to %d\n", r[0], (int)f->pid,
                (int)req_pid[r[0]]);
    CHECK(req_pid[r[0]] == f->pid);
    req_pid[r[0]] = 0;
    w = wk_find(f->pid);
    CHECK(w != NULL && w->outstanding > 0);
    CHECK(r[2] == w->gen);
    --w->outstanding;
    ++w->answers;
    ++answered_n;
    /* Each answer brings the next request to the same worker, refused (ESRCH) only once the
     * worker is being stopped (then not listed). */
    if (phase >= 1 && phase <= 3 && w->outstanding < IN_FLIGHT) send_req(ev, f, 1);
}

static void worker_req(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_u32_t seq;
    int r[3];
    (void)f_ptr; (void)udata_ptr;
    CHECK(getpid() != life_master);
    CHECK(len == sizeof(seq));
    memcpy(&seq, buf, sizeof(seq));
    r[0] = (int)seq;
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
    if (generation == 2) {
        /* A replacement takes a while to start (as one loading its configuration would), so
         * the run spans many ticks of load. Not a synchronisation. */
        struct timespec t = {0, START_COST_MS * 1000000L};
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {
        }
    }
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 240 : 50);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = 2 * N;
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
    CHECK(phase == 4 && stop_exited == N && old_exited == N);
    CHECK(life_started.n == 2 * N);
    return 0;
}
