/* melon-ipc benchmark: melon-ipc against the raw limit of this machine, in one run.
 *
 *   ipc_bench                      run every figure BENCH_REPS times (default 5) and print
 *                                  the table; the last line is machine-readable key=value
 *   ipc_bench one KIND SIZE COUNT  one measurement in this process (used by the driver)
 *
 * KIND is one of
 *   raw      two processes on a socketpair: the sender encodes frames into a 64 KiB buffer
 *            and writes it whenever it is full, the receiver parses frames out of 64 KiB
 *            reads (blocking I/O, no library);
 *   rawpp    ping-pong of one SIZE-byte frame with blocking read/write;
 *   w2m      melon-ipc streaming, worker to master;
 *   m2w      melon-ipc streaming, master to worker;
 *   pp       melon-ipc ping-pong, master to worker and back;
 *   fanout   melon-ipc streaming, master to 4 workers (COUNT messages in total).
 * A measurement prints one line: ns=... msgs=... bytes=... rss_send=KiB rss_recv=KiB.
 *
 * Streaming senders use a credit window, as a real application would: at most WINDOW bytes
 * of messages are queued ahead of the receiver's acknowledgements (one ack every quarter
 * window), so the sender's queue holds only what it chose to queue. Each message carries
 * its sequence number in its first 4 bytes; receivers check every sequence number and the
 * whole content of the last message. Every figure is timed in one process with
 * CLOCK_MONOTONIC. Environment: BENCH_REPS (5), BENCH_SCALE (1.0, multiplies the counts),
 * BENCH_ONLY (a comma-separated list of figure names, e.g. "raw64,w2m64"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_GO   6000 /* master -> worker: start sending */
#define T_DATA 6001 /* the measured messages */
#define T_ACK  6002 /* receiver -> sender: u64 messages received so far */
#define T_DONE 6003 /* worker -> master: everything received */
#define T_PING 6004
#define T_PONG 6005

#define RAW_CHUNK (64 * 1024)
#define WINDOW_BYTES (1u << 20)
#define FANOUT 4
#define MAX_REPS 51

static void die(const char *what)
{
    fprintf(stderr, "ipc_bench (pid %d): %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(2);
}

static void fail(const char *what)
{
    fprintf(stderr, "ipc_bench (pid %d): check failed: %s\n", (int)getpid(), what);
    exit(3);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Peak resident set of a process in KiB (VmHWM), or -1. */
static long peak_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1) break;
    fclose(f);
    return v;
}

/* ---------------------------------------------------------------------------------------
 * Message content shared by both implementations
 * ------------------------------------------------------------------------------------- */

static size_t msg_size;
static long msg_count;
static unsigned char *msg; /* the payload being sent; bytes 0..3 are the sequence number */

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 3); }

static void make_msg(void)
{
    size_t i;
    msg = malloc(msg_size < 4 ? 4 : msg_size);
    if (msg == NULL) die("malloc");
    for (i = 0; i < msg_size; ++i) msg[i] = pattern(i);
}

static void set_seq(unsigned char *p, uint32_t seq) { memcpy(p, &seq, 4); }

/* Checks one received payload: its sequence number, and the whole content of the last. */
static void check_msg(const unsigned char *p, size_t len, long seq, long count)
{
    uint32_t got;
    size_t i;
    if (len != msg_size) fail("payload length");
    memcpy(&got, p, 4);
    if (got != (uint32_t)seq) fail("sequence number (order or exactly-once)");
    if (seq == count - 1)
        for (i = 4; i < len; ++i)
            if (p[i] != pattern(i)) fail("content of the last message");
}

/* ---------------------------------------------------------------------------------------
 * Raw limit: blocking I/O on a socketpair, no library
 * ------------------------------------------------------------------------------------- */

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (r == 0) fail("unexpected end of stream");
        c += r;
        n -= (size_t)r;
    }
}

static void frame_header(unsigned char h[8], uint32_t type, size_t len)
{
    uint32_t l = (uint32_t)(4 + len);
    memcpy(h, &l, 4);
    memcpy(h + 4, &type, 4);
}

/* The raw sender's 64 KiB staging buffer: frames are copied in and written when full. */
static unsigned char raw_out[RAW_CHUNK];
static size_t raw_pos;

