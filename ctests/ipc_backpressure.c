/* A worker that stops reading (issue: backpressure). The worker's handler of T_BLOCK blocks
 * on a pipe the master holds; meanwhile the master, with a queue limit of 8 MiB
 * (mln_ipc_queue_limit_set), sends 64 KiB frames until one is refused. Checks:
 * - the refusal is -1 with errno EAGAIN, after more than the limit's worth of frames was
 *   accepted (the socket holds some) and fewer than the limit plus 8 MiB (a bound);
 * - the refused send queued nothing and changed nothing: the stats before and after
 *   differ only in sends_refused (+1 per refusal, several refusals of two sizes); every
 *   accepted frame is either written or queued (frames_sent + queued_frames);
 *   queued_bytes and queue_peak_bytes are within the limit, and one more frame would not
 *   have fitted;
 * - no close, no restart: the same child (pid, record) afterwards, restarts 0;
 * - the master's VmRSS grew by less than the limit plus 8 MiB (not under valgrind);
 * - once the pipe says how many frames were accepted, the worker receives all of them, in
 *   order, exactly once, with their content; the stats of both sides then agree with that
 *   (nothing queued any more). */
#include <stdint.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_BLOCK 7401
#define T_DATA 7402
#define T_DONE 7403
#define MAX_MSG ((mln_size_t)1 << 20)
#define LIMIT ((mln_size_t)8 << 20)
#define SIZE (64 * 1024)
#define WIRE (SIZE + 8)
#define SLACK_KB (8 * 1024)

struct done {
    uint64_t received;
    mln_ipc_stats_t ws; /* the worker's stats of its master connection */
};

static int blockpipe[2];
static mln_fork_t *child;
static pid_t child_pid;
static uint64_t accepted, expected, next_seq;
static unsigned refusals;
static int finished;
static unsigned char msg[SIZE];

static void fill(unsigned char *p, uint32_t seq)
{
    size_t i;
    memcpy(p, &seq, 4);
    for (i = 4; i < SIZE; ++i) p[i] = (unsigned char)(i * 7 + seq);
}

static int same_stats(const mln_ipc_stats_t *a, const mln_ipc_stats_t *b)
{
    return a->frames_sent == b->frames_sent && a->bytes_sent == b->bytes_sent
        && a->frames_received == b->frames_received && a->bytes_received == b->bytes_received
        && a->queued_frames == b->queued_frames && a->queued_bytes == b->queued_bytes
        && a->queue_peak_bytes == b->queue_peak_bytes && a->restarts == b->restarts;
}

/* Worker: stop reading until the master writes the number of frames it got accepted. */
static void worker_block(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    ssize_t n;
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    CHECK(len == 0);
    do n = read(blockpipe[0], &expected, sizeof(expected));
    while (n < 0 && errno == EINTR);
    if (n == 0) exit(3); /* the master is gone */
    CHECK(n == (ssize_t)sizeof(expected));
    CHECK(expected > 0);
    close(blockpipe[0]);
}

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    static unsigned char want[SIZE];
    struct done d;
    uint32_t seq;
    (void)f_ptr; (void)udata_ptr;
    CHECK(expected > 0); /* T_BLOCK came first */
    CHECK(len == SIZE);
    memcpy(&seq, buf, 4);
    CHECK(seq == next_seq); /* in order, none lost, none twice */
    fill(want, seq);
    CHECK(memcmp(buf, want, SIZE) == 0);
    if (++next_seq < expected) return;
    CHECK(next_seq == expected);
    memset(&d, 0, sizeof(d));
    d.received = next_seq;
    CHECK(mln_ipc_stats_get(NULL, &d.ws) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &d, sizeof(d)) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct done d;
    mln_ipc_stats_t s;
    (void)udata_ptr;
    CHECK(f_ptr == child && child->pid == child_pid); /* never closed, never restarted */
    CHECK(len == sizeof(d));
    memcpy(&d, buf, sizeof(d));
    CHECK(d.received == accepted);
    /* The worker got T_BLOCK and every accepted frame, and nothing else. */
    CHECK(d.ws.frames_received == accepted + 1);
    CHECK(d.ws.bytes_received == accepted * SIZE);
    CHECK(d.ws.sends_refused == 0 && d.ws.restarts == 0);
    CHECK(mln_ipc_stats_get(child, &s) == 0);
    CHECK(s.frames_sent == accepted + 1 && s.bytes_sent == accepted * SIZE);
    CHECK(s.queued_frames == 0 && s.queued_bytes == 0);
    CHECK(s.queue_peak_bytes > 0 && s.queue_peak_bytes <= LIMIT);
    CHECK(s.sends_refused == refusals);
    CHECK(s.frames_received == 1 && s.bytes_received == sizeof(d));
    CHECK(s.restarts == 0);
    finished = 1;
    mln_event_break_set(ev);
}

