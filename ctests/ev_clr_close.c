/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* A RECV handler closes its own descriptor, clears it (after the close), and registers a
 * new pipe that gets the same number: the new registration works and the SEND handler
 * that fired with the old descriptor does not run. */
#include "mln_event.h"
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int old_fd, new_pipe[2] = {-1, -1};
static int recv_calls, send_calls, new_calls, guard_fired, clr_result = -5;

static void on_new(mln_event_t *ev, int fd, void *data)
{
    char c;
    (void)data;
    if (fd == new_pipe[0] && read(fd, &c, 1) == 1) new_calls++;
    mln_event_break_set(ev);
}

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    (void)data;
    recv_calls++;
    close(fd);
    clr_result = mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL);
    if (pipe(new_pipe) != 0) return;
    if (mln_event_fd_set(ev, new_pipe[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_new) != 0) return;
    if (write(new_pipe[1], "x", 1) != 1) return;
}

static void on_send(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    send_calls++;
}

static void on_guard(mln_event_t *ev, void *data)
{
    (void)data;
    guard_fired = 1;
    mln_event_break_set(ev);
}

int main(void)
{
    int sv[2];
    mln_event_t *ev = mln_event_new();

    if (ev == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    old_fd = sv[0];
    if (mln_event_timer_set(ev, 10000, NULL, on_guard) == NULL) return 2;
    if (mln_event_fd_set(ev, sv[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) != 0) return 3;
    if (mln_event_fd_set(ev, sv[0], M_EV_SEND | M_EV_APPEND, M_EV_UNLIMITED, NULL, on_send) != 0) return 4;
    if (write(sv[1], "x", 1) != 1) return 5;
    mln_event_dispatch(ev);
    mln_event_free(ev);
    if (guard_fired || clr_result != 0 || new_pipe[0] != old_fd || recv_calls != 1 ||
        send_calls != 0 || new_calls != 1) {
        fprintf(stderr, "ev_clr_close: guard %d clr %d reused %d recv %d send %d new %d\n",
                guard_fired, clr_result, new_pipe[0] == old_fd, recv_calls, send_calls, new_calls);
        return 6;
    }
    return 0;
}
