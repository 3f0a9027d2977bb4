/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* Timers fire earliest first; a cancelled timer never fires; cancelling NULL is a no-op. */
#include "mln_event.h"
#include <stdio.h>
#include <string.h>

static char order[64];

static void on_timer(mln_event_t *ev, void *data)
{
    strcat(order, (const char *)data);
    strcat(order, " ");
    if (strcmp((const char *)data, "last") == 0) {
        mln_event_break_set(ev);
    }
}

int main(void)
{
    static const char *names[] = {"30", "10", "20", "0", "cancelled", "last"};
    static const mln_u32_t ms[] = {30, 10, 20, 0, 5, 50};
    mln_event_timer_t *t[6];
    mln_event_t *ev = mln_event_new();
    int i;

    if (ev == NULL) return 1;
    for (i = 0; i < 6; i++) {
        t[i] = mln_event_timer_set(ev, ms[i], (void *)names[i], on_timer);
        if (t[i] == NULL) return 2;
    }
    mln_event_timer_cancel(ev, t[4]);
    mln_event_timer_cancel(ev, NULL);
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (strcmp(order, "0 10 20 30 last ") != 0) {
        fprintf(stderr, "ev_timer: order \"%s\"\n", order);
        return 3;
    }
    return 0;
}
