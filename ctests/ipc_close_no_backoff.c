/* A close the program asks for (mln_fork_socketpair_close_handler) is not a death for the
 * restart backoff: a worker closed right after it said hello, CLOSES times in a row, is
 * replaced at once each time. With the backoff (100, 200, 400, 800 ms, ...) the replacements
 * would take over 3 s; the test allows 1.5 s for all of them (a crash loop is still backed
 * off: ipc_crashloop.c).
 * The defect it was written for: requested closes within 1 s of a start counted as quick
 * deaths, so a program restarting its workers twice in a second waited up to 10 s. */
#include "ctest.h"
#include <time.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 9001
#define CLOSES 6

static int hellos;
static long first_close_ms, last_hello_ms;

static void worker_process(mln_event_t *ev)
{
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    if (hellos++ == CLOSES) {
        last_hello_ms = now_ms();
        mln_event_break_set(ev);
        return;
    }
    if (first_close_ms == 0) first_close_ms = now_ms();
    mln_fork_socketpair_close_handler(ev, (mln_fork_t *)f_ptr, -1);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "master: watchdog (%d hellos)\n", hellos);
    exit(4);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, 30000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    return mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(ctest_framework_init(&a) == 0);
    fprintf(stderr, "master: %d replacements in %ld ms\n", CLOSES, last_hello_ms - first_close_ms);
    CHECK(hellos == CLOSES + 1);
    if (!valgrind()) CHECK(last_hello_ms - first_close_ms < 1500);
    return 0;
}
