/* Lifecycle item 6: a registration handle already unregistered stays a no-op forever.
 * Before the fork: a = register(T1); unregister(a); b = register(T2); unregister(a) again.
 * At run time in the master: c = register(T3); unregister(c); d = register(T4);
 * unregister(c) again; mln_ipc_set_process_handlers(). Expected: T2 is installed on both
 * sides and T4 on the master's side: the master sends T2 then a sync frame to the worker,
 * whose sync handler checks that T2 arrived; the worker answers T2, T4 and a sync frame,
 * and the master's sync handler checks that both arrived. Every process reports failures
 * to the master (life.h).
 * Today: the freed entry of `a` is reused for `b` (b == a), so the second unregister(a)
 * removes T2 (and likewise T4): the frames are dropped. (Under valgrind, which does not
 * reuse freed blocks at once, b != a and the test passes.) */
#include "life.h"

#define T1 6601
#define T2 6602
#define T3 6603
#define T4 6604
#define T_SYNC 6605  /* master -> worker */
#define T_SYNC2 6606 /* worker -> master */

static int got2, got4;

static void never(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(!"a handler of an unregistered type ran");
}

static void w2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 2 && memcmp(buf, "t2", 2) == 0);
    ++got2;
}

static void wsync(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    if (got2 != 1) fprintf(stderr, "worker: T2 (registered after a stale handle was unregistered) arrived %d times\n", got2);
    CHECK(got2 == 1);
    CHECK(mln_ipc_worker_send_prepare(ev, T2, "t2", 2) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T4, "t4", 2) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_SYNC2, NULL, 0) == 0);
}

static void m2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 2 && memcmp(buf, "t2", 2) == 0);
    ++got2;
}

static void m4(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 2 && memcmp(buf, "t4", 2) == 0);
    ++got4;
}

static void m_sync(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    if (got2 != 1 || got4 != 1)
        fprintf(stderr, "master: T2 arrived %d times, T4 (registered at run time) %d times\n", got2, got4);
    CHECK(got2 == 1 && got4 == 1);
    life_check_live(ev, 1, 2, NULL, life_stop);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    CHECK(mln_ipc_master_send_prepare(ev, T2, "t2", 2, f) == 0);
    CHECK(mln_ipc_master_send_prepare(ev, T_SYNC, NULL, 0, f) == 0);
}

static void master_process(mln_event_t *ev)
{
    mln_ipc_cb_t *c, *d;
    life_master_watch(ev);
    life_watchdog(20);
    c = mln_ipc_handler_register(T3, never, never, NULL, NULL);
    CHECK(c != NULL);
    mln_ipc_handler_unregister(c);
    d = mln_ipc_handler_register(T4, m4, NULL, NULL, NULL);
    CHECK(d != NULL);
    if (d == c) fprintf(stderr, "master: the handle of T3 was reissued for T4\n");
    mln_ipc_handler_unregister(c);
    CHECK(mln_ipc_set_process_handlers() == 0);
}

static int global_init(void)
{
    mln_ipc_cb_t *a, *b;
    ctest_workers(1);
    life_max_workers = 1;
    life_on_hello = on_hello;
    a = mln_ipc_handler_register(T1, never, never, NULL, NULL);
    CHECK(a != NULL);
    mln_ipc_handler_unregister(a);
    b = mln_ipc_handler_register(T2, m2, w2, NULL, NULL);
    CHECK(b != NULL);
    if (b == a) fprintf(stderr, "global_init: the handle of T1 was reissued for T2\n");
    mln_ipc_handler_unregister(a);
    if (!mln_ipc_handler_register(T_SYNC, NULL, wsync, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SYNC2, m_sync, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(got2 == 1 && got4 == 1);
    return 0;
}
