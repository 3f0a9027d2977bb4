/* mln_fork_stop from a signal handler. Two supervised workers, no quit handler (a stopped
 * worker exits 0). The master's SIGUSR1 handler calls mln_fork_stop(ev, NULL, 10000) (all
 * workers) and counts what it returned (saving errno). Once both workers started (events)
 * and said hello, the master forks a plain process that sends it 1000 SIGUSR1 (a burst:
 * the first one stops everything, the others arrive while the workers exit and the events
 * are delivered), then writes one byte to a pipe the master's loop watches (not just an
 * end of file: Melon's loop never reports a bare EPOLLHUP) and exits. Checks:
 * - the first call returned 0 (errno untouched); every call returned 0 or -1 ESRCH;
 * - both workers: EXITED how STOPPED, exited 1, status 0, restart_in_ms -1, after the
 *   first stop; no STARTED after it;
 * - once the burst ended and both exited, 1 s later: no new event, the list is empty, the
 *   master has no child process and no zombie (nothing restarted).
 * The burster yields after each kill, so that the signals land all over the master's work
 * (a stop from a handler that interrupted the library is parked until the loop runs: one
 * parked stop of everything must cover the rest of the burst, never EAGAIN). */
#include "life.h"
#include <sched.h>

#define N 2
#define BURST 1000

static mln_event_t *loop_ev;
static volatile sig_atomic_t calls, ok, esrch, bad, bad_rc, bad_errno, errno_changed;
static volatile long t_first_stop;
static int started, exited, burst_over, finished, burst_pipe[2];
static pid_t burster;

static void on_usr1(int sig)
{
    int e = errno, r;
    (void)sig;
    errno = EDOM;
    r = mln_fork_stop(loop_ev, NULL, 10000);
    if (r == 0) {
        if (errno != EDOM) errno_changed = 1;
        if (ok++ == 0) t_first_stop = now_ms();
    } else if (r == -1 && errno == ESRCH) {
        ++esrch;
    } else {
        bad_rc = r;
        bad_errno = errno;
        ++bad;
    }
    ++calls;
    errno = e;
}

static void all_done(mln_event_t *ev, void *data)
{
    struct life_kids kids;
    int live, zombies;
    (void)data;
    fprintf(stderr, "master: %d stop calls from the handler: %d returned 0, %d ESRCH, %d other\n",
            (int)calls, (int)ok, (int)esrch, (int)bad);
    if (bad) fprintf(stderr, "master: the last other: returned %d, errno %d (%s)\n", (int)bad_rc,
                     (int)bad_errno, strerror((int)bad_errno));
    CHECK(calls >= 1 && ok >= 1 && bad == 0 && !errno_changed);
    CHECK(life_nevents == 2 * N);
    life_kids_collect(ev, &kids);
    CHECK(kids.n == 0);
    child_processes(&live, &zombies);
    if (live != 0 || zombies != 0) fprintf(stderr, "children: %d live, %d zombies\n", live, zombies);
    CHECK(live == 0 && zombies == 0);
    finished = 1;
    mln_event_break_set(ev);
}

static void maybe_done(mln_event_t *ev)
{
    if (exited == N && burst_over)
        CHECK(mln_event_timer_set(ev, 1000, NULL, all_done) != NULL);
}

static void burst_ended(mln_event_t *ev, int fd, void *data)
{
    char b[16];
    ssize_t n = read(fd, b, sizeof(b));
    (void)data;
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    CHECK(n == 1 && b[0] == 'd'); /* every signal of the burst was sent before */
    CHECK(mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == 0);
    close(fd);
    burst_over = 1;
    fprintf(stderr, "master: burst over\n");
    maybe_done(ev);
}

static void start_burst(mln_event_t *ev)
{
    pid_t master = getpid();
    CHECK(pipe(burst_pipe) == 0);
    burster = fork();
    CHECK(burster >= 0);
    if (burster == 0) {
        int i;
        close(burst_pipe[0]);
        for (i = 0; i < BURST; ++i)
            if (kill(master, SIGUSR1) != 0) _exit(1);
            else sched_yield(); /* spreads the burst over the master's work */
        _exit(write(burst_pipe[1], "d", 1) == 1 ? 0 : 1);
    }
    close(burst_pipe[1]);
    CHECK(fcntl(burst_pipe[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(mln_event_fd_set(ev, burst_pipe[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL,
                           burst_ended) == 0);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    (void)f;
    if (life_hellos.n == N && started == N) start_burst(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    life_event_record(f, e);
    CHECK(e->slot < N && f != NULL && f->pid == e->pid);
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(ok == 0 && e->restarts == 0);
        if (++started == N && life_hellos.n == N) start_burst(ev);
        return;
    }
    CHECK(e->type == M_IPC_CHILD_EXITED);
    CHECK(ok >= 1 && burster > 0);
    CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
    CHECK(e->restart_in_ms == -1 && e->restarts == 0);
    CHECK(pid_exited(e->pid));
    CHECK(life_pids_has(&life_hellos, e->pid));
    fprintf(stderr, "master: worker %u exited %ld ms after the first stop\n", (unsigned)e->slot,
            now_ms() - t_first_stop);
    ++exited;
    maybe_done(ev);
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    life_master_watch(ev);
    life_watchdog(40);
    loop_ev = ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    mln_ipc_child_event_handler_set(on_event, NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N;
    life_on_hello = on_hello;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    if (!finished) life_events_dump();
    life_master_end();
    CHECK(finished && exited == N && burst_over);
    return 0;
}
