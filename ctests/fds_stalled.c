/* Descriptors through the channel (issue 23): workers that stop reading, and the per-peer
 * descriptor limit (mln_ipc_fds_limit_set(64)). Two workers, A and B, each blocked in a
 * handler (reading a pipe of its own) behind 8 MiB of plain frames, so that what the master
 * sends next waits in its queue with its descriptors.
 * - B: frames of 5 descriptors are accepted until the next would go beyond 64 queued (12
 *   frames, 60), which is refused with EAGAIN; a frame of 4 then fits (64 exactly), one of
 *   1 is refused again.
 * - A: with none queued, a frame of 253 descriptors (above the limit) is accepted; then one
 *   of 1 is refused with EAGAIN.
 * - Each refusal queues nothing: the stats are as before but for sends_refused (+1), and
 *   the master has as many descriptors open as before (the library's copies closed).
 * - Then both workers read again: the writable handler fires once for each, which sends the
 *   refused frames (and one more of 5 to B) and an end marker; every frame arrives once, in
 *   order, with its own descriptors (all copies of one pipe's write end per frame: the
 *   worker checks they are one file and writes the frame's number into it); the master
 *   reads each number then end of file in every pipe, its stats count what was sent, and
 *   at the end it has as many descriptors open as before. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_BLOCK 8601 /* master -> worker: block (payload: which pipe) */
#define T_FILL 8602  /* master -> worker: 1 MiB, no descriptors */
#define T_FD 8603    /* master -> worker: struct frame + descriptors */
#define T_END 8604   /* master -> worker */
#define T_DONE 8605  /* worker -> master: struct report */
#define FDS_LIMIT 64
#define FILL (1u << 20)
#define FILLS 8
#define MAXSEQ 16

struct frame {
    uint32_t seq, nfds;
};

struct report {
    uint32_t frames, fills;
    uint64_t fds;
    mln_ipc_stats_t s;
};

static int bp[2][2]; /* the block pipes of A (0) and B (1) */
static unsigned char fillbuf[FILL];

/* Master. */
struct peer {
    mln_fork_t *f;
    int pipes[MAXSEQ]; /* read end of frame seq's pipe */
    uint32_t nfds[MAXSEQ];
    uint32_t next;       /* next seq */
    int writable, done;
    uint64_t fds_sent, refused;
};
static struct peer peers[2];
static int base, finished;

/* Worker. */
static uint32_t w_next, w_fills;
static uint64_t w_fds;

static void worker_block(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int which;
    char c;
    ssize_t n;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(which));
    memcpy(&which, buf, sizeof(which));
    CHECK(which == 0 || which == 1);
    do n = read(bp[which][0], &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) exit(3); /* the master is gone */
    CHECK(n == 1);
}

static void worker_fill(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)udata_ptr;
    CHECK(len == FILL && mln_ipc_fds_count() == 0);
    CHECK(w_next == 0); /* before every frame with descriptors */
    ++w_fills;
}

static void worker_fd(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct frame fr;
    uint32_t k;
    int first = -1;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(fr));
    memcpy(&fr, buf, sizeof(fr));
    CHECK(w_fills == FILLS);
    if (fr.seq != w_next) fprintf(stderr, "worker: frame %u, expected %u\n", fr.seq, w_next);
    CHECK(fr.seq == w_next);
    CHECK(mln_ipc_fds_count() == fr.nfds && mln_ipc_fds_truncated() == 0);
    for (k = 0; k < fr.nfds; ++k) {
        int fd = mln_ipc_fd_take(k);
        CHECK(fd >= 0 && fd_cloexec(fd));
        if (first < 0) {
            first = fd;
            continue;
        }
        CHECK(same_file(fd, first));
        close(fd);
    }
    CHECK(write(first, &fr.seq, sizeof(fr.seq)) == (ssize_t)sizeof(fr.seq));
    close(first);
    w_fds += fr.nfds;
    ++w_next;
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct report r;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    memset(&r, 0, sizeof(r));
    r.frames = w_next;
    r.fills = w_fills;
    r.fds = w_fds;
    r.s = stats_of(NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &r, sizeof(r)) == 0);
}

/* Sends frame `p->next` with `n` copies of a new pipe's write end: 0 (accepted: the next
 * frame gets the next number) or the errno of a refusal, after checking that the refusal
 * changed nothing but sends_refused. */
