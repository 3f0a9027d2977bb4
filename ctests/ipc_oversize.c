/* A frame header announcing more than the maximum message size is a protocol error: no
 * handler sees it, the connection is closed and the worker restarted as if it had died,
 * without leaking a descriptor. Sends above the maximum are refused. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8001
#define MAX 1024

static pid_t first;
static int fds_at_first, hellos;

static int count(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    char big[MAX];
    int n = 0;
    (void)udata_ptr;
    CHECK(len == sizeof(pid_t) && *(pid_t *)buf == f->pid);
    CHECK(mln_fork_iterate(ev, count, &n) == 0 && n == 1);
    memset(big, 0, sizeof(big));
    CHECK(mln_ipc_master_send_prepare(ev, 1, big, MAX - 4, f) == 0);
    CHECK(mln_ipc_master_send_prepare(ev, 1, big, MAX - 3, f) == -1);
    if (++hellos == 1) {
        first = f->pid;
        fds_at_first = count_fds();
        return;
    }
    CHECK(f->pid != first);
    CHECK(count_fds() == fds_at_first);
    mln_event_break_set(ev);
}

static void worker_process(mln_event_t *ev)
{
    int fd = mln_tcp_conn_fd_get(mln_fork_master_connection_get());
    struct { mln_u32_t len, type; pid_t pid; mln_u32_t bad_len, bad_type; } w;
    (void)ev;
    w.len = 4 + sizeof(pid_t);
    w.type = T_HELLO;
    w.pid = getpid();
    w.bad_len = 1u << 20;
    w.bad_type = T_HELLO;
    CHECK(write(fd, &w, sizeof(w)) == (ssize_t)sizeof(w));
}

static int global_init(void)
{
    CHECK(mln_ipc_max_message_set(3) == -1);
    CHECK(mln_ipc_max_message_set((mln_size_t)1 << 32) == -1);
    CHECK(mln_ipc_max_message_set(MAX) == 0);
    return mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(hellos == 2);
    return 0;
}
