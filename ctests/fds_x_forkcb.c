/* Hostile use: a master handler forks a worker (mln_fork_restart(ev)) while the
 * descriptors of a later frame of the same channel (G: a memfd "forkcb-G") have already
 * been received but not dispatched. differences.md: the child "releases its siblings'
 * records only then (their descriptors close at once)" when the callback returns. The
 * new child must not keep a copy of G's descriptor (nor of the frame's own, F's, unless
 * taken): every descriptor received by the master belongs to the master. The child reports
 * the memfds it holds once its worker_process runs.
 * Also, after the fork, in the master: G arrives with its descriptor. */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_event.h"

#define T_F 8981
#define T_G 8982
#define T_SEEN 8983

static int finished, g_ok, forked, seen, master_pid;

static int holds_memfd(const char *name)
{
    int fd, n = 0;
    for (fd = 0; fd < 1024; ++fd)
        if (memfd_named(fd, name)) ++n;
    return n;
}

static void master_f(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_fds_count() == 0);
    r = mln_fork_restart(ev);
    CHECK(r >= 0);
    if (r == 0) {
        /* The new child, still in the callback. */
        mln_event_break_set(ev);
        return;
    }
    forked = 1;
}

static void master_g(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int fd;
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(getpid() == master_pid);
    CHECK(mln_ipc_fds_count() == 1);
    fd = mln_ipc_fd_take(0);
    CHECK(fd >= 0 && memfd_named(fd, "forkcb-G"));
    close(fd);
    g_ok = 1;
}

static void master_seen(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    fprintf(stderr, "worker %d: holds %d copies of F's memfd, %d of G's\n", r[0], r[1], r[2]);
    if (r[0] == 0) return; /* the first worker */
    seen = 1;
    finished = (r[1] == 0 && r[2] == 0 && g_ok && forked) ? 1 : 2;
    mln_event_break_set(ev);
}

static void worker_process(mln_event_t *ev)
{
    int r[3], f, g;
    r[0] = getpid();
    r[1] = holds_memfd("forkcb-F");
    r[2] = holds_memfd("forkcb-G");
    if (!forked) {
        /* The first worker (and the child forked in F's callback, which has the master's
         * forked == 0 and so triggers one more fork): F then G, written together. */
        r[0] = 0;
        CHECK(mln_ipc_worker_send_prepare(ev, T_SEEN, r, sizeof(r)) == 0);
        f = memfd_with("forkcb-F", "F");
        g = memfd_with("forkcb-G", "G");
        CHECK(mln_ipc_worker_send_prepare(ev, T_F, NULL, 0) == 0); /* plain: G's come in the same read */
        CHECK(mln_ipc_worker_send_fds_prepare(ev, T_G, NULL, 0, &g, 1) == 0);
        close(f);
        close(g);
        return;
    }
    CHECK(mln_ipc_worker_send_prepare(ev, T_SEEN, r, sizeof(r)) == 0);
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
    master_pid = getpid();
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_F, master_f, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_G, master_g, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SEEN, master_seen, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int r = ctest_framework_init(&a);
    if (master_pid != 0 && getpid() != master_pid) {
        fprintf(stderr, "pid %d: mln_framework_init returned %d in a child\n", (int)getpid(), r);
        return 0;
    }
    if (r < 0) return 1;
    return finished == 1 ? 0 : 1;
}
