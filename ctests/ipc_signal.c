/* CTEST_STANDALONE_ONLY: in the melon build the SIGALRM can land inside Melon's own malloc (mln_event_timer_set in this test's timer), which the library cannot tell there (docs/melon-build.md) */
/* Sending from a signal handler (Melon deadlocks there): while the master streams frames to its worker
 * from timer handlers (at least 300,000, and until 300 signals have been handled), a 1 kHz SIGALRM handler sends a frame to every worker through
 * mln_fork_iterate, as Melon's configuration reload does from SIGUSR2. No deadlock, the
 * stream arrives complete and in order (EINTR in the loop's wait loses nothing), and every
 * frame the signal handler queued (send returned 0) arrives. */
#include "ctest.h"
#include <sys/time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA 9301
#define T_SIG 9302
#define T_END 9303
#define T_COUNTS 9304
#define TOTAL 300000
#define BATCH 1000

static mln_event_t *master_ev;
static volatile sig_atomic_t sig_sent, sig_failed;
static int sent, rounds;

static int sig_one(mln_event_t *ev, mln_fork_t *f, void *data)
{
    char m[] = "sig";
    (void)data;
    if (mln_ipc_master_send_prepare(ev, T_SIG, m, 3, f) == 0)
        ++sig_sent;
    else
        ++sig_failed;
    return 0;
}

static void on_alarm(int signo)
{
    (void)signo;
    mln_fork_iterate(master_ev, sig_one, NULL);
}

static int send_end(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f);
}

static int send_batch(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i;
    (void)data;
    for (i = 0; i < BATCH; ++i, ++sent)
        if (mln_ipc_master_send_prepare(ev, T_DATA, &sent, sizeof(sent), f) != 0) return -1;
    return 0;
}

static void stream(mln_event_t *ev, void *data)
{
    struct itimerval off;
    (void)data;
    CHECK(mln_fork_iterate(ev, send_batch, NULL) == 0);
    if (sent < TOTAL || sig_sent + sig_failed < 300) {
        /* Full speed, so that most signals interrupt the library itself. */
        CHECK(mln_event_timer_set(ev, 0, NULL, stream) != NULL);
        return;
    }
    memset(&off, 0, sizeof(off));
    CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
    CHECK(mln_fork_iterate(ev, send_end, NULL) == 0);
}

static void master_counts(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int c[2];
    (void)udata_ptr;
    CHECK(len == sizeof(c));
    memcpy(c, buf, sizeof(c));
    CHECK(c[0] == sent);
    /* Frames parked by a signal that interrupted the library are queued on the next loop
     * iteration, possibly after T_END: ask again until they are all in. */
    if (c[1] < sig_sent && ++rounds < 1000) {
        CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f_ptr) == 0);
        return;
    }
    fprintf(stderr, "signal sends: %d delivered of %d queued, %d refused\n", c[1], (int)sig_sent, (int)sig_failed);
    CHECK(c[1] == sig_sent);
    CHECK(sig_sent >= 300 && sig_failed == 0);
    mln_event_break_set(ev);
}

static int data_seen, sig_seen;

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(int) && *(int *)buf == data_seen);
    ++data_seen;
}

static void worker_sig(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 3 && memcmp(buf, "sig", 3) == 0);
    ++sig_seen;
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int c[2];
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    c[0] = data_seen;
    c[1] = sig_seen;
    CHECK(mln_ipc_worker_send_prepare(ev, T_COUNTS, c, sizeof(c)) == 0);
}

static void master_process(mln_event_t *ev)
{
    struct sigaction sa;
    struct itimerval it;
    master_ev = ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    it.it_interval.tv_sec = 0;
    /* Under valgrind 200 Hz: each run of the handler can take longer than 1 ms there, and
     * a faster timer can keep the master in its handler for good. */
    it.it_interval.tv_usec = valgrind() ? 5000 : 1000;
    it.it_value = it.it_interval;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, stream) != NULL);
}

static int global_init(void)
{
    if (!mln_ipc_handler_register(T_COUNTS, master_counts, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SIG, NULL, worker_sig, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, NULL, worker_end, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(rounds < 1000);
    return 0;
}
