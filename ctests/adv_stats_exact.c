/* Adversarial: the send counters stay exact whatever the writes look like (the per-chunk
 * frame counters, `ends`, and the scan of a chunk written in part, src/channel/tx.rs).
 * The master sends bursts of frames of every size (0 B to 1 MiB: small ones copied into
 * chunks, large ones spanning chunks, direct writes from an empty queue, frames that end
 * exactly at a chunk's end), one in five with a descriptor (an announcing frame of the
 * channel's own in front), to a worker that stalls in its handler so that writes end in
 * the middle of frames, chunks and announcing frames.
 * Checks, in the master, after every send and every millisecond while the queue drains:
 * - frames_sent + queued_frames == frames accepted (sends that returned 0), exactly;
 * - bytes_sent <= payload bytes accepted, equal once nothing is queued;
 * - fds_sent + descriptors still queued == descriptors accepted; all sent once drained.
 * Burst 1 (the worker resumes after a while): the worker's frames_received, bytes_received
 * and fds_received equal the master's frames_sent, bytes_sent and fds_sent, and every
 * frame came in order with its size and content.
 * Burst 2 (the worker stalls for good): the master kills it, waits until it is gone
 * (waitid WNOWAIT: nothing more can be written to it), takes its counters, and the
 * EXITED event's frames_lost equals queued_frames then (> 0), exactly. The replacement
 * then answers (a fresh channel: its counters start from zero). */
#define _GNU_SOURCE
#include "ctest.h"
#include <stdint.h>
#include <sys/wait.h>
#include "mln_event.h"

#define T_HELLO 9101
#define T_DATA 9102
#define T_FIN 9103
#define T_RESULT 9104
#define T_STALL 9105

#define BURST 240

static const size_t sizes[] = {0,     1,     3,      4,      100,    4088,   16375,
                               16376, 16384, 16385,  65528,  65536,  65537,  131077,
                               7,     300000, 1 << 20, 40000, 65519, 12};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static size_t size_of(uint32_t seq) { return sizes[(seq * 7u) % NSIZES]; }
static int has_fd(uint32_t seq) { return seq % 5 == 3; }

struct result {
    mln_ipc_stats_t ws;
    uint64_t frames, bytes, fds;
};

static int go_pipe[2];
static unsigned char *big;
static pid_t master_pid;

/* master */
static mln_event_t *mev;
static int phase; /* 1 burst 1, 2 burst 2 (stalled), 3 replacement, 4 done */
static uint64_t acc_frames, acc_bytes, acc_fds, base_frames;
static mln_fork_t *child;
static pid_t child_pid;
static int64_t lost_expected = -1;
static int exited_seen, checks, killed;
static int fd_to_send;

static void fill(unsigned char *p, size_t n, uint32_t seq)
{
    memset(p, (int)(seq & 0xff), n);
    if (n >= 4) memcpy(p, &seq, 4);
}

static void invariant(const char *where)
{
    mln_ipc_stats_t s;
    CHECK(mln_ipc_stats_get(child, &s) == 0);
    ++checks;
    if (s.frames_sent + s.queued_frames != acc_frames || s.bytes_sent > acc_bytes ||
        (s.queued_frames == 0 && s.bytes_sent != acc_bytes) || s.fds_sent > acc_fds) {
        fprintf(stderr, "%s: accepted %llu frames %llu bytes %llu fds; sent %llu frames %llu "
                "bytes %llu fds, queued %llu frames %llu bytes\n", where,
                (unsigned long long)acc_frames, (unsigned long long)acc_bytes,
                (unsigned long long)acc_fds, (unsigned long long)s.frames_sent,
                (unsigned long long)s.bytes_sent, (unsigned long long)s.fds_sent,
                (unsigned long long)s.queued_frames, (unsigned long long)s.queued_bytes);
        CHECK(0);
    }
}

static void send_one(uint32_t ty, uint32_t seq)
{
    size_t n = size_of(seq);
    int r;
    fill(big, n, seq);
    if (has_fd(seq))
        r = mln_ipc_master_send_fds_prepare(mev, ty, big, n, &fd_to_send, 1, child);
    else
        r = mln_ipc_master_send_prepare(mev, ty, big, n, child);
    CHECK(r == 0);
    ++acc_frames;
    acc_bytes += n;
    if (has_fd(seq)) ++acc_fds;
    invariant("after a send");
}

static void tick(mln_event_t *ev, void *data)
{
    (void)data;
    if ((phase == 1 || phase == 2) && !killed) {
        invariant("while draining");
        mln_event_timer_set(ev, 1, NULL, tick);
    }
}

static void release_worker(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    CHECK(write(go_pipe[1], "g", 1) == 1);
}