static void raw_emit(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t k = RAW_CHUNK - raw_pos;
        if (k > n) k = n;
        memcpy(raw_out + raw_pos, p, k);
        raw_pos += k;
        p += k;
        n -= k;
        if (raw_pos == RAW_CHUNK) {
            write_all(fd, raw_out, RAW_CHUNK);
            raw_pos = 0;
        }
    }
}

static void raw_sender(int fd)
{
    unsigned char h[8];
    char go;
    long i;
    read_all(fd, &go, 1);
    frame_header(h, T_DATA, msg_size);
    for (i = 0; i < msg_count; ++i) {
        set_seq(msg, (uint32_t)i);
        raw_emit(fd, h, 8);
        raw_emit(fd, msg, msg_size);
    }
    if (raw_pos > 0) write_all(fd, raw_out, raw_pos);
}

/* Receiver: 64 KiB reads into a buffer with room for two whole frames, frames parsed in
 * place; the unparsed tail moves to the front only when less than one read's room is
 * left. */
static void raw_receiver(int fd)
{
    size_t frame = 8 + msg_size;
    size_t cap = 2 * frame + 2 * RAW_CHUNK;
    unsigned char *buf = malloc(cap);
    size_t start = 0, end = 0;
    long seq = 0;
    if (buf == NULL) die("malloc");
    while (seq < msg_count) {
        ssize_t r;
        if (cap - end < RAW_CHUNK) {
            memmove(buf, buf + start, end - start);
            end -= start;
            start = 0;
        }
        r = read(fd, buf + end, RAW_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (r == 0) fail("unexpected end of stream");
        end += (size_t)r;
        while (end - start >= 8) {
            uint32_t len, type;
            memcpy(&len, buf + start, 4);
            if (end - start < 4 + (size_t)len) break;
            memcpy(&type, buf + start + 4, 4);
            if (type != T_DATA) fail("frame type");
            check_msg(buf + start + 8, len - 4, seq, msg_count);
            ++seq;
            start += 4 + (size_t)len;
        }
        if (start == end) start = end = 0;
    }
    free(buf);
}

static void raw_pingpong_child(int fd)
{
    size_t frame = 8 + msg_size;
    unsigned char *b = malloc(frame);
    long i;
    if (b == NULL) die("malloc");
    for (i = 0; i < msg_count; ++i) {
        read_all(fd, b, frame);
        write_all(fd, b, frame);
    }
    free(b);
}

static void raw_pingpong_parent(int fd)
{
    size_t frame = 8 + msg_size;
    unsigned char *b = malloc(frame), *in = malloc(frame);
    long i;
    if (b == NULL || in == NULL) die("malloc");
    frame_header(b, T_PING, msg_size);
    memcpy(b + 8, msg, msg_size);
    for (i = 0; i < msg_count; ++i) {
        set_seq(b + 8, (uint32_t)i);
        write_all(fd, b, frame);
        read_all(fd, in, frame);
        check_msg(in + 8, frame - 8, i, msg_count);
    }
    free(b);
    free(in);
}

static int run_raw(int pingpong)
{
    int sv[2];
    pid_t pid;
    long long t0, t1;
    int status;
    struct rusage ru;
    long rss_recv;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(sv[0]);
        if (pingpong) raw_pingpong_child(sv[1]);
        else raw_sender(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    t0 = now_ns();
    if (pingpong) {
        raw_pingpong_parent(sv[0]);
    } else {
        write_all(sv[0], "g", 1);
        raw_receiver(sv[0]);
    }
    t1 = now_ns();
    rss_recv = peak_rss_kib(getpid());
    if (wait4(pid, &status, 0, &ru) < 0) die("wait4");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("raw child failed");
    printf("ns=%lld msgs=%ld bytes=%lld rss_send=%ld rss_recv=%ld\n", t1 - t0, msg_count,
           (long long)msg_count * (long long)msg_size, ru.ru_maxrss, rss_recv);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * melon-ipc, through the C API exactly as a Melon program uses it
 * ------------------------------------------------------------------------------------- */

enum kind { K_W2M, K_M2W, K_PP, K_FANOUT };
static enum kind kind;
static long long t_start;
static long window_msgs, ack_every;

/* Sending side of one stream. */
struct stream {
    mln_fork_t *f; /* master side: the worker; NULL in a worker */
    pid_t pid;
    long count, sent, acked, received;
};
static struct stream streams[FANOUT];
static int n_streams, n_done;
static struct stream wstream; /* a worker's own stream (sending or receiving) */

static int send_one(mln_event_t *ev, struct stream *s, mln_u32_t type, void *p, size_t n)
{
    if (s->f != NULL) return mln_ipc_master_send_prepare(ev, type, p, n, s->f);
    return mln_ipc_worker_send_prepare(ev, type, p, n);
}

/* Queues messages while the window allows. */
static void fill_window(mln_event_t *ev, struct stream *s)
{
    while (s->sent < s->count && s->sent - s->acked < window_msgs) {
        set_seq(msg, (uint32_t)s->sent);
        if (send_one(ev, s, T_DATA, msg, msg_size) != 0) fail("send_prepare");
        ++s->sent;
    }
}

/* Receiving side: check, count, acknowledge; returns 1 on the last message. */
static int take_data(mln_event_t *ev, struct stream *s, const void *buf, mln_u32_t len)
{
    uint64_t n;
    check_msg(buf, len, s->received, s->count);
    n = (uint64_t)++s->received;
    if (s->received == s->count) return 1;
    if (s->received % ack_every == 0)
        if (send_one(ev, s, T_ACK, &n, sizeof(n)) != 0) fail("send ack");
    return 0;
}

static struct stream *stream_of(void *f_ptr)
{
    int i;
    for (i = 0; i < n_streams; ++i)
        if (streams[i].f == (mln_fork_t *)f_ptr) return &streams[i];
    fail("message from an unknown worker");
    return NULL;
}

static void finish(mln_event_t *ev)
{
    long long t1 = now_ns();
    long rss_m = peak_rss_kib(getpid()), rss_w = 0;
    int i;
    for (i = 0; i < n_streams; ++i) {
        long r = peak_rss_kib(streams[i].pid);
        if (r > rss_w) rss_w = r;
    }
    long long msgs = msg_count;
    printf("ns=%lld msgs=%lld bytes=%lld rss_send=%ld rss_recv=%ld\n", t1 - t_start, msgs,
           msgs * (long long)msg_size, kind == K_W2M ? rss_w : rss_m,
           kind == K_W2M ? rss_m : rss_w);
    fflush(stdout);
    mln_event_break_set(ev);
}

/* Master handlers. */
static void m_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)u;
    if (take_data(ev, stream_of(f_ptr), buf, len)) finish(ev);
}

static void m_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct stream *s = stream_of(f_ptr);
    uint64_t n;
    (void)u;
    if (len != sizeof(n)) fail("ack length");
    memcpy(&n, buf, sizeof(n));
    s->acked = (long)n;
    fill_window(ev, s);
}

