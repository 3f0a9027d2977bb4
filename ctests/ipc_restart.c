/* SIGKILL a worker, then talk to its replacement: the list holds only the new child, no
 * descriptor leaked, and the new worker answers. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 9101
#define T_PING 9102
#define T_PONG 9103

static pid_t first, second;
static int fds_before, pongs;

static int only_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    CHECK(f->pid == second);
    ++*(int *)data;
    return 0;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int n = 0;
    (void)buf; (void)len; (void)udata_ptr;
    if (first == 0) {
        first = f->pid;
        fds_before = count_fds();
        CHECK(kill(first, SIGKILL) == 0);
        return;
    }
    second = f->pid;
    CHECK(second != first);
    CHECK(mln_fork_iterate(ev, only_child, &n) == 0 && n == 1);
    CHECK(count_fds() == fds_before);
    CHECK(mln_ipc_master_send_prepare(ev, T_PING, NULL, 0, f) == 0);
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(((mln_fork_t *)f_ptr)->pid == second);
    ++pongs;
    mln_event_break_set(ev);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, NULL, 0) == 0);
}

static void worker_process(mln_event_t *ev)
{
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static int global_init(void)
{
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(pongs == 1);
    return 0;
}
