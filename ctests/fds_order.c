/* Descriptors through the channel (issue 23): descriptors keep their frames in a stream,
 * both directions at once, one worker. Master and worker each send, in one burst (the
 * socket fills; most of the stream waits in the sender's queue), N frames of 64 B and
 * 1 MiB; every K-th frame carries 1 to 3 descriptors, the write ends of pipes whose read
 * ends the sender keeps (sender's own write ends closed at once). The receiver checks each
 * frame in order (sequence number, content), that exactly the frames sent with descriptors
 * have any, as many as were sent, none truncated, and writes (sequence number, index) into
 * each pipe it got, then closes it. At the end each sender finds in every pipe of frame
 * i, index k exactly (i, k) followed by end of file (every write end closed: its own, the
 * library's copy, the receiver's), and each side has as many open descriptors as before
 * the stream (nothing received was left open, no copy was left behind); the stats count
 * the descriptors both ways. */
#define _GNU_SOURCE
#include <stdint.h>
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_M2W 8401   /* master -> worker: the stream */
#define T_W2M 8402   /* worker -> master: the stream */
#define T_MDONE 8403 /* master -> worker: the master got the whole stream */
#define T_WDONE 8404 /* worker -> master: the worker got it too and checked its pipes */
#define N 300
#define K 4
#define BIG (1u << 20)
#define SMALL 64u
#define MAX_MSG ((mln_size_t)2 << 20)

struct hdr {
    uint32_t seq, nfds;
};

static unsigned char out[BIG], want[BIG];
static int rd[N][3];         /* this process's read ends of the pipes it sent */
static uint32_t next_seq;    /* the next frame expected from the peer */
static int base, finished;
static uint64_t fds_out, fds_in; /* descriptors sent, received */

static uint32_t nfds_of(uint32_t i) { return i % K == 1 ? 1 + (i / K) % 3 : 0; }
static uint32_t size_of(uint32_t i) { return i % 6 == 2 || i % 11 == 5 ? BIG : SMALL; }

static void fill(unsigned char *p, uint32_t seq, uint32_t len)
{
    struct hdr h = {seq, nfds_of(seq)};
    uint32_t j;
    for (j = sizeof(h); j < len; ++j) p[j] = (unsigned char)(j * 13 + seq);
    memcpy(p, &h, sizeof(h));
}

/* The burst of this side: `f` the child (master), or NULL (worker). */
static void burst(mln_event_t *ev, mln_fork_t *f)
{
    uint32_t i, k;
    for (i = 0; i < N; ++i) {
        uint32_t n = nfds_of(i), len = size_of(i);
        int fds[3], p[2], r;
        for (k = 0; k < n; ++k) {
            CHECK(pipe(p) == 0);
            rd[i][k] = p[0];
            fds[k] = p[1];
        }
        fill(out, i, len);
        if (f != NULL) {
            if (n > 0) r = mln_ipc_master_send_fds_prepare(ev, T_M2W, out, len, fds, n, f);
            else r = mln_ipc_master_send_prepare(ev, T_M2W, out, len, f);
        } else {
            if (n > 0) r = mln_ipc_worker_send_fds_prepare(ev, T_W2M, out, len, fds, n);
            else r = mln_ipc_worker_send_prepare(ev, T_W2M, out, len);
        }
        CHECK(r == 0);
        for (k = 0; k < n; ++k) close(fds[k]);
        fds_out += n;
    }
}

/* One frame of the peer's stream. */
static void receive(void *buf, mln_u32_t len)
{
    struct hdr h;
    uint32_t k;
    CHECK(len >= sizeof(h));
    memcpy(&h, buf, sizeof(h));
    if (h.seq != next_seq) fprintf(stderr, "frame %u, expected %u\n", h.seq, next_seq);
    CHECK(h.seq == next_seq);
    CHECK(len == size_of(h.seq) && h.nfds == nfds_of(h.seq));
    fill(want, h.seq, len);
    CHECK(memcmp(buf, want, len) == 0);
    if (mln_ipc_fds_count() != h.nfds)
        fprintf(stderr, "pid %d: frame %u (%u bytes) came with %u descriptor(s), sent with %u\n",
                (int)getpid(), h.seq, len, mln_ipc_fds_count(), h.nfds);
    CHECK(mln_ipc_fds_count() == h.nfds);
    CHECK(mln_ipc_fds_truncated() == 0);
    for (k = 0; k < h.nfds; ++k) {
        uint32_t mark[2] = {h.seq, k};
        int fd = mln_ipc_fd_take(k);
        CHECK(fd >= 0 && fd_cloexec(fd));
        CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY);
        CHECK(write(fd, mark, sizeof(mark)) == (ssize_t)sizeof(mark));
        close(fd);
    }
    errno = 0;
    CHECK(mln_ipc_fd_take(h.nfds) == -1 && errno == ENOENT);
    fds_in += h.nfds;
    ++next_seq;
}

/* Every pipe this side sent: written once by the receiver with its own (frame, index),
 * then end of file. Closes them; the open descriptors are as before the stream. */
static void check_pipes(void)
{
    uint32_t i, k;
    for (i = 0; i < N; ++i)
        for (k = 0; k < nfds_of(i); ++k) {
            uint32_t mark[2] = {i, k};
            pipe_expect(rd[i][k], mark, sizeof(mark));
            pipe_expect_eof(rd[i][k]);
            close(rd[i][k]);
        }
    CHECK(count_fds() == base);
}

static void check_stats(mln_fork_t *f)
{
    mln_ipc_stats_t s = stats_of(f);
    if (s.fds_sent != fds_out || s.fds_received != fds_in)
        fprintf(stderr, "pid %d: fds_sent %llu (sent %llu), fds_received %llu (got %llu)\n",
                (int)getpid(), (unsigned long long)s.fds_sent, (unsigned long long)fds_out,
                (unsigned long long)s.fds_received, (unsigned long long)fds_in);
    CHECK(s.fds_sent == fds_out && s.fds_received == fds_in && s.fds_lost == 0);
    CHECK(s.frames_received >= N && s.frames_sent >= N);
    /* A burst: most of the stream waited in the queue (the socket was full). */
    fprintf(stderr, "pid %d: queue peak %llu bytes, paced %llu ns\n", (int)getpid(),
            (unsigned long long)s.queue_peak_bytes, (unsigned long long)s.paced_ns);
    CHECK(s.queue_peak_bytes > (uint64_t)8 << 20);
}

static void worker_stream(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    receive(buf, len);
}

static void master_stream(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)udata_ptr;
    receive(buf, len);
    if (next_seq == N) CHECK(mln_ipc_master_send_prepare(ev, T_MDONE, NULL, 0, f_ptr) == 0);
}

/* Comes after the master's whole stream, and after the master handled the worker's. */
static void worker_mdone(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(next_seq == N);
    check_pipes();
    check_stats(NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_WDONE, NULL, 0) == 0);
}

static void master_wdone(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    CHECK(next_seq == N);
    check_pipes();
    check_stats(f_ptr);
    finished = 1;
    mln_event_break_set(ev);
}

static int start(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    burst(ev, f);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    base = count_fds();
    CHECK(mln_fork_iterate(ev, start, NULL) == 0);
}

static void worker_process(mln_event_t *ev)
{
    base = count_fds();
    burst(ev, NULL);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (mln_ipc_max_message_set(MAX_MSG) != 0) return -1;
    if (!mln_ipc_handler_register(T_M2W, NULL, worker_stream, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_W2M, master_stream, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MDONE, NULL, worker_mdone, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WDONE, master_wdone, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
