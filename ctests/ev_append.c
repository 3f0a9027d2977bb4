/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* APPEND adds SEND beside RECV; both run, RECV first; a later replace with SEND alone
 * drops RECV. */
#include "mln_event.h"
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static char trace[256];
static int iterations, limit;

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    char buf[16];
    (void)ev; (void)data;
    if (read(fd, buf, sizeof(buf)) > 0) strcat(trace, "R");
}

static void on_send(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    strcat(trace, "S");
}

static void on_spin(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
}

static void on_iteration(mln_event_t *ev, void *data)
{
    (void)data;
    strcat(trace, "|");
    if (++iterations >= limit) {
        mln_event_break_set(ev);
    }
}

int main(void)
{
    int sv[2], spin;
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    spin = eventfd(1, EFD_NONBLOCK);
    if (spin < 0) return 2;
    if (mln_event_fd_set(ev, sv[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) != 0) return 3;
    if (mln_event_fd_set(ev, sv[0], M_EV_SEND | M_EV_APPEND, M_EV_UNMODIFIED, NULL, on_send) != 0) return 4;
    if (mln_event_fd_set(ev, spin, M_EV_RECV, M_EV_UNLIMITED, NULL, on_spin) != 0) return 5;
    mln_event_callback_set(ev, on_iteration, NULL);
    if (write(sv[1], "x", 1) != 1) return 6;
    limit = 3;
    mln_event_dispatch(ev);
    /* Iteration 2 handles what the first wait reported. */
    if (strcmp(trace, "||RS|") != 0) {
        fprintf(stderr, "ev_append: trace \"%s\"\n", trace);
        return 7;
    }
    mln_event_break_reset(ev);
    if (mln_event_fd_set(ev, sv[0], M_EV_SEND, M_EV_UNLIMITED, NULL, on_send) != 0) return 8;
    if (write(sv[1], "y", 1) != 1) return 9;
    trace[0] = 0;
    iterations = 0;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (strchr(trace, 'R') != NULL || strchr(trace, 'S') == NULL) {
        fprintf(stderr, "ev_append: after replace, trace \"%s\"\n", trace);
        return 10;
    }
    return 0;
}
