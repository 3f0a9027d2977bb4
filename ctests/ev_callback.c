/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* The dispatch callback runs once at the top of every iteration, before the handlers of
 * what the previous wait reported; NULL removes it. */
#include "mln_event.h"
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int iterations, spins;

static void on_spin(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    spins++;
}

static void on_iteration(mln_event_t *ev, void *data)
{
    if (data != (void *)&iterations) return;
    if (++iterations >= 10) {
        mln_event_break_set(ev);
    }
}

static void on_break(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

int main(void)
{
    int spin = eventfd(1, EFD_NONBLOCK);
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || spin < 0) return 1;
    if (mln_event_fd_set(ev, spin, M_EV_RECV, M_EV_UNLIMITED, NULL, on_spin) != 0) return 2;
    mln_event_callback_set(ev, on_iteration, &iterations);
    mln_event_dispatch(ev);
    if (iterations != 10 || spins != 8) {
        fprintf(stderr, "ev_callback: iterations %d spins %d\n", iterations, spins);
        return 3;
    }
    mln_event_callback_set(ev, NULL, NULL);
    mln_event_break_reset(ev);
    if (mln_event_timer_set(ev, 1, NULL, on_break) == NULL) return 4;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (iterations != 10) {
        fprintf(stderr, "ev_callback: removed callback ran\n");
        return 5;
    }
    return 0;
}
