/* Adversarial: mln_fork_stop from a signal handler at a high rate while the master's loop
 * is busy in the library (its workers flood it with frames), so most calls interrupt the
 * library and are parked; the loop looks at the parked stops only after a flag says one
 * was parked (src/process/lifecycle.rs ANY_PARKED). Each of 12 workers is asked to stop
 * exactly once, from a SIGALRM handler running every 200 us (a call refused with EAGAIN,
 * every slot taken, is tried again at the next tick).
 * Checks: every worker ends STOPPED (exit status 0) within the deadline, none is
 * restarted, and the loop ends when the last one is gone (a lost stop would leave its
 * worker flooding for ever: the watchdog fails the test). Under valgrind, where a signal
 * costs a translated-code exit and the floods outrun the master, the timer ticks every
 * 2 ms and each worker sends 8 frames a millisecond. */
#define _GNU_SOURCE
#include "ctest.h"
#include <sys/time.h>
#include "mln_event.h"

#define N 12
#define T_FLOOD 9501

static mln_event_t *mev;
static mln_fork_t *kids[N];
static int nkids;
static volatile sig_atomic_t next_kid, armed;
static int stopped, frames;
static pid_t master_pid;

static void on_alarm(int sig)
{
    int e = errno;
    (void)sig;
    if (armed && next_kid < nkids) {
        if (mln_fork_stop(mev, kids[next_kid], 10000) == 0) ++next_kid;
        else if (errno != EAGAIN) next_kid = -100; /* fails the test below */
    }
    errno = e;
}

static int collect(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(nkids < N);
    kids[nkids++] = f;
    return 0;
}

static void master_flood(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (++frames == N * 50 && !armed) {
        struct itimerval it;
        mev = ev;
        CHECK(mln_fork_iterate(ev, collect, NULL) == 0);
        CHECK(nkids == N);
        memset(&it, 0, sizeof(it));
        it.it_interval.tv_usec = valgrind() ? 2000 : 200;
        it.it_value.tv_usec = it.it_interval.tv_usec;
        armed = 1;
        CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    }
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)f; (void)data;
    CHECK(next_kid >= 0);
    if (e->type != M_IPC_CHILD_EXITED) return;
    if (e->how != M_IPC_END_STOPPED || e->status != 0 || e->restart_in_ms >= 0)
        fprintf(stderr, "EXITED how %d status %d restart_in %lld\n", (int)e->how, e->status,
                (long long)e->restart_in_ms);
    CHECK(e->how == M_IPC_END_STOPPED && e->status == 0 && e->restart_in_ms < 0);
    if (++stopped == N) mln_event_break_set(ev);
}

/* worker: 64 frames every millisecond */
static unsigned char payload[2048];

static void flood(mln_event_t *ev, void *data)
{
    int i;
    (void)data;
    for (i = 0; i < (valgrind() ? 8 : 64); ++i)
        if (mln_ipc_worker_send_prepare(ev, T_FLOOD, payload, sizeof(payload)) != 0) break;
    mln_event_timer_set(ev, 1, NULL, flood);
}

static void master_process(mln_event_t *ev) { (void)ev; }

static void worker_process(mln_event_t *ev)
{
    flood(ev, NULL);
}

static int global_init(void)
{
    ctest_workers(N);
    if (!mln_ipc_handler_register(T_FLOOD, master_flood, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    struct sigaction sa;
    struct itimerval off;
    master_pid = getpid();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(getpid() == master_pid);
    memset(&off, 0, sizeof(off));
    CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
    CHECK(stopped == N && next_kid == N);
    return 0;
}
