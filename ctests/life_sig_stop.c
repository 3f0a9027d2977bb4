/* mln_fork_stop from a signal handler at a high rate: another process sends the master
 * SIGUSR1 thousands of times while the master sends to its workers from a 1 ms timer and
 * starts a new worker (mln_fork_restart) for each one that ends. The handler stops the
 * newest worker it knows (a pointer that may be stale by then). Docs: signal-safe; returns
 * 0, or -1 with ESRCH / EAGAIN. Expected: no other result, no crash or hang, every pid a
 * successful stop named gets EXITED with how STOPPED/TERMINATED/KILLED, never CRASHED. */
#include "life_rec.h"

#define N 4
#define SIGS 20000
#define T_DATA 9261

static mln_event_t *g_ev;
static mln_fork_t *volatile g_target;
static volatile int running = 1;
static volatile long n_ok, n_esrch, n_eagain, n_other, n_sigs;
static volatile pid_t stop_pids[SIGS + 16];
static volatile int n_stop_pids;
static int rep[2];
static long sent, restarts_made;
static int phase;

static void on_usr1(int sig)
{
    int saved = errno, r;
    mln_fork_t *t = g_target;
    (void)sig;
    ++n_sigs;
    if (!running || t == NULL) { errno = saved; return; }
    r = mln_fork_stop(g_ev, t, 300);
    if (r == 0) {
        ++n_ok;
        if (n_stop_pids < SIGS) stop_pids[n_stop_pids++] = t->pid;
    } else if (errno == ESRCH) ++n_esrch;
    else if (errno == EAGAIN) ++n_eagain;
    else ++n_other;
    errno = saved;
}

static int send_cb(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static char buf[256];
    (void)data;
    if (mln_ipc_master_send_prepare(ev, T_DATA, buf, sizeof(buf), f) == 0) ++sent;
    return 0;
}

static void finish(mln_event_t *ev, void *d)
{
    int i, j;
    (void)d;
    fprintf(stderr, "signals %ld: stop ok %ld, ESRCH %ld, EAGAIN %ld, other %ld; sent %ld; restarts made %ld; events %d\n",
            n_sigs, n_ok, n_esrch, n_eagain, n_other, sent, restarts_made, rec_nev);
    ACHECK(n_other == 0);
    for (i = 0; i < n_stop_pids; ++i) {
        int found = 0;
        for (j = 0; j < rec_nev; ++j)
            if (rec_evs[j].type == M_IPC_CHILD_EXITED && rec_evs[j].pid == stop_pids[i]) {
                found = 1;
                if (rec_evs[j].how == M_IPC_END_CRASHED) {
                    fprintf(stderr, "pid %d stopped but EXITED CRASHED\n", (int)stop_pids[i]);
                    ACHECK(0);
                }
            }
        if (!found) { fprintf(stderr, "pid %d: stop returned 0, no EXITED\n", (int)stop_pids[i]); ACHECK(0); }
    }
    rec_check_pids();
    phase = 2;
    mln_event_break_set(ev);
}

static void tick(mln_event_t *ev, void *d)
{
    char c;
    (void)d;
    if (read(rep[0], &c, 1) == 1) { /* the bomber is done */
        running = 0;
        ACHECK(mln_event_timer_set(ev, 2500, NULL, finish) != NULL);
        return;
    }
    mln_fork_iterate(ev, send_cb, NULL);
    ACHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)data;
    rec_record(f, e);
    if (e->type == M_IPC_CHILD_STARTED) {
        g_target = f;
    } else if (e->type == M_IPC_CHILD_EXITED && running) {
        int r = mln_fork_restart(ev);
        ACHECK(r >= 0);
        if (r == 0) { mln_event_break_set(ev); return; }
        ++restarts_made;
    }
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)u;
}

static void master_process(mln_event_t *ev)
{
    g_ev = ev;
    ACHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    struct sigaction sa;
    pid_t master = getpid(), bomber;
    CHECK(pipe(rep) == 0);
    CHECK(fcntl(rep[0], F_SETFL, O_NONBLOCK) == 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    bomber = fork();
    CHECK(bomber >= 0);
    if (bomber == 0) {
        int i;
        close(rep[0]);
        usleep(300000);
        for (i = 0; i < SIGS; ++i) {
            if (kill(master, SIGUSR1) < 0) _exit(1);
            if (i % 16 == 0) usleep(100);
        }
        (void)!write(rep[1], "x", 1);
        _exit(0);
    }
    close(rep[1]);
    rec_init(50);
    if (ctest_framework_init(&a) < 0) return 1;
    if (getpid() != rec_master) return 0;
    ACHECK(phase == 2);
    return 0;
}
