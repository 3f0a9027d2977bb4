/* The writable callback resumes a stream (issue: backpressure). Queue limit 1 MiB, N
 * messages of 16 KiB each way, each sender sending as fast as the callback lets it: it
 * sends until a send is refused (-1, EAGAIN), tries once more (refused too: the same
 * episode), returns, and carries on from the refused message when
 * mln_ipc_writable_handler_set's handler says the peer drained.
 *   1. master -> worker: the worker's first handler blocks on a pipe until the master's
 *      first refusal, so the master is refused at least once (and then as often as it
 *      outruns the worker);
 *   2. worker -> master, the other way round (the master blocks in its first handler).
 * Checks: every message arrives in order, exactly once, with its content; the callback
 * runs only after a refusal and once per refusal episode (a flag set at the refusal and
 * cleared by the callback; callbacks == episodes at the end), on the loop of the refused
 * sender, with f == the child in the master and NULL in the worker, with its data, when the
 * queue is at most half the limit; sends_refused counts every refusal. */
#include <stdint.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_DATA1 7501   /* master -> worker */
#define T_DONE1 7502   /* worker -> master: struct report */
#define T_GO2 7503     /* master -> worker: start phase 2 */
#define T_DATA2 7504   /* worker -> master */
#define T_REPORT 7505  /* master -> worker: send your report */
#define T_DONE2 7506   /* worker -> master: struct report */
#define MAX_MSG ((mln_size_t)64 << 10)
#define LIMIT ((mln_size_t)1 << 20)
#define SIZE (16 * 1024)
#define N (getenv("CTEST_VALGRIND_LOGS") ? 400u : 4000u)

/* One direction's sender. */
struct sender {
    mln_fork_t *f;  /* the child (master side), NULL in the worker */
    int release_fd; /* the pipe that releases the blocked receiver at the first refusal */
    uint32_t next;  /* next sequence number to send */
    int pending;    /* refused, callback not yet run */
    unsigned episodes, refusals, callbacks;
};

struct report {
    uint32_t received;
    unsigned episodes, refusals, callbacks;
    mln_ipc_stats_t st;
};

static int p_m2w[2], p_w2m[2];
static pid_t master_pid;
static mln_fork_t *child;
static struct sender snd; /* master: phase 1; worker: phase 2 */
static uint32_t received; /* master: phase 2; worker: phase 1 */
static int finished;
static char magic[] = "writable";
static unsigned char msg[SIZE];

static void fill(unsigned char *p, uint32_t seq)
{
    size_t i;
    memcpy(p, &seq, 4);
    for (i = 4; i < SIZE; ++i) p[i] = (unsigned char)(i * 13 + seq);
}

/* Takes message `buf`: the next one, intact. */
static void take(const void *buf, mln_u32_t len)
{
    static unsigned char want[SIZE];
    uint32_t seq;
    CHECK(len == SIZE);
    memcpy(&seq, buf, 4);
    CHECK(seq == received);
    fill(want, seq);
    CHECK(memcmp(buf, want, SIZE) == 0);
    ++received;
}

/* Blocks until the peer's first refusal (one byte on `fd`). */
static void wait_release(int fd)
{
    char c;
    ssize_t n;
    do n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) exit(3); /* the peer is gone */
    CHECK(n == 1);
}

static int send_data(mln_event_t *ev, struct sender *s, mln_u32_t type)
{
    fill(msg, s->next);
    if (s->f != NULL) return mln_ipc_master_send_prepare(ev, type, msg, SIZE, s->f);
    return mln_ipc_worker_send_prepare(ev, type, msg, SIZE);
}

/* Sends until refused or done. */
static void pump(mln_event_t *ev, struct sender *s, mln_u32_t type)
{
    CHECK(!s->pending);
    while (s->next < N) {
        if (send_data(ev, s, type) == 0) {
            ++s->next;
            continue;
        }
        CHECK(errno == EAGAIN);
        /* Once more in the same episode: refused as well, no second callback. */
        errno = 0;
        CHECK(send_data(ev, s, type) == -1 && errno == EAGAIN);
        s->refusals += 2;
        s->pending = 1;
        if (s->episodes++ == 0) CHECK(write(s->release_fd, "g", 1) == 1);
        return;
    }
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    mln_ipc_stats_t st;
    CHECK(data == magic);
    CHECK(snd.pending); /* only after a refusal, once per episode */
    if (getpid() == master_pid) CHECK(f == child && f == snd.f);
    else CHECK(f == NULL);
    CHECK(mln_ipc_stats_get(f, &st) == 0);
    CHECK(st.queued_bytes <= LIMIT / 2);
    CHECK(st.sends_refused == snd.refusals);
    snd.pending = 0;
    ++snd.callbacks;
    pump(ev, &snd, f != NULL ? T_DATA1 : T_DATA2);
}

