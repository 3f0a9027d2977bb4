/* A replacement that is slow to start does not stall the master's loop: the fork
 * handshake is completed from the loop. Two workers; once both said hello, worker A is
 * closed and its replacement sleeps SLOW ms in its resource-clear handler (before its
 * handshake). Meanwhile the master's 10 ms timer must keep ticking (longest gap under
 * GAP_MAX ms), worker B must keep answering pings, and a frame the master sends to the
 * replacement as soon as it is listed (still starting) must reach it after its handshake
 * and be answered.
 * The defect it was written for: the master waited for the handshake in a blocking read; the
 * longest gap between ticks was the whole sleep (1.5 s) and B was not heard meanwhile. */
#include "ctest.h"
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8201
#define T_PING 8202
#define T_PONG 8203
#define T_EARLY 8204
#define T_EARLY_ACK 8205

static int slow_ms;      /* set in the master before the replacement forks */

static void clr(void *data)
{
    (void)data;
    if (slow_ms > 0) usleep((useconds_t)slow_ms * 1000);
}

static void worker_process(mln_event_t *ev)
{
    int pid = (int)getpid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &pid, sizeof(pid)) == 0);
}

static void worker_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_PONG, buf, len) == 0);
}

static void worker_early(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_EARLY_ACK, buf, len) == 0);
}

static mln_fork_t *wa, *wb, *repl;
static int hellos, pongs_during, early_acked;
static long closed_at, last_tick, max_gap, repl_hello_at;

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)buf; (void)len; (void)udata_ptr;
    ++hellos;
    if (hellos == 1) wa = f_ptr;
    else if (hellos == 2) wb = f_ptr;
    else {
        CHECK(hellos == 3 && f_ptr == repl);
        repl_hello_at = now_ms();
    }
}

static void master_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)buf; (void)len; (void)udata_ptr;
    if (f_ptr == wb && closed_at != 0 && repl_hello_at == 0) ++pongs_during;
}

static void master_early_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    CHECK(f_ptr == repl && len == 4 && memcmp(buf, "early", 4) == 0);
    early_acked = 1;
    mln_event_break_set(ev);
}

static int find_new(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    if (f != wa && f != wb && repl == NULL) repl = f;
    return 0;
}

static void tick(mln_event_t *ev, void *data)
{
    long t = now_ms();
    (void)data;
    if (closed_at != 0 && repl_hello_at == 0 && t - last_tick > max_gap) max_gap = t - last_tick;
    last_tick = t;
    if (wa != NULL && wb != NULL && closed_at == 0) {
        slow_ms = valgrind() ? 4000 : 1500;
        closed_at = t;
        mln_fork_socketpair_close_handler(ev, wa, -1);
    }
    if (closed_at != 0 && repl == NULL) {
        CHECK(mln_fork_iterate(ev, find_new, NULL) == 0);
        if (repl != NULL) /* listed, and still in its clear handler: queued for it */
            CHECK(mln_ipc_master_send_prepare(ev, T_EARLY, "early", 4, repl) == 0);
    }
    if (wb != NULL) {
        int x = 1;
        CHECK(mln_ipc_master_send_prepare(ev, T_PING, &x, sizeof(x), wb) == 0);
    }
    CHECK(mln_event_timer_set(ev, 10, NULL, tick) != NULL);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog (hellos %d, early ack %d)\n", hellos, early_acked);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    last_tick = now_ms();
    CHECK(mln_event_timer_set(ev, 10, NULL, tick) != NULL);
    CHECK(mln_event_timer_set(ev, 60000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(2);
    mln_fork_resource_clear_handler_set(clr, NULL);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, NULL, worker_ping, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PONG, master_pong, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_EARLY, NULL, worker_early, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_EARLY_ACK, master_early_ack, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    long gap_max;
    gap_max = valgrind() ? 2000 : 250;
    CHECK(ctest_framework_init(&a) == 0);
    fprintf(stderr, "master: replacement took %ld ms; longest tick gap %ld ms; %d pongs from B meanwhile\n",
            repl_hello_at - closed_at, max_gap, pongs_during);
    CHECK(early_acked == 1);
    CHECK(repl_hello_at - closed_at >= slow_ms - 100); /* the replacement really was slow */
    CHECK(max_gap < gap_max);
    CHECK(pongs_during >= 10);
    return 0;
}
