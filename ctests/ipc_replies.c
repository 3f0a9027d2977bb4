/* One request from the worker, 100 replies from the master: the worker checks they arrive
 * in order, then reports; udata_ptr carries the worker's counter between messages. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_REQ 3001
#define T_REPLY 3002
#define T_DONE 3003

static int done;

static void master_req(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i;
    (void)udata_ptr;
    CHECK(len == 3 && memcmp(buf, "req", 3) == 0);
    for (i = 0; i < 100; ++i)
        CHECK(mln_ipc_master_send_prepare(ev, T_REPLY, &i, sizeof(i), (mln_fork_t *)f_ptr) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(int) && *(int *)buf == 100);
    done = 1;
    mln_event_break_set(ev);
}

static void worker_reply(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n = (long)*udata_ptr;
    (void)f_ptr;
    CHECK(len == sizeof(int));
    CHECK(*(int *)buf == (int)n);
    *udata_ptr = (void *)(n + 1);
    if (n + 1 == 100) {
        int total = 100;
        CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &total, sizeof(total)) == 0);
    }
}

static void worker_process(mln_event_t *ev)
{
    char req[] = "req";
    CHECK(mln_ipc_worker_send_prepare(ev, T_REQ, req, 3) == 0);
}

static int global_init(void)
{
    if (mln_ipc_handler_register(T_REQ, master_req, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_REPLY, NULL, worker_reply, NULL, (void *)0) == NULL) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(done);
    return 0;
}
