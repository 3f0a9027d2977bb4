/* mln_ipc_master_send_prepare from a signal handler, as Melon's conf reload does (Melon deadlocks there):
 * the master's SIGUSR2 handler sends "conf_reload" (type 1's payload, here on a test type)
 * to every worker through mln_fork_iterate, while another process fires SIGUSR2 at the
 * master 1,500 times and the master streams 512-byte frames to its 3 workers from a 1 ms
 * timer (at least 600 ticks, and until the signalling process has exited, so every signal
 * finds the handler installed). At the end every worker has every reload the handler sent
 * and every data frame, in order and intact; no deadlock (a 20 s alarm kills the master
 * otherwise).
 *
 * A send from the handler may be refused by design (-1) only while all of the library's
 * signal slots are waiting for the loop (sigsafe.rs), so refusals must stay rare: every
 * worker must have been sent at least half of the handler's runs (natively all of them;
 * under valgrind about 97%). The kernel merges pending signals, so the handler runs at
 * most 1,500 times; it must run at least MIN_RUNS times. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define N 3
#define SIGNALS 1500
#define TICKS 600
#define BATCH 10
#define SIZE 512
#define T_RELOAD 7701
#define T_DATA 7702
#define T_FIN 7703
#define T_REPORT 7704
#define MIN_RUNS 10

static mln_event_t *master_ev;
static volatile sig_atomic_t runs, failed_runs;
/* Reloads accepted per worker (send_prepare returned 0), counted in the signal handler.
 * Per worker, not per run: mln_fork_iterate stops at the first refused send, so in a run
 * that fails, the workers before that one did get the reload. */
static struct { pid_t pid; volatile sig_atomic_t accepted; } per_worker[N];
static long sent, reports;
static int ticks;
static int signaller_fd = -1; /* read end of a pipe; EOF once the signalling process exited */

struct report { long reloads, datas; };
static struct report mine; /* in a worker */

static void worker_reload(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 11 && memcmp(buf, "conf_reload", 11) == 0);
    ++mine.reloads;
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    unsigned char expect[SIZE];
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == SIZE);
    memset(expect, (int)(mine.datas & 0xff), SIZE);
    memcpy(expect, &mine.datas, sizeof(mine.datas));
    CHECK(memcmp(buf, expect, SIZE) == 0);
    ++mine.datas;
}

static void worker_fin(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_REPORT, &mine, sizeof(mine)) == 0);
}

static long accepted_for(pid_t pid)
{
    int i;
    for (i = 0; i < N; ++i)
        if (per_worker[i].pid == pid) return per_worker[i].accepted;
    return 0;
}

static void master_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct report r;
    (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    fprintf(stderr, "worker: %ld reloads of %ld accepted (handler ran %d times, %d refused a send), %ld/%ld data frames\n",
            r.reloads, accepted_for(((mln_fork_t *)f_ptr)->pid), (int)runs, (int)failed_runs, r.datas, sent);
    CHECK(r.reloads == accepted_for(((mln_fork_t *)f_ptr)->pid) && r.datas == sent);
    /* A handler whose sends were all (or mostly) refused must not pass. */
    CHECK(r.reloads > 0 && 2 * r.reloads >= (long)runs);
    if (++reports == N) mln_event_break_set(ev);
}

static int send_reload(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i;
    (void)data;
    if (mln_ipc_master_send_prepare(ev, T_RELOAD, "conf_reload", 11, f) != 0) return -1;
    for (i = 0; i < N; ++i) {
        if (per_worker[i].pid == f->pid || per_worker[i].pid == 0) {
            per_worker[i].pid = f->pid;
            ++per_worker[i].accepted;
            break;
        }
    }
    return 0;
}

static void on_usr2(int sig)
{
    int e = errno;
    (void)sig;
    ++runs;
    if (mln_fork_iterate(master_ev, send_reload, NULL) != 0) ++failed_runs;
    errno = e;
}

static int send_data(mln_event_t *ev, mln_fork_t *f, void *data)
{
    unsigned char b[SIZE];
    long seq = *(long *)data;
    memset(b, (int)(seq & 0xff), SIZE);
    memcpy(b, &seq, sizeof(seq));
    return mln_ipc_master_send_prepare(ev, T_DATA, b, SIZE, f);
}

static int send_fin(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_FIN, NULL, 0, f);
}

static int signaller_done(void)
{
    char c;
    ssize_t n = read(signaller_fd, &c, 1);
    CHECK(n == 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)));
    return n == 0;
}

static void tick(mln_event_t *ev, void *data)
{
    int i;
    (void)data;
    if (++ticks <= TICKS || !signaller_done()) {
        for (i = 0; i < BATCH; ++i) {
            CHECK(mln_fork_iterate(ev, send_data, &sent) == 0);
            ++sent;
        }
        CHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
        return;
    }
    /* No more reloads from here on; then ask for the reports. */
    signal(SIGUSR2, SIG_IGN);
    close(signaller_fd);
    CHECK(mln_fork_iterate(ev, send_fin, NULL) == 0);
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    pid_t master = getpid(), pid;
    int p[2];
    master_ev = ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    alarm(20);
    CHECK(pipe(p) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int i;
        close(p[0]);
        for (i = 0; i < SIGNALS; ++i) {
            if (kill(master, SIGUSR2) != 0) break;
            usleep(200);
        }
        _exit(0); /* closes p[1]: the master reads EOF */
    }
    close(p[1]);
    signaller_fd = p[0];
    CHECK(fcntl(signaller_fd, F_SETFL, O_NONBLOCK) == 0);
    CHECK(mln_event_timer_set(ev, 1, NULL, tick) != NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_RELOAD, NULL, worker_reload, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FIN, NULL, worker_fin, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_REPORT, master_report, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(reports == N && runs >= MIN_RUNS);
    return 0;
}
