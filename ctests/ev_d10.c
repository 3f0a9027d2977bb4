/* CTEST_STANDALONE_ONLY: our event loop; Melon's stalls here (D10), the melon build avoids it */
/* Spec D10: a persistent RECV plus an APPENDed one-shot SEND on one socket. While the send
 * buffer is full only RECV can fire; it must keep firing, and SEND must fire once the peer
 * drains. (Melon's loop stalls here: both directions stop.) */
#include "mln_event.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int peer, recv_calls, send_calls, guard_fired;

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    char buf[65536];
    (void)ev; (void)data;
    recv_calls++;
    while (read(fd, buf, sizeof(buf)) > 0) {}
    if (recv_calls == 1) {
        if (write(peer, "y", 1) != 1) return;            /* more data, SEND still blocked */
    } else if (recv_calls == 2) {
        while (read(peer, buf, sizeof(buf)) > 0) {}     /* drain: SEND becomes possible */
    }
}

static void on_send(mln_event_t *ev, int fd, void *data)
{
    (void)fd; (void)data;
    send_calls++;
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
    static char chunk[65536];
    int sv[2];
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    peer = sv[1];
    if (fcntl(peer, F_SETFL, O_NONBLOCK) != 0) return 2;
    if (mln_event_timer_set(ev, 10000, NULL, on_guard) == NULL) return 3;
    if (mln_event_fd_set(ev, sv[0], M_EV_RECV | M_EV_NONBLOCK, M_EV_UNLIMITED, NULL, on_recv) != 0) return 4;
    while (write(sv[0], chunk, sizeof(chunk)) > 0) {}
    if (mln_event_fd_set(ev, sv[0], M_EV_SEND | M_EV_ONESHOT | M_EV_APPEND, M_EV_UNLIMITED, NULL, on_send) != 0) return 5;
    if (write(peer, "x", 1) != 1) return 6;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (guard_fired || recv_calls < 2 || send_calls != 1) {
        fprintf(stderr, "ev_d10: stalled: guard %d recv %d send %d\n", guard_fired, recv_calls, send_calls);
        return 7;
    }
    return 0;
}