static void kill_worker(mln_event_t *ev, void *data)
{
    mln_ipc_stats_t s;
    siginfo_t si;
    (void)ev; (void)data;
    killed = 1;
    CHECK(kill(child_pid, SIGKILL) == 0);
    memset(&si, 0, sizeof(si));
    CHECK(waitid(P_PID, (id_t)child_pid, &si, WEXITED | WNOWAIT | __WALL) == 0);
    CHECK(mln_ipc_stats_get(child, &s) == 0);
    CHECK(s.frames_sent + s.queued_frames == acc_frames);
    lost_expected = (int64_t)s.queued_frames;
    if (lost_expected <= 0) fprintf(stderr, "nothing queued at the kill: no test\n");
    CHECK(lost_expected > 0);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)ev; (void)data;
    if (e->type == M_IPC_CHILD_EXITED) {
        CHECK(phase == 2 && f == child && e->pid == child_pid);
        if ((int64_t)e->frames_lost != lost_expected)
            fprintf(stderr, "frames_lost %llu, queued at the death %lld\n",
                    (unsigned long long)e->frames_lost, (long long)lost_expected);
        CHECK((int64_t)e->frames_lost == lost_expected);
        exited_seen = 1;
        phase = 3;
    }
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint32_t seq;
    (void)buf; (void)len; (void)u;
    mev = ev;
    child = f_ptr;
    child_pid = child->pid;
    acc_frames = acc_bytes = acc_fds = 0;
    if (phase == 0) {
        phase = 1;
        for (seq = 0; seq < BURST; ++seq) send_one(T_DATA, seq);
        send_one(T_FIN, 0);
        mln_event_timer_set(ev, 1, NULL, tick);
        mln_event_timer_set(ev, 50, NULL, release_worker);
    } else {
        mln_ipc_stats_t s;
        CHECK(phase == 3 && exited_seen);
        CHECK(mln_ipc_stats_get(child, &s) == 0);
        CHECK(s.frames_sent == 0 && s.queued_frames == 0 && s.frames_received == 1);
        phase = 4;
        mln_event_break_set(ev);
    }
}

static void master_result(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct result r;
    mln_ipc_stats_t s;
    uint32_t seq;
    (void)u;
    CHECK(phase == 1 && f_ptr == child && len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    CHECK(mln_ipc_stats_get(child, &s) == 0);
    CHECK(s.queued_frames == 0 && s.queued_bytes == 0);
    CHECK(s.frames_sent == acc_frames && s.bytes_sent == acc_bytes && s.fds_sent == acc_fds);
    CHECK(r.ws.frames_received == s.frames_sent && r.ws.bytes_received == s.bytes_sent);
    CHECK(r.ws.fds_received == s.fds_sent);
    CHECK(r.frames == acc_frames && r.bytes == acc_bytes && r.fds == acc_fds);
    /* Burst 2: the worker stalls for good at its first frame. */
    phase = 2;
    base_frames = s.frames_sent;
    acc_frames = s.frames_sent;
    acc_bytes = s.bytes_sent;
    acc_fds = s.fds_sent;
    send_one(T_STALL, 0);
    for (seq = 0; seq < BURST; ++seq) send_one(T_DATA, seq);
    mln_event_timer_set(ev, 1, NULL, tick);
    mln_event_timer_set(ev, 80, NULL, kill_worker);
}

/* worker */
static uint32_t w_next;
static uint64_t w_frames, w_bytes, w_fds;
static int w_stalled;

static void worker_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    size_t want = size_of(w_next), i;
    unsigned char *p = buf;
    char c;
    (void)ev; (void)f_ptr; (void)u;
    if (!w_stalled) {
        /* The first frame: stall until the master says go. */
        w_stalled = 1;
        while (read(go_pipe[0], &c, 1) < 0 && errno == EINTR) {
        }
    }
    if (len != want) fprintf(stderr, "worker: frame %u: %u bytes, %zu expected\n", w_next, len, want);
    CHECK(len == want);
    if (len >= 4) CHECK(memcmp(p, &w_next, 4) == 0);
    for (i = len >= 4 ? 4 : 0; i < len; ++i) CHECK(p[i] == (unsigned char)(w_next & 0xff));
    CHECK(mln_ipc_fds_count() == (mln_u32_t)has_fd(w_next));
    if (has_fd(w_next)) {
        int fd = mln_ipc_fd_take(0);
        CHECK(fd >= 0);
        close(fd);
        ++w_fds;
    }
    ++w_frames;
    w_bytes += len;
    ++w_next;
}

static void worker_fin(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct result r;
    (void)f_ptr; (void)u;
    CHECK(len == 0 && buf == buf);
    ++w_frames;
    CHECK(w_next == BURST);
    memset(&r, 0, sizeof(r));
    CHECK(mln_ipc_stats_get(NULL, &r.ws) == 0);
    r.frames = w_frames;
    r.bytes = w_bytes;
    r.fds = w_fds;
    CHECK(mln_ipc_worker_send_prepare(ev, T_RESULT, &r, sizeof(r)) == 0);
}

static void worker_stall(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)u;
    for (;;) pause();
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
}

static void worker_process(mln_event_t *ev)
{
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DATA, NULL, worker_data, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FIN, NULL, worker_fin, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_RESULT, master_result, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_STALL, NULL, worker_stall, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int p[2];
    master_pid = getpid();
    big = malloc(1 << 20);
    CHECK(big != NULL);
    CHECK(pipe(go_pipe) == 0);
    CHECK(pipe(p) == 0);
    fd_to_send = p[0];
    alarm(50);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(getpid() == master_pid);
    CHECK(phase == 4 && exited_seen);
    fprintf(stderr, "%d invariant checks\n", checks);
    return 0;
}
