/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* An idle descriptor's timeout handler runs once with its fd; an activated descriptor's
 * timeout is removed; M_EV_UNLIMITED removes a timeout and M_EV_UNMODIFIED keeps that.
 *
 * Timeouts run before the loop waits (as in Melon), so the busy descriptor's data is read
 * in time only if the setup and the first iteration take less than both timeouts (under
 * valgrind on a loaded machine that took more than the 20 ms this test once allowed). The
 * busy timeout (BUSY_MS) is shorter than the idle one: kept by mistake, it would fire
 * first. */
#include "mln_event.h"
#include <stdio.h>
#include <unistd.h>

#define IDLE_MS 300
#define BUSY_MS 250

static int idle[2], busy[2], cleared[2];
static int timeouts, timeout_fd = -1, received, guard_fired;

static void on_timeout(mln_event_t *ev, int fd, void *data)
{
    (void)data;
    timeouts++;
    timeout_fd = fd;
    mln_event_break_set(ev);
}

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    char c;
    (void)ev; (void)data;
    if (read(fd, &c, 1) == 1) received++;
}

static void on_break(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

static void on_guard(mln_event_t *ev, void *data)
{
    (void)data;
    guard_fired = 1;
    mln_event_break_set(ev);
}

int main(void)
{
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || pipe(idle) != 0 || pipe(busy) != 0 || pipe(cleared) != 0) return 1;
    if (mln_event_timer_set(ev, 10000, NULL, on_guard) == NULL) return 2;
    if (mln_event_fd_set(ev, idle[0], M_EV_RECV, IDLE_MS, NULL, on_recv) != 0) return 3;
    mln_event_fd_timeout_handler_set(ev, idle[0], NULL, on_timeout);
    if (mln_event_fd_set(ev, busy[0], M_EV_RECV, BUSY_MS, NULL, on_recv) != 0) return 4;
    mln_event_fd_timeout_handler_set(ev, busy[0], NULL, on_timeout);
    if (write(busy[1], "x", 1) != 1) return 5;
    if (mln_event_fd_set(ev, cleared[0], M_EV_RECV, 5, NULL, on_recv) != 0) return 6;
    mln_event_fd_timeout_handler_set(ev, cleared[0], NULL, on_timeout);
    if (mln_event_fd_set(ev, cleared[0], M_EV_RECV | M_EV_APPEND, M_EV_UNLIMITED, NULL, on_recv) != 0) return 7;
    if (mln_event_fd_set(ev, cleared[0], M_EV_RECV, M_EV_UNMODIFIED, NULL, on_recv) != 0) return 8;
    mln_event_dispatch(ev);
    if (guard_fired || timeouts != 1 || timeout_fd != idle[0] || received != 1) {
        fprintf(stderr, "ev_fd_timeout: timeouts %d fd %d received %d\n", timeouts, timeout_fd, received);
        return 9;
    }
    /* Fired once: nothing more within 60 ms. */
    mln_event_break_reset(ev);
    if (mln_event_timer_set(ev, 60, NULL, on_break) == NULL) return 10;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (timeouts != 1) {
        fprintf(stderr, "ev_fd_timeout: fired %d times\n", timeouts);
        return 11;
    }
    return 0;
}
