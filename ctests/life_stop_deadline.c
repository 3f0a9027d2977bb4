/* A graceful stop that the worker ignores ends at the deadline: SIGTERM, then SIGKILL 1 s
 * later. Two supervised workers whose quit handler (set in worker_process) reports that it
 * ran and returns 1 (the worker goes on). Once both started (events), the master tells
 * worker 1 to ignore SIGTERM (signal(SIGTERM, SIG_IGN)); worker 0 keeps the default
 * disposition. Once both answered, the master stops each one with a deadline of 300 ms.
 * Checks:
 * - each quit handler ran (its frame reached the master before its EXITED event), once;
 * - worker 0: EXITED how TERMINATED, exited 0, status SIGTERM, restart_in_ms -1, no
 *   sooner than the deadline and within 10 s of the stop;
 * - worker 1: EXITED how KILLED, exited 0, status SIGKILL, restart_in_ms -1, no sooner than
 *   deadline + 1 s (minus 50 ms of clock granularity) and within 15 s of the stop;
 * - f of each EXITED is the stopped record (f->pid == e->pid), the process is gone;
 * - nothing restarted: 1 s after the second EXITED, no STARTED since the stop, the list
 *   is empty and the master has no child process left.
 * Under memcheck, worker 0 is killed by SIGTERM while its loop waits in epoll_wait: no
 * memory of the loop may show as lost then (the events buffer of the wait). */
#include "life.h"

#define N 2
#define DEADLINE 300
#define T_SETUP 2401
#define T_READY 2402
#define T_QUIT_RAN 2403

static mln_fork_t *fs[N];
static int started, ready, quits[N], exited[N], finished;
static int nev_at_stop;
static long t_stop, t_exit[N];

/* Worker: ignore the quit, say so. */
static int worker_quit(mln_event_t *ev, void *data)
{
    static int calls;
    int c = ++calls;
    CHECK(getpid() != life_master);
    CHECK(data == (void *)&quits);
    CHECK(mln_ipc_worker_send_prepare(ev, T_QUIT_RAN, &c, sizeof(c)) == 0);
    return 1;
}

static void worker_setup(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int ignore;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(int));
    memcpy(&ignore, buf, sizeof(int));
    if (ignore) CHECK(signal(SIGTERM, SIG_IGN) != SIG_ERR);
    CHECK(mln_ipc_worker_send_prepare(ev, T_READY, &ignore, sizeof(ignore)) == 0);
}

static void worker_process(mln_event_t *ev)
{
    mln_ipc_worker_quit_handler_set(worker_quit, &quits);
    life_worker_hello(ev);
}

static int slot_of(void *f_ptr)
{
    int i;
    for (i = 0; i < N; ++i)
        if (fs[i] == f_ptr) return i;
    CHECK(0);
    return -1;
}

static void master_ready(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i, ignore, s = slot_of(f_ptr);
    (void)udata_ptr;
    CHECK(len == sizeof(int));
    memcpy(&ignore, buf, sizeof(int));
    CHECK(ignore == s);
    if (++ready < N) return;
    t_stop = now_ms();
    nev_at_stop = life_nevents;
    for (i = 0; i < N; ++i) {
        errno = EDOM;
        CHECK(mln_fork_stop(ev, fs[i], DEADLINE) == 0);
        CHECK(errno == EDOM);
    }
}

static void master_quit_ran(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int c, s = slot_of(f_ptr);
    (void)ev; (void)udata_ptr;
    CHECK(t_stop != 0 && !exited[s]);
    CHECK(len == sizeof(int));
    memcpy(&c, buf, sizeof(int));
    CHECK(c == 1);
    ++quits[s];
}

static void all_done(mln_event_t *ev, void *data)
{
    struct life_kids kids;
    int i, live, zombies;
    (void)data;
    for (i = nev_at_stop; i < life_nevents; ++i)
        CHECK(life_events[i].e.type != M_IPC_CHILD_STARTED);
    life_kids_collect(ev, &kids);
    CHECK(kids.n == 0);
    child_processes(&live, &zombies);
    if (live != 0 || zombies != 0) fprintf(stderr, "children: %d live, %d zombies\n", live, zombies);
    CHECK(live == 0 && zombies == 0);
    finished = 1;
    mln_event_break_set(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    int s, one = 1, zero = 0;
    long dt;
    life_event_record(f, e);
    (void)data;
    CHECK(e->type == M_IPC_CHILD_STARTED || e->type == M_IPC_CHILD_EXITED);
    CHECK(e->slot < N && f != NULL && f->pid == e->pid);
    s = (int)e->slot;
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(e->restarts == 0 && fs[s] == NULL && t_stop == 0);
        fs[s] = f;
        if (++started < N) return;
        CHECK(mln_ipc_master_send_prepare(ev, T_SETUP, &zero, sizeof(zero), fs[0]) == 0);
        CHECK(mln_ipc_master_send_prepare(ev, T_SETUP, &one, sizeof(one), fs[1]) == 0);
        return;
    }
    CHECK(t_stop != 0 && f == fs[s] && !exited[s]);
    exited[s] = 1;
    t_exit[s] = now_ms();
    dt = t_exit[s] - t_stop;
    fprintf(stderr, "master: worker %d ended %ld ms after the stop\n", s, dt);
    CHECK(quits[s] == 1);
    CHECK(e->exited == 0);
    CHECK(e->restart_in_ms == -1);
    CHECK(e->restarts == 0);
    CHECK(pid_exited(e->pid));
    if (s == 0) {
        CHECK(e->how == M_IPC_END_TERMINATED && e->status == SIGTERM);
        CHECK(dt >= DEADLINE - 50 && dt < 10000);
    } else {
        CHECK(e->how == M_IPC_END_KILLED && e->status == SIGKILL);
        CHECK(dt >= DEADLINE + 1000 - 50 && dt < 15000);
    }
    if (exited[0] && exited[1]) CHECK(mln_event_timer_set(ev, 1000, NULL, all_done) != NULL);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(40);
    mln_ipc_child_event_handler_set(on_event, NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N;
    if (!mln_ipc_handler_register(T_SETUP, NULL, worker_setup, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_READY, master_ready, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_QUIT_RAN, master_quit_ran, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    if (!finished) life_events_dump();
    life_master_end();
    CHECK(finished && exited[0] && exited[1]);
    CHECK(life_nevents == 2 * N);
    return 0;
}