static void m_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (++n_done == n_streams) finish(ev);
}

static void m_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct stream *s = stream_of(f_ptr);
    (void)u;
    check_msg(buf, len, s->received, s->count);
    if (++s->received == s->count) {
        finish(ev);
        return;
    }
    set_seq(msg, (uint32_t)s->received);
    if (send_one(ev, s, T_PING, msg, msg_size) != 0) fail("send ping");
}

/* Worker handlers. */
static void w_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    fill_window(ev, &wstream);
}

static void w_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    if (take_data(ev, &wstream, buf, len))
        if (mln_ipc_worker_send_prepare(ev, T_DONE, NULL, 0) != 0) fail("send done");
}

static void w_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    uint64_t n;
    (void)f_ptr; (void)u;
    if (len != sizeof(n)) fail("ack length");
    memcpy(&n, buf, sizeof(n));
    wstream.acked = (long)n;
    fill_window(ev, &wstream);
}

static void w_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    if (mln_ipc_worker_send_prepare(ev, T_PONG, buf, len) != 0) fail("send pong");
}

static int add_stream(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    if (n_streams == FANOUT) fail("too many workers");
    streams[n_streams].f = f;
    streams[n_streams].pid = f->pid;
    ++n_streams;
    return 0;
}

static void master_process(mln_event_t *ev)
{
    int i, workers = kind == K_FANOUT ? FANOUT : 1;
    mln_fork_iterate(ev, add_stream, NULL);
    if (n_streams != workers) fail("worker count");
    for (i = 0; i < n_streams; ++i)
        streams[i].count = msg_count / n_streams + (i < msg_count % n_streams ? 1 : 0);
    t_start = now_ns();
    for (i = 0; i < n_streams; ++i) {
        struct stream *s = &streams[i];
        switch (kind) {
        case K_W2M:
            if (mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, s->f) != 0) fail("send go");
            break;
        case K_M2W:
        case K_FANOUT:
            fill_window(ev, s);
            break;
        case K_PP:
            set_seq(msg, 0);
            if (send_one(ev, s, T_PING, msg, msg_size) != 0) fail("send ping");
            break;
        }
    }
}

