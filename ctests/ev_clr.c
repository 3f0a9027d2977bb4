/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* M_EV_CLR silences a descriptor: cleared before dispatch it never fires; cleared by its
 * RECV handler, the SEND handler that fired with it is skipped. Clearing twice, or an
 * unknown descriptor, returns 0. */
#include "mln_event.h"
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static int recv_calls, send_calls, bad_calls, iterations;

static void on_bad(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    bad_calls++;
}

static void on_recv_clear(mln_event_t *ev, int fd, void *data)
{
    (void)data;
    recv_calls++;
    if (mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) != 0) bad_calls += 100;
}

static void on_send(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    send_calls++;
}

static void on_spin(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
}

static void on_iteration(mln_event_t *ev, void *data)
{
    (void)data;
    if (++iterations >= 10) {
        mln_event_break_set(ev);
    }
}

int main(void)
{
    int p[2], sv[2], spin;
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || pipe(p) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    spin = eventfd(1, EFD_NONBLOCK);
    if (spin < 0 || write(p[1], "x", 1) != 1 || write(sv[1], "x", 1) != 1) return 2;
    if (mln_event_fd_set(ev, p[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_bad) != 0) return 3;
    if (mln_event_fd_set(ev, p[0], M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) != 0) return 4;
    if (mln_event_fd_set(ev, p[0], M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) != 0) return 5;
    if (mln_event_fd_set(ev, 999, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) != 0) return 6;
    if (mln_event_fd_set(ev, sv[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv_clear) != 0) return 7;
    if (mln_event_fd_set(ev, sv[0], M_EV_SEND | M_EV_APPEND, M_EV_UNLIMITED, NULL, on_send) != 0) return 8;
    if (mln_event_fd_set(ev, spin, M_EV_RECV, M_EV_UNLIMITED, NULL, on_spin) != 0) return 9;
    mln_event_callback_set(ev, on_iteration, NULL);
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (bad_calls != 0 || recv_calls != 1 || send_calls != 0) {
        fprintf(stderr, "ev_clr: bad %d recv %d send %d\n", bad_calls, recv_calls, send_calls);
        return 10;
    }
    return 0;
}