static int send_fd_frame(mln_event_t *ev, struct peer *p, uint32_t n)
{
    static int fds[253];
    struct frame fr = {p->next, n};
    mln_ipc_stats_t s0, s1;
    int pp[2], n0, r, e;
    uint32_t k;
    CHECK(p->next < MAXSEQ);
    CHECK(pipe(pp) == 0);
    for (k = 0; k < n; ++k) fds[k] = pp[1];
    s0 = stats_of(p->f);
    n0 = count_fds();
    errno = 0;
    r = mln_ipc_master_send_fds_prepare(ev, T_FD, &fr, sizeof(fr), fds, n, p->f);
    e = errno;
    close(pp[1]);
    if (r == 0) {
        CHECK(count_fds() == n0 - 1 + (int)n); /* the library's copies, less ours */
        p->pipes[p->next] = pp[0];
        p->nfds[p->next] = n;
        p->fds_sent += n;
        ++p->next;
        return 0;
    }
    close(pp[0]);
    CHECK(r == -1);
    CHECK(count_fds() == n0 - 2);
    s1 = stats_of(p->f);
    CHECK(s1.sends_refused == s0.sends_refused + 1);
    s1.sends_refused = s0.sends_refused;
    CHECK(memcmp(&s0, &s1, sizeof(s0)) == 0);
    ++p->refused;
    return e;
}

static struct peer *peer_of(mln_fork_t *f)
{
    if (f == peers[0].f) return &peers[0];
    CHECK(f == peers[1].f);
    return &peers[1];
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct peer *p;
    (void)data;
    CHECK(f != NULL);
    p = peer_of(f);
    CHECK(!p->writable); /* once */
    p->writable = 1;
    if (p == &peers[0]) {
        CHECK(send_fd_frame(ev, p, 1) == 0); /* the one refused */
    } else {
        CHECK(send_fd_frame(ev, p, 1) == 0); /* the one refused */
        CHECK(send_fd_frame(ev, p, 5) == 0);
    }
    CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct peer *p = peer_of(f_ptr);
    struct report r;
    mln_ipc_stats_t s;
    uint32_t i;
    (void)udata_ptr;
    CHECK(p->writable && !p->done);
    CHECK(len == sizeof(r));
    memcpy(&r, buf, sizeof(r));
    CHECK(r.fills == FILLS && r.frames == p->next && r.fds == p->fds_sent);
    CHECK(r.s.fds_received == p->fds_sent);
    for (i = 0; i < p->next; ++i) {
        pipe_expect(p->pipes[i], &i, sizeof(i));
        pipe_expect_eof(p->pipes[i]);
        close(p->pipes[i]);
    }
    s = stats_of(f_ptr);
    CHECK(s.fds_sent == p->fds_sent && s.sends_refused == p->refused && s.fds_lost == 0);
    p->done = 1;
    if (peers[0].done && peers[1].done) {
        CHECK(count_fds() == base);
        finished = 1;
        mln_event_break_set(ev);
    }
}

static int find(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int *n = data;
    (void)ev;
    CHECK(*n < 2);
    peers[(*n)++].f = f;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    int n = 0, i, k;
    close(bp[0][0]);
    close(bp[1][0]);
    base = count_fds();
    CHECK(mln_fork_iterate(ev, find, &n) == 0 && n == 2);
    for (i = 0; i < 2; ++i) {
        CHECK(mln_ipc_master_send_prepare(ev, T_BLOCK, &i, sizeof(i), peers[i].f) == 0);
        for (k = 0; k < FILLS; ++k)
            CHECK(mln_ipc_master_send_prepare(ev, T_FILL, fillbuf, FILL, peers[i].f) == 0);
    }
    /* B: 12 x 5 accepted, the 13th refused; 4 more fit, 1 more does not. */
    for (k = 0; k < FDS_LIMIT / 5; ++k) CHECK(send_fd_frame(ev, &peers[1], 5) == 0);
    CHECK(send_fd_frame(ev, &peers[1], 5) == EAGAIN);
    CHECK(send_fd_frame(ev, &peers[1], FDS_LIMIT % 5) == 0);
    CHECK(send_fd_frame(ev, &peers[1], 1) == EAGAIN);
    /* A: none queued: 253 go in whatever the limit; then 1 is refused. */
    CHECK(send_fd_frame(ev, &peers[0], 253) == 0);
    CHECK(send_fd_frame(ev, &peers[0], 1) == EAGAIN);
    /* Nothing written yet: the descriptors are all in the master's queues. */
    CHECK(stats_of(peers[0].f).fds_sent == 0 && stats_of(peers[1].f).fds_sent == 0);
    /* Let them read. */
    CHECK(write(bp[0][1], "x", 1) == 1 && write(bp[1][1], "x", 1) == 1);
    close(bp[0][1]);
    close(bp[1][1]);
    base -= 2;
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    close(bp[0][1]);
    close(bp[1][1]);
}

static int global_init(void)
{
    ctest_workers(2);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    mln_ipc_writable_handler_set(writable, NULL);
    if (mln_ipc_fds_limit_set(FDS_LIMIT) != 0) return -1;
    if (!mln_ipc_handler_register(T_BLOCK, NULL, worker_block, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FILL, NULL, worker_fill, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_FD, NULL, worker_fd, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, NULL, worker_end, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    CHECK(pipe(bp[0]) == 0 && pipe(bp[1]) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
