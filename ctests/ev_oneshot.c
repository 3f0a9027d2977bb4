/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* A one-shot RECV fires once although the pipe stays readable; re-setting re-arms it.
 * An always-readable eventfd keeps the loop iterating; the callback counts iterations. */
#include "mln_event.h"
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int fired, iterations, limit;

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    fired++;
}

static void on_spin(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
}

static void on_iteration(mln_event_t *ev, void *data)
{
    (void)data;
    if (++iterations >= limit) {
        mln_event_break_set(ev);
    }
}

int main(void)
{
    int p[2], spin;
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || pipe(p) != 0) return 1;
    spin = eventfd(1, EFD_NONBLOCK);
    if (spin < 0 || write(p[1], "x", 1) != 1) return 2;
    if (mln_event_fd_set(ev, p[0], M_EV_RECV | M_EV_ONESHOT, M_EV_UNLIMITED, NULL, on_recv) != 0) return 3;
    if (mln_event_fd_set(ev, spin, M_EV_RECV, M_EV_UNLIMITED, NULL, on_spin) != 0) return 4;
    mln_event_callback_set(ev, on_iteration, NULL);
    limit = 20;
    mln_event_dispatch(ev);
    if (fired != 1) {
        fprintf(stderr, "ev_oneshot: fired %d times, want 1\n", fired);
        return 5;
    }
    mln_event_break_reset(ev);
    iterations = 0;
    if (mln_event_fd_set(ev, p[0], M_EV_RECV | M_EV_ONESHOT, M_EV_UNLIMITED, NULL, on_recv) != 0) return 6;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (fired != 2) {
        fprintf(stderr, "ev_oneshot: fired %d times after re-set, want 2\n", fired);
        return 7;
    }
    return 0;
}
