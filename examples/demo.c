/*
 * Placeholder demo (the IPC demo replaces it): Melon's event API only.
 * A timer fires three times, 100 ms apart, then breaks the loop.
 *
 *   make demo
 */
#include "mln_event.h"

#include <stdio.h>

static void on_tick(mln_event_t *ev, void *data)
{
    int *ticks = data;

    printf("tick %d\n", ++*ticks);
    fflush(stdout);
    if (*ticks >= 3) {
        mln_event_break_set(ev);
        return;
    }
    if (mln_event_timer_set(ev, 100, data, on_tick) == NULL) {
        fprintf(stderr, "demo: mln_event_timer_set failed\n");
        mln_event_break_set(ev);
    }
}

int main(void)
{
    int ticks = 0;
    mln_event_t *ev = mln_event_new();

    if (ev == NULL) {
        fprintf(stderr, "demo: mln_event_new failed\n");
        return 1;
    }
    if (mln_event_timer_set(ev, 100, &ticks, on_tick) == NULL) {
        fprintf(stderr, "demo: mln_event_timer_set failed\n");
        mln_event_free(ev);
        return 1;
    }
    mln_event_dispatch(ev);
    mln_event_free(ev);
    printf("done after %d ticks\n", ticks);
    return ticks == 3 ? 0 : 1;
}
