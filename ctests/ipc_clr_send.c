/* Frames a worker sends before its fork handshake arrive exactly once, in order, behind
 * the handshake: every worker (the two initial ones and their replacements) sends from the
 * resource-clear handler (which runs in the new child before the handshake) through a
 * private loop of its own, then from worker_process before its loop runs. The master must
 * receive, from every worker pid, CLR 1, CLR 2, then WP, and nothing else; after the first
 * round it closes each worker once, and the replacements must do the same.
 * The defect it was written for: the clear handler's frame reached the socket before the handshake
 * byte; the master read the frame's first byte as the handshake and the rest as a frame
 * length ("protocol error: frame length 150994944 above the maximum"), and every worker was
 * restarted for ever (watchdog). */
#include "ctest.h"
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_CLR 8101
#define T_WP 8102
#define WORKERS 2
#define ROUNDS 2 /* initial workers, then one replacement each */

struct msg {
    int pid;
    int seq;
};

static void clr_send(void *data)
{
    /* In the new child, before its handshake: sends through a loop of its own. */
    mln_event_t *own = mln_event_new();
    struct msg m;
    int i;
    (void)data;
    CHECK(own != NULL);
    m.pid = (int)getpid();
    for (i = 1; i <= 2; ++i) {
        m.seq = i;
        CHECK(mln_ipc_worker_send_prepare(own, T_CLR, &m, sizeof(m)) == 0);
    }
    mln_event_free(own);
}

static void worker_process(mln_event_t *ev)
{
    struct msg m = {(int)getpid(), 3};
    CHECK(mln_ipc_worker_send_prepare(ev, T_WP, &m, sizeof(m)) == 0);
}

struct seen {
    int pid;
    int next; /* the seq expected next: 1, 2, 3, then 4 = done */
};
static struct seen seen[WORKERS * ROUNDS];
static int n_seen, n_done;

static struct seen *find(int pid)
{
    int i;
    for (i = 0; i < n_seen; ++i)
        if (seen[i].pid == pid) return &seen[i];
    CHECK(n_seen < WORKERS * ROUNDS); /* more worker processes than expected */
    seen[n_seen].pid = pid;
    seen[n_seen].next = 1;
    return &seen[n_seen++];
}

static void got(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len)
{
    struct msg m;
    struct seen *s;
    CHECK(len == sizeof(m));
    memcpy(&m, buf, sizeof(m));
    CHECK(m.pid == ((mln_fork_t *)f_ptr)->pid);
    s = find(m.pid);
    if (m.seq != s->next)
        fprintf(stderr, "master: from %d seq %d, expected %d\n", m.pid, m.seq, s->next);
    CHECK(m.seq == s->next);
    ++s->next;
    if (s->next == 4) {
        ++n_done;
        if (n_done <= WORKERS) {
            /* First round: replace this worker. */
            mln_fork_socketpair_close_handler(ev, (mln_fork_t *)f_ptr, -1);
        } else if (n_done == WORKERS * ROUNDS) {
            mln_event_break_set(ev);
        }
    }
}

static void master_clr(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    got(ev, f_ptr, buf, len);
}

static void master_wp(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    got(ev, f_ptr, buf, len);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog: %d of %d workers reported\n", n_done, WORKERS * ROUNDS);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, 30000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(WORKERS);
    mln_fork_resource_clear_handler_set(clr_send, NULL);
    if (!mln_ipc_handler_register(T_CLR, master_clr, NULL, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_WP, master_wp, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int i;
    CHECK(ctest_framework_init(&a) == 0);
    CHECK(n_done == WORKERS * ROUNDS);
    for (i = 0; i < n_seen; ++i) CHECK(seen[i].next == 4);
    return 0;
}
