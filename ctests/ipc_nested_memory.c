/* CTEST_STANDALONE_ONLY: Melon's loop never reports a descriptor again while its handler runs, so a nested dispatch cannot receive on the channel being handled */
/* Memory of a nested dispatch. One worker. The worker's first frame
 * (T_HELLO, a 1000-byte pattern) makes a master handler start the worker's stream and run
 * the loop itself for DURATION ms (a timer sets a flag and breaks the loop), while the
 * worker streams 16 KiB frames as fast as the master takes them (queue limit 1 MiB, the
 * writable callback resumes it). Checks:
 * - every frame is handled, in order, with its content, most of them by the nested
 *   dispatch; the outer handler's `buf` is intact after it;
 * - the master's VmRSS, sampled every 50 ms during the nested dispatch and at its end,
 *   stays below the baseline (taken when the handler starts) plus BOUND_MB: memory is
 *   bounded by the frames not yet handled plus a constant. It used to keep every receive
 *   buffer filled while the outer frame was pinned until the handler returned (2.8 MB ->
 *   1.4 GB in 3 s). Not checked under valgrind, which also runs for less time. */
#include <stdint.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8201 /* worker -> master: the outer frame */
#define T_GO 8202    /* master -> worker: start streaming */
#define T_DATA 8203  /* worker -> master: 16 KiB */
#define T_STOP 8204  /* master -> worker: stop streaming */
#define T_END 8205   /* worker -> master: how many T_DATA were sent */
#define SIZE (16 * 1024)
#define HELLO 1000
#define MAX_MSG ((mln_size_t)64 << 10)
#define LIMIT ((mln_size_t)1 << 20)
#define BOUND_MB 64

#define DURATION (valgrind() ? 1000 : 3000)

static unsigned char msg[SIZE];
/* worker */
static uint64_t sent;
static int stopping, streaming, end_pending;
/* master */
static uint64_t received, nested_received;
static int in_nested, stop, finished;
static long rss0, rss_max;
static unsigned samples;

static unsigned char pat(uint64_t seq, size_t i) { return (unsigned char)(i * 31 + seq * 7); }

static void fill(uint64_t seq)
{
    size_t i;
    memcpy(msg, &seq, sizeof(seq));
    for (i = sizeof(seq); i < SIZE; i += 64) msg[i] = pat(seq, i);
}

/* ---- worker ---- */

static void send_end(mln_event_t *ev)
{
    if (mln_ipc_worker_send_prepare(ev, T_END, &sent, sizeof(sent)) == 0) {
        end_pending = 0;
        return;
    }
    CHECK(errno == EAGAIN);
    end_pending = 1; /* the writable callback sends it */
}

/* Sends until refused (the writable callback resumes) or told to stop. */
static void pump(mln_event_t *ev)
{
    while (!stopping) {
        fill(sent);
        if (mln_ipc_worker_send_prepare(ev, T_DATA, msg, SIZE) != 0) {
            CHECK(errno == EAGAIN);
            return;
        }
        ++sent;
    }
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)f; (void)data;
    if (end_pending) send_end(ev);
    else if (streaming) pump(ev);
}

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    streaming = 1;
    pump(ev);
}

static void worker_stop(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    stopping = 1;
    streaming = 0;
    send_end(ev);
}

static void worker_process(mln_event_t *ev)
{
    unsigned char hello[HELLO];
    size_t i;
    for (i = 0; i < HELLO; ++i) hello[i] = pat(99, i);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, hello, HELLO) == 0);
}

/* ---- master ---- */

static void sample(void)
{
    long r = rss_kb();
    if (r > rss_max) rss_max = r;
    ++samples;
}

static void tick(mln_event_t *ev, void *data)
{
    (void)data;
    sample();
    if (!stop) CHECK(mln_event_timer_set(ev, 50, NULL, tick) != NULL);
}

static void time_up(mln_event_t *ev, void *data)
{
    (void)data;
    stop = 1;
    mln_event_break_set(ev);
}

static void master_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint64_t seq;
    size_t i;
    (void)ev; (void)f_ptr; (void)u;
    CHECK(len == SIZE);
    memcpy(&seq, buf, sizeof(seq));
    CHECK(seq == received);
    for (i = sizeof(seq); i < SIZE; i += 64) CHECK(((unsigned char *)buf)[i] == pat(seq, i));
    ++received;
    if (in_nested) ++nested_received;
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    size_t i;
    (void)u;
    CHECK(len == HELLO);
    rss0 = rss_max = rss_kb();
    CHECK(mln_ipc_master_send_prepare(ev, T_GO, msg, 0, f_ptr) == 0);
    CHECK(mln_event_timer_set(ev, DURATION, NULL, time_up) != NULL);
    CHECK(mln_event_timer_set(ev, 50, NULL, tick) != NULL);
    in_nested = 1;
    while (!stop) {
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
    in_nested = 0;
    sample();
    for (i = 0; i < HELLO; ++i) CHECK(((unsigned char *)buf)[i] == pat(99, i));
    fprintf(stderr, "nested dispatch: %llu frames of 16 KiB (%llu MiB) handled; master VmRSS %ld kB "
            "at the start, at most %ld kB (%u samples; bound +%d MiB)\n",
            (unsigned long long)nested_received, (unsigned long long)(nested_received >> 6), rss0,
            rss_max, samples, BOUND_MB);
    CHECK(nested_received > 0);
    if (!valgrind()) CHECK(rss_max - rss0 < (long)BOUND_MB * 1024);
    CHECK(mln_ipc_master_send_prepare(ev, T_STOP, msg, 0, f_ptr) == 0);
}

static void master_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint64_t n;
    (void)f_ptr; (void)u;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == received); /* every frame handled */
    finished = 1;
    mln_event_break_set(ev);
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: %llu frames received\n", (unsigned long long)received);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, valgrind() ? 240000 : 30000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    if (mln_ipc_max_message_set(MAX_MSG) != 0) return -1;
    if (mln_ipc_queue_limit_set(LIMIT) != 0) return -1;
    mln_ipc_writable_handler_set(writable, NULL);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, master_data, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_STOP, NULL, worker_stop, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, master_end, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
