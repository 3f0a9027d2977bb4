/* Adversarial: signals sent to the whole process group (a terminal's Ctrl-C, a
 * supervisor's SIGTERM or SIGHUP) while a fork server runs (mln_fork_server_set). The
 * test is its own process group (setpgid). The master handles each signal (a counting
 * handler installed after mln_fork); the workers keep the default action and die of it,
 * except for the terminal's stop signals (SIGTSTP, SIGTTIN, SIGTTOU), which would only
 * stop them: their handler exits.
 * CTEST_STANDALONE_ONLY: mln_fork_server_set is an extension of the standalone build.
 * For each of SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN,
 * SIGTTOU, then SIGWINCH (ignored by default): kill(0, sig) once every worker of the
 * round said hello. Checks (a stopped server would make the next restart wait 5 s and
 * fail, RESTART_FAILED, and no worker would come back):
 * - the fork server survives every one (same pid, still the master's child), so each
 *   dead worker is restarted through it: every round ends with N hellos from new
 *   workers whose parent is the master;
 * - the master's handler saw each signal once;
 * - after mln_framework_init no child of the master is left (server reaped). */
#define _GNU_SOURCE
#include "ctest.h"
#include "procs.h"
#include "mln_event.h"

#define N 3
#define T_HI 9401

static const int sigs[] = {SIGTERM, SIGHUP,  SIGINT,  SIGQUIT, SIGUSR1,
                           SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH};
#define NSIGS ((int)(sizeof(sigs) / sizeof(sigs[0])))

static pid_t master_pid, server;
static volatile sig_atomic_t seen[65];
static int round_no, hellos;

static void count_sig(int sig)
{
    if (sig > 0 && sig < 65) ++seen[sig];
}

static void fire(mln_event_t *ev, void *data)
{
    int children;
    (void)data;
    CHECK(proc_find_server(master_pid, &children) == server);
    if (round_no == NSIGS) {
        mln_event_break_set(ev);
        return;
    }
    hellos = 0;
    CHECK(kill(0, sigs[round_no]) == 0);
    ++round_no;
    if (sigs[round_no - 1] == SIGWINCH) {
        /* Nobody dies of it: the next round at once. */
        CHECK(seen[SIGWINCH] == 1);
        mln_event_timer_set(ev, 0, NULL, fire);
    }
}

static void master_hi(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    mln_fork_t *f = f_ptr;
    int hi[2], children;
    (void)u;
    CHECK(getpid() == master_pid && len == sizeof(hi));
    memcpy(hi, buf, sizeof(hi));
    CHECK(hi[0] == (int)f->pid && hi[1] == (int)master_pid);
    if (++hellos < N) return;
    if (round_no == 0) {
        server = proc_find_server(master_pid, &children);
        CHECK(server > 0);
    } else {
        CHECK(seen[sigs[round_no - 1]] == 1);
    }
    mln_event_timer_set(ev, 0, NULL, fire);
}

static void worker_stop_signal(int sig)
{
    (void)sig;
    _exit(0);
}

static void worker_process(mln_event_t *ev)
{
    struct sigaction sa;
    int hi[2];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = worker_stop_signal;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGTSTP, &sa, NULL) == 0);
    CHECK(sigaction(SIGTTIN, &sa, NULL) == 0);
    CHECK(sigaction(SIGTTOU, &sa, NULL) == 0);
    hi[0] = (int)getpid();
    hi[1] = (int)getppid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HI, hi, sizeof(hi)) == 0);
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    int i;
    (void)ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = count_sig;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < NSIGS; ++i) CHECK(sigaction(sigs[i], &sa, NULL) == 0);
}

static int global_init(void)
{
    ctest_workers(N);
    mln_fork_server_set(1);
    if (!mln_ipc_handler_register(T_HI, master_hi, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int children, i;
    master_pid = getpid();
    CHECK(setpgid(0, 0) == 0);
    alarm(55);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(getpid() == master_pid);
    CHECK(round_no == NSIGS);
    for (i = 0; i < NSIGS; ++i) CHECK(seen[sigs[i]] == 1);
    CHECK(proc_find_server(master_pid, &children) == 0);
    if (children != 0) fprintf(stderr, "%d children left\n", children);
    CHECK(children == 0);
    return 0;
}