/* Workers only react to messages; what a worker sends or expects (`wstream.count`) was set
 * before the fork. */
static void worker_process(mln_event_t *ev)
{
    (void)ev;
}

static int global_init(void)
{
    mln_fork_worker_num_set(kind == K_FANOUT ? FANOUT : 1);
    if (mln_ipc_handler_register(T_GO, NULL, w_go, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_DATA, m_data, w_data, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_ACK, m_ack, w_ack, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_DONE, m_done, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_PING, NULL, w_ping, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_PONG, m_pong, NULL, NULL, NULL) == NULL) return -1;
    return 0;
}

/* The credit window in bytes: BENCH_WINDOW (bytes) or WINDOW_BYTES. */
static size_t window_bytes(void)
{
    const char *e = getenv("BENCH_WINDOW");
    return e != NULL && atol(e) > 0 ? (size_t)atol(e) : WINDOW_BYTES;
}

static int run_melon(int argc, char **argv)
{
    struct mln_framework_attr a;
    int i;
    long per_worker = kind == K_FANOUT ? msg_count / FANOUT : msg_count;
    if (kind == K_FANOUT && msg_count % FANOUT != 0) fail("fan-out count must divide by 4");
    window_msgs = (long)(window_bytes() / (8 + msg_size));
    if (window_msgs < 8) window_msgs = 8;
    ack_every = window_msgs / 4;
    /* Inherited by the workers: what a worker sends or expects. */
    wstream.count = per_worker;
    a.argc = argc;
    a.argv = argv;
    a.global_init = global_init;
    a.main_thread = NULL;
    a.master_process = master_process;
    a.worker_process = worker_process;
    if (mln_framework_init(&a) < 0) fail("mln_framework_init");
    /* Master: the figure is printed; stop the workers and wait until they are gone so the
     * next measurement has the machine to itself (the library may auto-reap them). */
    for (i = 0; i < n_streams; ++i) kill(streams[i].pid, SIGKILL);
    for (i = 0; i < n_streams; ++i) {
        int tries = 0;
        while (kill(streams[i].pid, 0) == 0 && waitpid(streams[i].pid, NULL, WNOHANG) == 0
               && ++tries < 2000)
            usleep(500);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------- */

struct result { double ns, msgs, bytes, rss_send, rss_recv; };

struct figure {
    const char *name;  /* short key, e.g. w2m64 */
    const char *label; /* table label */
    const char *kind;
    size_t size;
    long count;
    const char *raw;   /* the figure it is compared with (NULL for raw figures) */
    struct result r[MAX_REPS]; /* filled by the driver */
    int ok;
};

static double scale = 1.0;
static int reps = 5;
static const char *only;

#define FIG(n, l, k, s, c, r) {.name = n, .label = l, .kind = k, .size = s, .count = c, .raw = r}
static struct figure figs[] = {
    FIG("raw16", "raw stream 16 B", "raw", 16, 16000000, NULL),
    FIG("raw64", "raw stream 64 B", "raw", 64, 24000000, NULL),
    FIG("raw1k", "raw stream 1 KiB", "raw", 1024, 3000000, NULL),
    FIG("raw16k", "raw stream 16 KiB", "raw", 16384, 300000, NULL),
    FIG("raw256k", "raw stream 256 KiB", "raw", 262144, 20000, NULL),
    FIG("rawpp", "raw ping-pong 16 B", "rawpp", 16, 30000, NULL),
    FIG("w2m16", "w2m stream 16 B", "w2m", 16, 12000000, "raw16"),
    FIG("w2m64", "w2m stream 64 B", "w2m", 64, 16000000, "raw64"),
    FIG("w2m1k", "w2m stream 1 KiB", "w2m", 1024, 2000000, "raw1k"),
    FIG("w2m16k", "w2m stream 16 KiB", "w2m", 16384, 200000, "raw16k"),
    FIG("w2m256k", "w2m stream 256 KiB", "w2m", 262144, 12000, "raw256k"),
    FIG("m2w16", "m2w stream 16 B", "m2w", 16, 12000000, "raw16"),
    FIG("m2w64", "m2w stream 64 B", "m2w", 64, 16000000, "raw64"),
    FIG("m2w1k", "m2w stream 1 KiB", "m2w", 1024, 2000000, "raw1k"),
    FIG("m2w16k", "m2w stream 16 KiB", "m2w", 16384, 200000, "raw16k"),
    FIG("m2w256k", "m2w stream 256 KiB", "m2w", 262144, 12000, "raw256k"),
    FIG("pp", "ping-pong 16 B", "pp", 16, 30000, "rawpp"),
    FIG("fanout64", "fan-out 4 x 64 B", "fanout", 64, 16000000, "raw64"),
    FIG("rss64", "w2m 1M x 64 B (RSS)", "w2m", 64, 1000000, "raw64"),
};
#define N_FIGS (sizeof(figs) / sizeof(figs[0]))

static struct figure *fig(const char *name)
{
    size_t i;
    for (i = 0; i < N_FIGS; ++i)
        if (strcmp(figs[i].name, name) == 0) return &figs[i];
    return NULL;
}

static int selected(const char *name)
{
    const char *p = only;
    size_t n = strlen(name);
    if (only == NULL || *only == '\0') return 1;
    while (p != NULL && *p) {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
        p = strchr(p, ',');
        if (p != NULL) ++p;
    }
    return 0;
}

static long scaled(const struct figure *f)
{
    long n = (long)((double)f->count * scale);
    if (strcmp(f->name, "rss64") == 0) n = f->count; /* the target is stated for 1M */
    if (n < 8) n = 8;
    if (strcmp(f->kind, "fanout") == 0) n -= n % FANOUT;
    return n;
}

/* Runs one measurement in a fresh process (the library's state is per process). */
static int measure(struct figure *f, struct result *out)
{
    int p[2], status;
    pid_t pid;
    char line[512], size[32], count[32];
    FILE *in;
    int ok = 0;
    snprintf(size, sizeof(size), "%zu", f->size);
    snprintf(count, sizeof(count), "%ld", scaled(f));
    fflush(stdout);
    if (pipe(p) < 0) die("pipe");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl("/proc/self/exe", "ipc_bench", "one", f->kind, size, count, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    in = fdopen(p[0], "r");
    if (in == NULL) die("fdopen");
    while (fgets(line, sizeof(line), in) != NULL) {
        if (sscanf(line, "ns=%lf msgs=%lf bytes=%lf rss_send=%lf rss_recv=%lf", &out->ns,
                   &out->msgs, &out->bytes, &out->rss_send, &out->rss_recv) == 5)
            ok = 1;
    }
    fclose(in);
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = 0;
    if (!ok) fprintf(stderr, "ipc_bench: %s failed (status 0x%x)\n", f->name, status);
    return ok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of one derived quantity over the repetitions. */
struct stat3 { double med, min, max; };

static struct stat3 stat_of(const struct figure *f, double (*get)(const struct result *))
{
    double v[MAX_REPS];
    struct stat3 s;
    int i;
    for (i = 0; i < reps; ++i) v[i] = get(&f->r[i]);
    qsort(v, (size_t)reps, sizeof(double), cmp_double);
    s.min = v[0];
    s.max = v[reps - 1];
    s.med = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
    return s;
}

static double get_msgs(const struct result *r) { return r->msgs / (r->ns / 1e9); }
static double get_mbs(const struct result *r) { return r->bytes / (r->ns / 1e3); } /* 1e6 B/s */
static double get_rtt(const struct result *r) { return r->ns / 1e3 / r->msgs; }    /* us */
static double get_rss_s(const struct result *r) { return r->rss_send / 1024.0; }  /* MiB */
static double get_rss_r(const struct result *r) { return r->rss_recv / 1024.0; }

static int is_pp(const struct figure *f) { return strstr(f->kind, "pp") != NULL; }

static void human(char *b, size_t n, double v)
{
    if (v >= 1e6) snprintf(b, n, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(b, n, "%.1fk", v / 1e3);
    else snprintf(b, n, "%.0f", v);
}

static void machine(void)
{
    char model[256] = "unknown", line[512];
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            char *c = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && c != NULL) {
                snprintf(model, sizeof(model), "%s", c + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    uname(&u);
    printf("machine: %ld CPUs, %s, %s %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           u.sysname, u.release, u.machine);
}

static int run_all(void)
{
    const char *e;
    size_t i;
    int rep, all_ok = 1;
    char kv[8192];
    size_t kvn = 0;
    struct figure *fx;

    if ((e = getenv("BENCH_REPS")) != NULL) reps = atoi(e);
    if (reps < 1 || reps > MAX_REPS) reps = 5;
    if ((e = getenv("BENCH_SCALE")) != NULL) scale = atof(e);
    if (!(scale > 0)) scale = 1.0;
    only = getenv("BENCH_ONLY");
    setenv("MLN_IPC_LOG", getenv("MLN_IPC_LOG") ? getenv("MLN_IPC_LOG") : "error", 1);
    /* A figure compared with a raw figure needs that raw figure. */
    for (i = 0; i < N_FIGS; ++i)
        if (selected(figs[i].name) && figs[i].raw != NULL && !selected(figs[i].raw)) {
            fprintf(stderr, "ipc_bench: %s needs %s in BENCH_ONLY\n", figs[i].name, figs[i].raw);
            return 2;
        }

    printf("melon-ipc benchmark: %d repetitions (interleaved), scale %.2f\n", reps, scale);
    machine();
    fflush(stdout);
    for (rep = 0; rep < reps; ++rep) {
        fprintf(stderr, "repetition %d/%d:", rep + 1, reps);
        for (i = 0; i < N_FIGS; ++i) {
            if (!selected(figs[i].name)) continue;
            fprintf(stderr, " %s", figs[i].name);
            if (!measure(&figs[i], &figs[i].r[rep])) return 1;
        }
        fprintf(stderr, "\n");
        for (i = 0; i < N_FIGS; ++i) figs[i].ok = selected(figs[i].name);
    }

    printf("\nmedian [min .. max] of %d; MB = 10^6 payload bytes; ratio = median / median of "
           "the raw figure on the right\n\n", reps);
    printf("%-22s %9s %-21s %9s %-19s %7s  %-8s %s\n", "figure", "msgs/s|RTT", "  [min .. max]",
           "MB/s", "  [min .. max]", "ratio", "vs", "peak RSS send/recv MiB");
    for (i = 0; i < N_FIGS; ++i) {
        struct figure *f = &figs[i];
        char a[32], b[32], c[32], ratio[32] = "";
        struct stat3 rs = stat_of(f, get_rss_s), rr;
        if (!f->ok) continue;
        rr = stat_of(f, get_rss_r);
        if (is_pp(f)) {
            struct stat3 t = stat_of(f, get_rtt);
            if (f->raw != NULL)
                snprintf(ratio, sizeof(ratio), "%.2fx", t.med / stat_of(fig(f->raw), get_rtt).med);
            snprintf(a, sizeof(a), "%.2f us", t.med);
            snprintf(c, sizeof(c), "[%.2f .. %.2f]", t.min, t.max);
            printf("%-22s %9s %-21s %9s %-19s %7s  %-8s %.1f / %.1f\n", f->label, a, c, "", "",
                   ratio, f->raw ? f->raw : "", rs.med, rr.med);
            kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "%s_rtt_us=%.2f ", f->name, t.med);
            if (f->raw != NULL)
                kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "%s_ratio=%.3f ", f->name,
                                        t.med / stat_of(fig(f->raw), get_rtt).med);
        } else {
            struct stat3 m = stat_of(f, get_msgs), y = stat_of(f, get_mbs);
            double ratio_v = 0;
            char mm[80], yy[48];
            human(a, sizeof(a), m.med);
            human(b, sizeof(b), m.min);
            human(c, sizeof(c), m.max);
            snprintf(mm, sizeof(mm), "[%s .. %s]", b, c);
            snprintf(yy, sizeof(yy), "[%.0f .. %.0f]", y.min, y.max);
            if (f->raw != NULL) {
                ratio_v = m.med / stat_of(fig(f->raw), get_msgs).med;
                snprintf(ratio, sizeof(ratio), "%.1f%%", 100 * ratio_v);
            }
            printf("%-22s %9s %-21s %9.0f %-19s %7s  %-8s %.1f / %.1f\n", f->label, a, mm, y.med,
                   yy, ratio, f->raw ? f->raw : "", rs.med, rr.med);
            kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "%s_msgs=%.0f %s_mbs=%.1f ",
                                    f->name, m.med, f->name, y.med);
            if (f->raw != NULL)
                kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "%s_ratio=%.3f ", f->name,
                                        ratio_v);
            kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn,
                                    "%s_rss_send_mib=%.1f %s_rss_recv_mib=%.1f ", f->name,
                                    rs.max, f->name, rr.max);
        }
    }

    /* The targets of issue 6, on medians (RSS: the largest of the repetitions). */
    printf("\ntargets (median of %d):\n", reps);
    {
        struct { const char *name, *what; double limit; int kind; } t[] = {
            {"w2m64", "64 B streaming w2m >= 25% of raw msgs/s", 0.25, 0},
            {"m2w64", "64 B streaming m2w >= 25% of raw msgs/s", 0.25, 0},
            {"w2m16k", "16 KiB streaming w2m >= 60% of raw MB/s", 0.60, 0},
            {"m2w16k", "16 KiB streaming m2w >= 60% of raw MB/s", 0.60, 0},
            {"w2m256k", "256 KiB streaming w2m >= 60% of raw MB/s", 0.60, 0},
            {"m2w256k", "256 KiB streaming m2w >= 60% of raw MB/s", 0.60, 0},
            {"pp", "ping-pong round trip <= 1.3x raw", 1.3, 1},
            {"rss64", "receiver peak RSS < 64 MiB streaming 1M x 64 B", 64, 2},
        };
        size_t k;
        int pass_all = 1, any = 0;
        for (k = 0; k < sizeof(t) / sizeof(t[0]); ++k) {
            double v;
            int pass;
            fx = fig(t[k].name);
            if (fx == NULL || !fx->ok) continue;
            any = 1;
            if (t[k].kind == 0) {
                v = stat_of(fx, get_msgs).med / stat_of(fig(fx->raw), get_msgs).med;
                pass = v >= t[k].limit;
                printf("  %-50s %6.1f%%  %s\n", t[k].what, 100 * v, pass ? "PASS" : "FAIL");
            } else if (t[k].kind == 1) {
                v = stat_of(fx, get_rtt).med / stat_of(fig(fx->raw), get_rtt).med;
                pass = v <= t[k].limit;
                printf("  %-50s %6.2fx   %s\n", t[k].what, v, pass ? "PASS" : "FAIL");
            } else {
                v = stat_of(fx, get_rss_r).max;
                pass = v < t[k].limit;
                printf("  %-50s %5.1f MiB %s\n", t[k].what, v, pass ? "PASS" : "FAIL");
            }
            pass_all &= pass;
        }
        if (any)
            kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "targets=%s ",
                                    pass_all ? "pass" : "fail");
    }
    kvn += (size_t)snprintf(kv + kvn, sizeof(kv) - kvn, "reps=%d scale=%.2f", reps, scale);
    printf("\n%s\n", kv);
    return all_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "one") == 0) {
        const char *k = argv[2];
        msg_size = (size_t)strtoul(argv[3], NULL, 10);
        msg_count = strtol(argv[4], NULL, 10);
        if (msg_size < 4 || msg_count < 1) {
            fprintf(stderr, "ipc_bench: SIZE must be >= 4 and COUNT >= 1\n");
            return 2;
        }
        make_msg();
        signal(SIGPIPE, SIG_IGN);
        if (strcmp(k, "raw") == 0) return run_raw(0);
        if (strcmp(k, "rawpp") == 0) return run_raw(1);
        if (strcmp(k, "w2m") == 0) kind = K_W2M;
        else if (strcmp(k, "m2w") == 0) kind = K_M2W;
        else if (strcmp(k, "pp") == 0) kind = K_PP;
        else if (strcmp(k, "fanout") == 0) kind = K_FANOUT;
        else {
            fprintf(stderr, "ipc_bench: unknown kind %s\n", k);
            return 2;
        }
        return run_melon(1, argv);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: ipc_bench [one raw|rawpp|w2m|m2w|pp|fanout SIZE COUNT]\n");
        return 2;
    }
    return run_all();
}
