/* One message each way through the framework: master -> worker "ping", worker -> master
 * "pong". Checks f_ptr in both directions, the  fd accessors and udata_ptr's initial value */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_PING 2001
#define T_PONG 2002

static int got_pong;
static char ping[] = "ping", pong[] = "pong";

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = (mln_fork_t *)f_ptr;
    CHECK(len == 4 && memcmp(buf, "pong", 4) == 0);
    CHECK(f->pid > 0 && f->pid != getpid());
    CHECK(mln_tcp_conn_fd_get(&f->conn) >= 0);
    CHECK(*udata_ptr == (void *)0x1234);
    got_pong = 1;
    mln_event_break_set(ev);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    CHECK(f_ptr == (void *)mln_fork_master_connection_get());
    CHECK(mln_tcp_conn_fd_get(mln_fork_master_connection_get()) >= 0);
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(*udata_ptr == (void *)0x5678);
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, pong, 4) == 0);
}

static int send_ping(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_PING, ping, 4, f);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_tcp_conn_fd_get(mln_fork_master_connection_get()) == -1);
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, pong, 4) == -1); /* not a worker */
    CHECK(mln_fork_iterate(ev, send_ping, NULL) == 0);
}

static int global_init(void)
{
    if (mln_ipc_handler_register(T_PONG, master_pong, NULL, (void *)0x1234, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, (void *)0x5678) == NULL) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr cattr;
    cattr.argc = argc;
    cattr.argv = argv;
    cattr.global_init = global_init;
    cattr.main_thread = NULL;
    cattr.master_process = master_process;
    cattr.worker_process = NULL;
    if (ctest_framework_init(&cattr) < 0) return 1;
    CHECK(got_pong);
    return 0;
}
