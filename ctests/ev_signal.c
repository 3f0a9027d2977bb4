/* CTEST_STANDALONE_ONLY: our event loop (calls from signal handlers interrupting it); Melon's loop must not be called from signal handlers at all */
/* Signal handlers calling into the loop they interrupt (mln_event.h: a call that interrupts
 * the loop's own bookkeeping is refused with the error value): a SIGALRM at up to 10 kHz
 * (setitimer, no SA_RESTART) sets a timer, cancels an earlier one of its own and
 * re-registers or clears an eventfd on a loop that never blocks (an always-readable
 * eventfd) while normal-context timers keep re-arming themselves. Every timer the signal
 * handler got a handle for fires exactly once (at most once if it tried to cancel it),
 * some signal-context calls succeed, normal-context calls are never refused, and the loop
 * still works afterwards. */
#include "ctest.h"
#include "mln_event.h"
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/time.h>

#define SLOTS 2000
#define MAX_DELAY 3

static mln_event_t *ev;
static int sig_fd, spin_fd, signals_wanted;
static volatile sig_atomic_t stop, seen, timer_ok, timer_refused, fd_ok, fd_refused;
static volatile sig_atomic_t state[SLOTS]; /* 0 none, 1 set, 2 set and a cancel tried */
static mln_event_timer_t *handle[SLOTS];
static volatile sig_atomic_t fired[SLOTS];
static long ticks;
static int finished, final_ready;

static void sig_timer(mln_event_t *e, void *data)
{
    (void)e;
    ++fired[(intptr_t)data];
}

static void sig_fd_ready(mln_event_t *e, int fd, void *data)
{
    uint64_t v;
    (void)e; (void)data;
    if (read(fd, &v, 8) < 0) { /* another handler read it first */ }
}

static void on_alarm(int sig)
{
    int k, flag;
    uint64_t one = 1;
    mln_event_timer_t *t;
    (void)sig;
    if (stop || seen >= SLOTS) return;
    k = seen++;
    t = mln_event_timer_set(ev, k % (MAX_DELAY + 1), (void *)(intptr_t)k, sig_timer);
    if (t == NULL) {
        ++timer_refused;
    } else {
        handle[k] = t;
        state[k] = 1;
        ++timer_ok;
    }
    if (k % 3 == 0 && k >= 2 && state[k - 2] == 1) {
        state[k - 2] = 2;
        mln_event_timer_cancel(ev, handle[k - 2]);
    }
    flag = k % 2 ? M_EV_CLR : (M_EV_RECV | M_EV_NONBLOCK);
    if (mln_event_fd_set(ev, sig_fd, flag, M_EV_UNLIMITED, NULL, sig_fd_ready) == 0)
        ++fd_ok;
    else
        ++fd_refused;
    if (write(sig_fd, &one, 8) < 0) { /* counter full: still readable */ }
}

static void set_itimer(long usec)
{
    struct itimerval it;
    memset(&it, 0, sizeof(it));
    it.it_interval.tv_usec = usec;
    it.it_value.tv_usec = usec;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
}

static void spin(mln_event_t *e, int fd, void *data)
{
    (void)e; (void)fd; (void)data;
}

static void finish(mln_event_t *e, void *data)
{
    (void)data;
    finished = 1;
    mln_event_break_set(e);
}

/* Normal context: re-arms itself (a 0..3 ms timer each time, never refused) until enough
 * signals were handled, then stops them and sets a timer later than every other. */
static void tick(mln_event_t *e, void *data)
{
    (void)data;
    ++ticks;
    if (seen < signals_wanted) {
        CHECK(mln_event_timer_set(e, ticks % (MAX_DELAY + 1), NULL, tick) != NULL);
        return;
    }
    stop = 1;
    set_itimer(0);
    CHECK(mln_event_timer_set(e, MAX_DELAY + 2, NULL, finish) != NULL);
}

static void on_final(mln_event_t *e, int fd, void *data)
{
    sig_fd_ready(e, fd, data);
    final_ready = 1;
    mln_event_break_set(e);
}

int main(void)
{
    struct sigaction sa;
    mln_event_timer_t *warm[SLOTS + 16], *guard;
    uint64_t one = 1;
    int i, valgrind = getenv("CTEST_VALGRIND_LOGS") != NULL;

    /* Under valgrind (ctests/memcheck.sh) fewer signals at 1 kHz: its signal delivery is
     * slow, and the point there is memory errors. */
    signals_wanted = valgrind ? 300 : SLOTS;
    ev = mln_event_new();
    CHECK(ev != NULL);
    sig_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    spin_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    CHECK(sig_fd >= 0 && spin_fd >= 0);
    /* Room for every timer up front: no table grows in signal context. */
    for (i = 0; i < SLOTS + 16; i++) {
        warm[i] = mln_event_timer_set(ev, 60000, NULL, NULL);
        CHECK(warm[i] != NULL);
    }
    for (i = 0; i < SLOTS + 16; i++)
        mln_event_timer_cancel(ev, warm[i]);
    CHECK(mln_event_fd_set(ev, spin_fd, M_EV_RECV, M_EV_UNLIMITED, NULL, spin) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, tick) != NULL);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    set_itimer(valgrind ? 5000 : 100); /* 200 Hz there: see ipc_signal.c */

    mln_event_dispatch(ev);
    CHECK(finished);
    fprintf(stderr, "ev_signal: %d signals: timer_set ok %d refused %d, fd_set ok %d refused %d\n",
            (int)seen, (int)timer_ok, (int)timer_refused, (int)fd_ok, (int)fd_refused);
    CHECK(seen >= signals_wanted);
    CHECK(timer_ok > 0 && fd_ok > 0);
    CHECK(timer_ok + timer_refused == seen && fd_ok + fd_refused == seen);
    for (i = 0; i < seen; i++) {
        if (state[i] == 0) CHECK(fired[i] == 0);
        else if (state[i] == 1) CHECK(fired[i] == 1);
        else CHECK(fired[i] <= 1);
    }

    /* Still usable: the eventfd, registered anew from normal context, fires on data (the
     * 10 s guard timer would end the dispatch otherwise). */
    CHECK(write(sig_fd, &one, 8) == 8);
    CHECK(mln_event_fd_set(ev, sig_fd, M_EV_RECV, M_EV_UNLIMITED, NULL, on_final) == 0);
    CHECK(mln_event_fd_set(ev, spin_fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == 0);
    mln_event_break_reset(ev);
    finished = 0;
    guard = mln_event_timer_set(ev, 10000, NULL, finish);
    CHECK(guard != NULL);
    mln_event_dispatch(ev);
    CHECK(final_ready && !finished);
    mln_event_timer_cancel(ev, guard);
    mln_event_free(ev);
    close(sig_fd);
    close(spin_fd);
    return 0;
}
