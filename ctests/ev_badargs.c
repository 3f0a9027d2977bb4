/* CTEST_STANDALONE_ONLY: melon-ipc's own event loop; the melon build uses Melon's */
/* Every mln_event_* function given a NULL loop, a negative or unopened descriptor, or a
 * NULL / stale timer returns its documented error value (-1, NULL, or nothing) and
 * changes nothing: afterwards the loop still has its registered descriptor, its pending
 * timer, its callback and its fd timeout, and they all fire as before. */
#include "ctest.h"
#include "mln_event.h"

static int recvs, timers, callbacks, timeouts;

static void on_recv(mln_event_t *ev, int fd, void *data)
{
    char b[16];
    (void)ev; (void)data;
    CHECK(read(fd, b, sizeof(b)) > 0);
    ++recvs;
}

static void on_timeout(mln_event_t *ev, int fd, void *data)
{
    (void)ev; (void)fd; (void)data;
    ++timeouts;
}

/* Ends the dispatch once the data was read and the fd timeout fired too (on a loaded
 * machine, or under valgrind, all may be due at once and the timer may come first). */
static void on_wait(mln_event_t *ev, void *data)
{
    if (timeouts > 0 && recvs > 0) {
        mln_event_break_set(ev);
        return;
    }
    CHECK(mln_event_timer_set(ev, 10, data, on_wait) != NULL);
}

static void on_timer(mln_event_t *ev, void *data)
{
    ++timers;
    on_wait(ev, data);
}

static void on_fired(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
}

static void on_callback(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    ++callbacks;
}

int main(void)
{
    mln_event_t *ev = mln_event_new(), *other = mln_event_new();
    mln_event_timer_t *t, *fired;
    int p[2], q[2], fds;
    CHECK(ev != NULL && other != NULL);
    CHECK(pipe(p) == 0 && pipe(q) == 0);

    /* The state that must survive: a registered fd, a callback, a pending timer, and an
     * fd with a timeout that will expire. */
    CHECK(mln_event_fd_set(ev, p[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) == 0);
    CHECK(mln_event_fd_set(ev, q[0], M_EV_RECV, 30, NULL, on_recv) == 0);
    mln_event_fd_timeout_handler_set(ev, q[0], NULL, on_timeout);
    mln_event_callback_set(ev, on_callback, NULL);
    t = mln_event_timer_set(ev, 60, NULL, on_timer);
    CHECK(t != NULL);
    /* A timer of the same loop that already fired: cancelling it later is a no-op. */
    fired = mln_event_timer_set(ev, 0, NULL, on_fired);
    CHECK(fired != NULL);
    fds = count_fds();

    /* NULL loop. */
    errno = 0;
    CHECK(mln_event_fd_set(NULL, p[0], M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) == -1 && errno == EINVAL);
    CHECK(mln_event_fd_set(NULL, p[0], M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == -1);
    CHECK(mln_event_timer_set(NULL, 0, NULL, on_timer) == NULL);
    mln_event_timer_cancel(NULL, t);
    mln_event_timer_cancel(NULL, NULL);
    mln_event_fd_timeout_handler_set(NULL, q[0], NULL, on_recv);
    mln_event_callback_set(NULL, on_timer, NULL);
    mln_event_dispatch(NULL);
    mln_event_free(NULL);

    /* Bad descriptors. */
    errno = 0;
    CHECK(mln_event_fd_set(ev, -1, M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_event_fd_set(ev, -5, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_event_fd_set(ev, -1, M_EV_SEND | M_EV_APPEND, 10, NULL, on_recv) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(mln_event_fd_set(ev, 4000, M_EV_RECV, M_EV_UNLIMITED, NULL, on_recv) == -1 && errno == EBADF);
    mln_event_fd_timeout_handler_set(ev, -1, NULL, on_recv);
    mln_event_fd_timeout_handler_set(ev, 4000, NULL, on_recv); /* not registered */

    /* NULL or foreign timers. */
    mln_event_timer_cancel(ev, NULL);
    mln_event_timer_cancel(other, t); /* a timer of another loop: not cancelled there */
    CHECK(count_fds() == fds);

    /* Nothing changed: data arrives, the callback runs, the timeout and timer fire. */
    CHECK(write(p[1], "x", 1) == 1);
    mln_event_dispatch(ev);
    if (!(recvs == 1 && timers == 1 && timeouts == 1 && callbacks > 0))
        fprintf(stderr, "recvs %d timers %d timeouts %d callbacks %d\n", recvs, timers, timeouts, callbacks);
    CHECK(recvs == 1 && timers == 1 && timeouts == 1 && callbacks > 0);
    mln_event_timer_cancel(ev, fired); /* fired long ago */
    mln_event_timer_cancel(ev, t);     /* fired too */
    mln_event_free(ev);
    mln_event_free(other);
    return 0;
}
