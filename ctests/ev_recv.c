/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* A RECV handler runs when data arrives on a pipe. */
#include "mln_event.h"
#include <stdio.h>
#include <unistd.h>

static int received, guard_fired;

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    char c;
    (void)data;
    if (read(fd, &c, 1) == 1 && c == 'x') received++;
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
    int p[2];
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || pipe(p) != 0) return 1;
    if (mln_event_timer_set(ev, 10000, NULL, on_guard) == NULL) return 2;
    if (mln_event_fd_set(ev, p[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) != 0) return 3;
    if (write(p[1], "x", 1) != 1) return 4;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (guard_fired || received != 1) {
        fprintf(stderr, "ev_recv: received %d guard %d\n", received, guard_fired);
        return 5;
    }
    return 0;
}
