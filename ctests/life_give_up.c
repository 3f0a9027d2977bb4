/* The restart policy gives a slot up after `intensity` restarts within the period.
 * mln_fork_restart_policy_set(3, 60000); two supervised workers. Once both started
 * (events), the master marks itself (every worker forked from then on exits(1) at once in
 * worker_process, after writing its pid to a pipe) and tells worker 0 to exit(1). So slot
 * 0 dies four times: its first worker, then each of its 3 replacements. Checks, per the
 * events:
 * - slot 0: STARTED (restarts 0), then 3 times EXITED (how CRASHED, exited 1, status 1,
 *   restart_in_ms >= 0, restarts 0, 1, 2) + STARTED (restarts 1, 2, 3, a new pid and
 *   record each time, a process that ran worker_process), then EXITED with restarts 3 and
 *   restart_in_ms -1, followed at once by GAVE_UP slot 0 (f the record of that last
 *   EXITED);
 * - nothing more for slot 0: 1.5 s after GAVE_UP (the backoff of a 4th restart would be
 *   400 ms) no further event, 5 worker processes forked in all (life.h counts every fork),
 *   4 ran worker_process's exit; the list holds only worker 1, which never restarted
 *   (one STARTED, no EXITED) and answers 3 rounds of pings. */
#include "life.h"

#define N 2
#define INTENSITY 3
#define T_DIE 2501

static int crash_mode, gave_up, finished, n_exited0, n_started0;
static int crash_pipe[2];
static mln_fork_t *last_f0;
static pid_t last_pid0;
static long t_gave_up;
static struct life_pids slot0_pids, dead;

static void worker_die(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    exit(1);
}

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    if (crash_mode) {
        /* A replacement of slot 0: dies at once. */
        CHECK(write(crash_pipe[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
        exit(1);
    }
    life_worker_hello(ev);
}

static void all_done(mln_event_t *ev)
{
    int i, n = 0, s1 = 0;
    pid_t p;
    for (i = 0; i < life_nevents; ++i) {
        if (life_events[i].e.slot == 0) CHECK(life_events[i].at_ms <= t_gave_up);
        else s1 += life_events[i].e.type == M_IPC_CHILD_STARTED ? 1 : 100;
    }
    CHECK(s1 == 1); /* slot 1: one STARTED, nothing else */
    life_read_starts();
    fprintf(stderr, "master: %d worker processes forked\n", life_started.n);
    CHECK(life_started.n == N + INTENSITY);
    while (read(crash_pipe[0], &p, sizeof(p)) == (ssize_t)sizeof(p)) {
        CHECK(life_pids_has(&slot0_pids, p));
        ++n;
    }
    CHECK(n == INTENSITY);
    finished = 1;
    mln_event_break_set(ev);
}

static void after_gave_up(mln_event_t *ev, void *data)
{
    (void)data;
    life_check_live(ev, 1, 3, &dead, all_done);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    static int started_initial;
    (void)data;
    life_event_record(f, e);
    CHECK(e->slot < N && !gave_up);
    CHECK(f != NULL && f->pid == e->pid);
    if (e->slot == 1) {
        CHECK(e->type == M_IPC_CHILD_STARTED && e->restarts == 0);
    } else if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(n_started0 == n_exited0);
        CHECK((int)e->restarts == n_started0);
        CHECK(life_pids_add(&slot0_pids, e->pid));
        CHECK(f != last_f0);
        ++n_started0;
        last_f0 = f;
        last_pid0 = e->pid;
    } else if (e->type == M_IPC_CHILD_EXITED) {
        CHECK(n_exited0 + 1 == n_started0);
        CHECK(f == last_f0 && e->pid == last_pid0);
        CHECK(e->how == M_IPC_END_CRASHED && e->exited == 1 && e->status == 1);
        CHECK((int)e->restarts == n_exited0);
        CHECK(pid_exited(e->pid));
        ++n_exited0;
        life_pids_add(&dead, e->pid);
        if (n_exited0 <= INTENSITY) CHECK(e->restart_in_ms >= 0 && e->restart_in_ms <= 10000);
        else CHECK(e->restart_in_ms == -1);
    } else {
        CHECK(e->type == M_IPC_CHILD_GAVE_UP);
        CHECK(n_exited0 == INTENSITY + 1 && n_started0 == INTENSITY + 1);
        /* GAVE_UP follows that EXITED at once, with its record. */
        CHECK(life_events[life_nevents - 2].e.type == M_IPC_CHILD_EXITED);
        CHECK(life_events[life_nevents - 2].e.slot == 0);
        CHECK(f == last_f0);
        gave_up = 1;
        t_gave_up = now_ms();
        CHECK(mln_event_timer_set(ev, 1500, NULL, after_gave_up) != NULL);
        return;
    }
    if (e->type == M_IPC_CHILD_STARTED && e->restarts == 0 && ++started_initial == N) {
        /* From now on, workers forked by the master die at once. */
        crash_mode = 1;
        CHECK(mln_ipc_master_send_prepare(ev, T_DIE, NULL, 0, last_f0) == 0);
    }
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(40);
    mln_ipc_child_event_handler_set(on_event, NULL);
}

static int global_init(void)
{
    errno = EDOM;
    CHECK(mln_fork_restart_policy_set(INTENSITY, 60000) == 0);
    CHECK(errno == EDOM);
    ctest_workers(N);
    life_max_workers = N + INTENSITY;
    if (!mln_ipc_handler_register(T_DIE, NULL, worker_die, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    life_init();
    CHECK(pipe(crash_pipe) == 0);
    CHECK(fcntl(crash_pipe[0], F_SETFL, O_NONBLOCK) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    if (!finished) life_events_dump();
    CHECK(finished && gave_up);
    /* slot 0: 4 x (STARTED, EXITED) + GAVE_UP; slot 1: STARTED */
    CHECK(life_nevents == 2 * (INTENSITY + 1) + 1 + 1);
    return 0;
}