static void report(struct report *r, mln_fork_t *f)
{
    memset(r, 0, sizeof(*r));
    r->received = received;
    r->episodes = snd.episodes;
    r->refusals = snd.refusals;
    r->callbacks = snd.callbacks;
    CHECK(mln_ipc_stats_get(f, &r->st) == 0);
}

/* Worker. */
static void worker_data1(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct report r;
    (void)f_ptr; (void)u;
    if (received == 0) wait_release(p_m2w[0]);
    take(buf, len);
    if (received < N) return;
    report(&r, NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE1, &r, sizeof(r)) == 0);
}

static void worker_go2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    CHECK(received == N && snd.episodes == 0 && snd.next == 0);
    snd.f = NULL;
    snd.release_fd = p_w2m[1];
    pump(ev, &snd, T_DATA2);
}

static void worker_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct report r;
    (void)f_ptr; (void)buf; (void)len; (void)u;
    report(&r, NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE2, &r, sizeof(r)) == 0);
}

/* Master. */
static void master_done1(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct report r;
    mln_ipc_stats_t st;
    (void)u;
    CHECK(f_ptr == child && len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    CHECK(r.received == N);
    CHECK(r.episodes == 0 && r.callbacks == 0 && r.st.sends_refused == 0); /* worker: not refused */
    CHECK(r.st.frames_received == N && r.st.bytes_received == (mln_u64_t)N * SIZE);
    CHECK(snd.next == N && !snd.pending);
    CHECK(snd.episodes >= 1 && snd.callbacks == snd.episodes);
    CHECK(mln_ipc_stats_get(child, &st) == 0);
    CHECK(st.frames_sent == N && st.queued_bytes == 0 && st.sends_refused == snd.refusals);
    fprintf(stderr, "m2w: %u x 16 KiB, %u refusal episodes, %u callbacks\n", N, snd.episodes,
            snd.callbacks);
    CHECK(mln_ipc_master_send_prepare(ev, T_GO2, msg, 0, child) == 0);
}

static void master_data2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)u;
    CHECK(f_ptr == child);
    if (received == 0) wait_release(p_w2m[0]);
    take(buf, len);
    if (received == N) CHECK(mln_ipc_master_send_prepare(ev, T_REPORT, msg, 0, child) == 0);
}

static void master_done2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct report r;
    mln_ipc_stats_t st;
    (void)u;
    CHECK(f_ptr == child && len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    CHECK(received == N);
    CHECK(r.episodes >= 1 && r.callbacks == r.episodes);
    CHECK(r.st.sends_refused == r.refusals && r.refusals == 2 * r.episodes);
    CHECK(r.st.frames_sent == N + 1 && r.st.queued_bytes == 0); /* the data and T_DONE1 */
    CHECK(mln_ipc_stats_get(child, &st) == 0);
    CHECK(st.frames_received == N + 2); /* T_DONE1, the data, this one */
    CHECK(snd.callbacks == snd.episodes && !snd.pending); /* none in the master since */
    fprintf(stderr, "w2m: %u x 16 KiB, %u refusal episodes, %u callbacks\n", N, r.episodes,
            r.callbacks);
    finished = 1;
    mln_event_break_set(ev);
}

static int first_child(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(child == NULL);
    child = f;
    return 0;
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: no end (phase 1 sent %u, %u episodes, %u callbacks; phase 2 "
            "received %u)\n", snd.next, snd.episodes, snd.callbacks, received);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    close(p_m2w[0]);
    close(p_w2m[1]);
    CHECK(mln_fork_iterate(ev, first_child, NULL) == 0 && child != NULL);
    CHECK(mln_event_timer_set(ev, getenv("CTEST_VALGRIND_LOGS") ? 240000 : 45000, NULL,
                              watchdog) != NULL);
    snd.f = child;
    snd.release_fd = p_m2w[1];
    pump(ev, &snd, T_DATA1);
    CHECK(snd.pending); /* the worker is blocked: refused before the end */
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    close(p_m2w[1]);
    close(p_w2m[0]);
    memset(&snd, 0, sizeof(snd)); /* the master's, inherited */
}

static int global_init(void)
{
    static const struct { mln_u32_t type; ipc_handler m, w; } h[] = {
        {T_DATA1, NULL, worker_data1}, {T_DONE1, master_done1, NULL},
        {T_GO2, NULL, worker_go2},     {T_DATA2, master_data2, NULL},
        {T_REPORT, NULL, worker_report}, {T_DONE2, master_done2, NULL},
    };
    size_t i;
    ctest_workers(1);
    if (mln_ipc_max_message_set(MAX_MSG) != 0) return -1;
    if (mln_ipc_queue_limit_set(LIMIT) != 0) return -1;
    mln_ipc_writable_handler_set(writable, magic);
    for (i = 0; i < sizeof(h) / sizeof(h[0]); ++i)
        if (!mln_ipc_handler_register(h[i].type, h[i].m, h[i].w, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    master_pid = getpid();
    CHECK(pipe(p_m2w) == 0 && pipe(p_w2m) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
