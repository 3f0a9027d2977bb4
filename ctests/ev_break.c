/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* mln_event_break_set leaves dispatch; dispatch does not reset it, so dispatching again
 * returns at once until mln_event_break_reset. */
#include "mln_event.h"
#include <stdio.h>

static int calls, iterations;

static void on_timer(mln_event_t *ev, void *data)
{
    (void)data;
    calls++;
    mln_event_break_set(ev);
}

static void on_iteration(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    iterations++;
}

int main(void)
{
    mln_event_t *ev = mln_event_new();
    int it;

    if (ev == NULL) return 1;
    mln_event_callback_set(ev, on_iteration, NULL);
    if (mln_event_timer_set(ev, 1, NULL, on_timer) == NULL) return 2;
    mln_event_dispatch(ev);
    if (calls != 1 || ev->is_break != 1) return 3;
    it = iterations;
    if (mln_event_timer_set(ev, 0, NULL, on_timer) == NULL) return 4;
    mln_event_dispatch(ev);
    if (calls != 1 || iterations != it) {
        fprintf(stderr, "ev_break: dispatch ran with break set\n");
        return 5;
    }
    mln_event_break_reset(ev);
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (calls != 2) {
        fprintf(stderr, "ev_break: calls %d\n", calls);
        return 6;
    }
    return 0;
}