static int first_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(child == NULL); /* one worker */
    child = f;
    return 0;
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: the worker did not report (accepted %llu)\n",
            (unsigned long long)accepted);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    mln_ipc_stats_t s0, s1, s2;
    long rss0, rss1;
    int k;
    close(blockpipe[0]);
    CHECK(mln_fork_iterate(ev, first_child, NULL) == 0 && child != NULL);
    child_pid = child->pid;
    CHECK(mln_event_timer_set(ev, valgrind() ? 240000 : 45000, NULL, watchdog) != NULL);
    CHECK(mln_ipc_stats_get(child, &s0) == 0);
    CHECK(s0.frames_sent == 0 && s0.queued_bytes == 0 && s0.sends_refused == 0);
    rss0 = rss_kb();

    CHECK(mln_ipc_master_send_prepare(ev, T_BLOCK, msg, 0, child) == 0);
    /* Paced for a while (the worker takes nothing), then queued up to the limit. */
    for (;;) {
        fill(msg, (uint32_t)accepted);
        if (mln_ipc_master_send_prepare(ev, T_DATA, msg, SIZE, child) != 0) break;
        ++accepted;
        CHECK(accepted * WIRE < LIMIT + ((mln_size_t)8 << 20)); /* refused by now */
    }
    CHECK(errno == EAGAIN);
    ++refusals;
    CHECK(accepted * WIRE > LIMIT);
    rss1 = rss_kb();

    CHECK(mln_ipc_stats_get(child, &s1) == 0);
    CHECK(s1.sends_refused == 1);
    CHECK(s1.frames_sent + s1.queued_frames == accepted + 1);
    CHECK(s1.queued_bytes <= LIMIT && s1.queued_bytes + WIRE > LIMIT);
    CHECK(s1.queue_peak_bytes >= s1.queued_bytes && s1.queue_peak_bytes <= LIMIT);
    CHECK(s1.frames_received == 0 && s1.restarts == 0);

    /* More refusals, of the same size and of a larger one (still below the maximum
     * message size): each is counted and changes nothing else. */
    for (k = 0; k < 4; ++k) {
        static unsigned char big[512 * 1024];
        errno = 0;
        if (k < 3) CHECK(mln_ipc_master_send_prepare(ev, T_DATA, msg, SIZE, child) == -1);
        else CHECK(mln_ipc_master_send_prepare(ev, T_DATA, big, sizeof(big), child) == -1);
        CHECK(errno == EAGAIN);
        ++refusals;
    }
    CHECK(mln_ipc_stats_get(child, &s2) == 0);
    CHECK(same_stats(&s1, &s2));
    CHECK(s2.sends_refused == refusals);

    fprintf(stderr, "accepted %llu x 64 KiB, queued %llu bytes (peak %llu), written %llu "
            "frames, VmRSS %ld -> %ld kB\n", (unsigned long long)accepted,
            (unsigned long long)s1.queued_bytes, (unsigned long long)s1.queue_peak_bytes,
            (unsigned long long)s1.frames_sent, rss0, rss1);
    if (!valgrind()) CHECK(rss1 - rss0 < (long)(LIMIT >> 10) + SLACK_KB);

    /* Let the worker read: it is told how many frames to expect. */
    CHECK(write(blockpipe[1], &accepted, sizeof(accepted)) == (ssize_t)sizeof(accepted));
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    close(blockpipe[1]);
}

static int global_init(void)
{
    ctest_workers(1);
    if (mln_ipc_max_message_set(MAX_MSG) != 0) return -1;
    if (mln_ipc_queue_limit_set(LIMIT) != 0) return -1;
    if (!mln_ipc_handler_register(T_BLOCK, NULL, worker_block, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(pipe(blockpipe) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
