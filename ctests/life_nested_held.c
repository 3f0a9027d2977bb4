/* CTEST_STANDALONE_ONLY: Melon's loop never reports a descriptor again while its handler runs, so a nested dispatch cannot receive on the channel being handled */
/* Nested dispatch that waits for the frame *already received* behind the one being handled.
 * A peer sends A, B and C from one handler call, so they leave in one write and arrive in
 * one read. The handler of A waits for B the usual way, `while (!seen_b)
 * mln_event_dispatch(ev);`: the socket has nothing new to report, so B and C must come
 * from what the library has already read. Expected on each side: B is delivered inside
 * A's handler, the handlers start in the order A, B, C, A's `buf` and `len` are intact
 * after the nested loop, and nothing is delivered twice.
 * Master side first (the worker sends A, B, C), then worker side (the master sends them
 * from its handler of the worker's report); the worker reports its order to the master.
 * One worker; a second worker start, any process's failure or the 20 s watchdog fails the
 * test (life.h).
 * The defect it was written for: the nested loop waited in epoll_wait for ever with B and C in the
 * receive buffer (the watchdog fired). */
#include "life.h"

#define T_GO 6301     /* master -> worker: send A, B, C */
#define T_A 6302
#define T_B 6303
#define T_C 6304
#define T_REPORT 6305 /* worker -> master: the order its handlers saw, NUL-terminated */

static const char payload_a[] = "the frame whose handler runs the loop";
static char order[16];
static int n_order, seen_b;

static void note(char c)
{
    CHECK(n_order < (int)sizeof(order) - 1);
    order[n_order++] = c;
}

static void send_abc(mln_event_t *ev, mln_fork_t *to)
{
    if (to == NULL) {
        CHECK(mln_ipc_worker_send_prepare(ev, T_A, (void *)payload_a, sizeof(payload_a)) == 0);
        CHECK(mln_ipc_worker_send_prepare(ev, T_B, "b", 1) == 0);
        CHECK(mln_ipc_worker_send_prepare(ev, T_C, "c", 1) == 0);
    } else {
        CHECK(mln_ipc_master_send_prepare(ev, T_A, (void *)payload_a, sizeof(payload_a), to) == 0);
        CHECK(mln_ipc_master_send_prepare(ev, T_B, "b", 1, to) == 0);
        CHECK(mln_ipc_master_send_prepare(ev, T_C, "c", 1, to) == 0);
    }
}

/* All four steps seen (A's start, B, C, A's end): the master checks its order and starts
 * the worker side; the worker reports its order. */
static void maybe_done(mln_event_t *ev, mln_fork_t *f)
{
    if (n_order < 4) return;
    order[n_order] = 0;
    if (getpid() != life_master) {
        CHECK(mln_ipc_worker_send_prepare(ev, T_REPORT, order, (mln_size_t)n_order + 1) == 0);
        return;
    }
    /* B inside A's loop; C right behind B (in A's loop, the usual case: it was read with
     * B) or right after A's end. */
    if (strcmp(order, "ABCa") != 0 && strcmp(order, "ABaC") != 0) {
        fprintf(stderr, "master: handler order %s\n", order);
        CHECK(0);
    }
    send_abc(ev, f);
}

/* The same handlers serve both sides. */
static void on_a(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    CHECK(len == sizeof(payload_a) && memcmp(buf, payload_a, len) == 0);
    note('A');
    while (!seen_b) mln_event_dispatch(ev);
    mln_event_break_reset(ev);
    CHECK(len == sizeof(payload_a) && memcmp(buf, payload_a, len) == 0);
    note('a');
    maybe_done(ev, f_ptr);
}

static void on_b(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 1 && memcmp(buf, "b", 1) == 0);
    CHECK(n_order == 1 && order[0] == 'A');
    note('B');
    seen_b = 1;
    mln_event_break_set(ev);
}

static void on_c(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    CHECK(len == 1 && memcmp(buf, "c", 1) == 0);
    note('C');
    maybe_done(ev, f_ptr);
}

static void on_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(len >= 1 && ((char *)buf)[len - 1] == 0);
    if (strcmp(buf, "ABCa") != 0 && strcmp(buf, "ABaC") != 0) {
        fprintf(stderr, "worker: handler order %s\n", (char *)buf);
        CHECK(0);
    }
    life_stop(ev);
}

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    send_abc(ev, NULL);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    CHECK(life_hellos.n == 1);
    CHECK(mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, f) == 0);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(1);
    life_max_workers = 1;
    life_on_hello = on_hello;
    if (!mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_A, on_a, on_a, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_B, on_b, on_b, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_C, on_c, on_c, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_REPORT, on_report, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(seen_b && n_order == 4);
    return 0;
}
