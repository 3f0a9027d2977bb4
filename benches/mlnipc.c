/* melon-ipc benchmark: the melon-ipc side, through the C API exactly as a Melon program uses
 * it (mln_framework_init, handlers registered per type, send_prepare from handlers).
 *
 * Kinds: w2m / m2w, streams with a credit window (at most WINDOW bytes of messages queued
 * ahead of the receiver's acknowledgements); bw2m / bm2w, bursts without a window (the
 * sender queues every message from one handler call, a loop of send_prepare calls, then
 * returns, as Melon programs do); pp, ping-pong; fanout, the master streams to 4 workers;
 * cw2m, a worker streams to the master as fast as the writable callback lets it (queue
 * limit CB_LIMIT: it sends until a send is refused with EAGAIN and resumes from the refused
 * message when mln_ipc_writable_handler_set's handler says the queue drained); fdm2w, the
 * master hands descriptors to the worker, one per frame (mln_ipc_master_send_fds_prepare),
 * as fast as the descriptor limit lets it (it sends until a send is refused with EAGAIN and
 * resumes in the writable callback), and the worker takes each one and closes it;
 * fanin, msg_workers workers (16) burst to the master at once (each its share of a round,
 * started together by T_START once every worker said it is ready); rr, the master bursts
 * to msg_workers workers in turn (round-robin, one message each, from one handler call).
 * Bursts (bw2m, bm2w, fanin, rr) come in rounds of msg_burst messages: the next round
 * starts once the last one has arrived, so a long measurement never queues more than one
 * burst.
 *
 * Built with -DBENCH_MELON against Melon's headers it is a Melon framework program: the
 * IPC is whatever the link line brings (Melon's own with libmelon alone, melon-ipc's melon
 * build with libmln_ipc.a before libmelon); the worker count then comes from a
 * configuration file written here (benches/README.md, "Against Melon"). The extensions cw2m
 * and fdm2w need come from include/mln_ipc_ext.h there, declared weak: linked with Melon's
 * own IPC, which lacks them, those fail with a message and the other kinds run. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"
#include "../include/mln_ipc_ext.h" /* the extensions (a no-op after our mln_ipc.h) */
#ifdef BENCH_MELON
#include "mln_path.h"
#pragma weak mln_ipc_max_message_set
#pragma weak mln_ipc_queue_limit_set
#pragma weak mln_ipc_writable_handler_set
#pragma weak mln_ipc_master_send_fds_prepare
#pragma weak mln_ipc_fd_take
#pragma weak mln_ipc_fds_count
#pragma weak mln_ipc_fds_limit_set
#endif
#include <fcntl.h>
#include "bench.h"

#define WINDOW_BYTES (1u << 20)
#define WATCH_MS 100 /* how often the master checks that its workers are alive */
#define CB_LIMIT ((mln_size_t)4 << 20)   /* cw2m: the queue limit */
#define CB_MAX_MSG ((mln_size_t)1 << 20) /* cw2m: the maximum message (at most the limit) */
/* fdm2w: the descriptors queued per peer: the default (1,024). Under `ulimit -n 1024` the
 * master runs out of descriptors first; that is backpressure too (EAGAIN, then the
 * writable callback), as the limit is. */
#define FDS_LIMIT 1024

enum kind { K_W2M, K_M2W, K_PP, K_FANOUT, K_BW2M, K_BM2W, K_CW2M, K_FDM2W, K_FANIN, K_RR };
static enum kind kind;
static const char *kind_name;
static long long t_start;
static long window_msgs, ack_every; /* ack_every 0: no window, no acknowledgements */
static long round_msgs;   /* bursts: one round's messages per stream */
static long long send_ns; /* rr: time spent in the master's burst loops */
static long long send_cpu_ns; /* rr: the master's CPU time in them (its cost per send) */
static pid_t master_pid;
/* Payload of the control messages (Melon's send_prepare wants a buffer). */
static unsigned char ctl[1];

/* One stream, as seen by one process. */
struct stream {
    mln_fork_t *f; /* master side: the worker; NULL in a worker */
    pid_t pid;
    long count, sent, acked, received;
};
static struct stream streams[MAX_WORKERS];
static int n_workers, n_streams, n_done, n_ready, n_round_done;
static struct stream wstream; /* a worker's own stream (sending or receiving) */

static int worker_sends(void)
{
    return kind == K_W2M || kind == K_BW2M || kind == K_CW2M || kind == K_FANIN;
}

static int send_one(mln_event_t *ev, struct stream *s, mln_u32_t type, void *p, size_t n)
{
    if (s->f != NULL) return mln_ipc_master_send_prepare(ev, type, p, n, s->f);
    return mln_ipc_worker_send_prepare(ev, type, p, n);
}

/* Master: SIGKILL the workers and wait until they are gone, so that the next measurement
 * has the machine to itself (the library may reap them itself, hence the probing). */
static void stop_workers(void)
{
    int i;
    for (i = 0; i < n_streams; ++i) kill(streams[i].pid, SIGKILL);
    for (i = 0; i < n_streams; ++i) {
        int tries = 0;
        while (kill(streams[i].pid, 0) == 0 && waitpid(streams[i].pid, NULL, WNOHANG) == 0
               && ++tries < 2000)
            usleep(500);
    }
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

/* One message of a burst. A refused send (-1) is counted (burst_checked fails the row). */
static long refused, first_refused = -1;
static int refused_err;

static void burst_one(mln_event_t *ev, struct stream *s)
{
    set_seq(msg, (uint32_t)s->sent);
    if (send_one(ev, s, T_DATA, msg, msg_size) != 0 && refused++ == 0) {
        first_refused = s->sent;
        refused_err = errno;
    }
    ++s->sent;
}

/* After a round of a burst: a refused send fails the row, printed, and the measurement
 * ends with EXIT_REFUSED (a worker takes its master down with it so that the driver sees
 * it at once). */
static void burst_checked(void)
{
    if (refused == 0) return;
    printf("refused=%ld\n", refused);
    fflush(stdout);
    fprintf(stderr, "ipc_bench: %s burst rounds of %ld x %zu B (%s, pid %d): %ld send_prepare "
            "call(s) returned -1, the first for message %ld (errno %d: %s); the row FAILS\n",
            kind_name, round_msgs, msg_size, getpid() == master_pid ? "master" : "worker",
            (int)getpid(), refused, first_refused, refused_err, strerror(refused_err));
    if (getpid() != master_pid) {
        kill(master_pid, SIGKILL);
        _exit(EXIT_REFUSED);
    }
    stop_workers();
    exit(EXIT_REFUSED);
}

/* The next round of a burst to (or from) one peer, from this one call, as a Melon handler
 * does. */
static void burst(mln_event_t *ev, struct stream *s)
{
    long end = s->sent + round_msgs;
    if (end > s->count) end = s->count;
    while (s->sent < end) burst_one(ev, s);
    burst_checked();
}

/* rr: the next round, to every worker in turn (one message each, round-robin), from this
 * one call. */
static void burst_round_robin(mln_event_t *ev)
{
    long long t0 = now_ns(), c0 = cpu_ns();
    long i, n = round_msgs * n_streams;
    int j = 0;
    for (i = 0; i < n; ++i) {
        burst_one(ev, &streams[j]);
        if (++j == n_streams) j = 0;
    }
    send_ns += now_ns() - t0;
    send_cpu_ns += cpu_ns() - c0;
    burst_checked();
}

/* cw2m: sends until a send is refused (EAGAIN) or all are sent; the writable callback calls
 * it again. Any other failure fails the row, as in a burst. */
static int cb_waiting;

static void stream_until_refused(mln_event_t *ev, struct stream *s)
{
    while (s->sent < s->count) {
        set_seq(msg, (uint32_t)s->sent);
        if (send_one(ev, s, T_DATA, msg, msg_size) != 0) {
            if (errno != EAGAIN) {
                fprintf(stderr, "ipc_bench: cw2m: send_prepare failed for message %ld: %s\n",
                        s->sent, strerror(errno));
                kill(master_pid, SIGKILL);
                _exit(EXIT_REFUSED);
            }
            cb_waiting = 1;
            return;
        }
        ++s->sent;
    }
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (f != NULL || !cb_waiting) fail("writable callback without a refusal, or in the master");
    cb_waiting = 0;
    stream_until_refused(ev, &wstream);
}

/* fdm2w: the master sends one descriptor per frame (the library duplicates it; ours stays
 * open) until a send is refused with EAGAIN (the descriptor limit, FDS_LIMIT queued) or all
 * are sent; the writable callback resumes. Any other failure fails the row. */
static int fd_to_send = -1;

static void fds_until_refused(mln_event_t *ev, struct stream *s)
{
    while (s->sent < s->count) {
        set_seq(msg, (uint32_t)s->sent);
        if (mln_ipc_master_send_fds_prepare(ev, T_DATA, msg, msg_size, &fd_to_send, 1, s->f)
            != 0) {
            if (errno != EAGAIN) {
                fprintf(stderr, "ipc_bench: fdm2w: send_fds_prepare failed for message %ld: %s\n",
                        s->sent, strerror(errno));
                stop_workers();
                exit(EXIT_REFUSED);
            }
            cb_waiting = 1;
            return;
        }
        ++s->sent;
    }
}

static void fd_writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (f != streams[0].f || !cb_waiting) fail("writable callback without a refusal");
    cb_waiting = 0;
    fds_until_refused(ev, &streams[0]);
}

/* Receiving side: check, count, acknowledge (windowed streams); returns 1 on the last. */
static int take_data(mln_event_t *ev, struct stream *s, const void *buf, mln_u32_t len)
{
    uint64_t n;
    check_msg(buf, len, s->received, s->count);
    n = (uint64_t)++s->received;
    if (s->received == s->count) return 1;
    if (ack_every > 0 && s->received % ack_every == 0)
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

/* Master: the measurement is complete. Prints the result line and ends the process (Melon's
 * framework would run the worker routine in the master once its loop is left). */
static void finish(mln_event_t *ev)
{
    long long t1 = now_ns(), msgs = msg_count;
    long rss_m = peak_rss_kib(getpid()), rss_w = 0;
    int i;
    (void)ev;
    for (i = 0; i < n_streams; ++i) {
        long r = peak_rss_kib(streams[i].pid);
        if (r > rss_w) rss_w = r;
    }
    printf("ns=%lld msgs=%lld bytes=%lld rss_send=%ld rss_recv=%ld\n", t1 - t_start, msgs,
           msgs * (long long)msg_size, worker_sends() ? rss_w : rss_m,
           worker_sends() ? rss_m : rss_w);
    if (kind == K_RR) printf("send_ns=%lld send_cpu_ns=%lld\n", send_ns, send_cpu_ns);
    fflush(stdout);
    stop_workers();
    exit(0);
}

/* Looks at up to WATCH_EACH workers per tick, in turn (reading /proc for 200 workers every
 * 100 ms would weigh on the figure it watches). */
#define WATCH_EACH 8
static int watch_next;

static void watchdog(mln_event_t *ev, void *data)
{
    int i, k;
    (void)data;
    for (k = 0; k < WATCH_EACH && k < n_streams; ++k) {
        i = watch_next;
        watch_next = (watch_next + 1) % n_streams;
        if (!proc_alive(streams[i].pid)) {
            if (worker_sends())
                fprintf(stderr, "ipc_bench: %s %zu B: worker pid %d died during the measurement "
                        "(%ld of %ld messages received)\n", kind_name, msg_size,
                        (int)streams[i].pid, streams[i].received, streams[i].count);
            else
                fprintf(stderr, "ipc_bench: %s %zu B: worker pid %d died during the measurement "
                        "(it was receiving)\n", kind_name, msg_size, (int)streams[i].pid);
            stop_workers();
            exit(EXIT_CHECK);
        }
    }
    if (mln_event_timer_set(ev, WATCH_MS, NULL, watchdog) == NULL) fail("timer");
}

static void nop(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)u;
}

/* Master handlers. */
static void start_all(mln_event_t *ev)
{
    int i;
    for (i = 0; i < n_streams; ++i)
        if (mln_ipc_master_send_prepare(ev, T_START, ctl, sizeof(ctl), streams[i].f) != 0)
            fail("send start");
}

static void m_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct stream *s = stream_of(f_ptr);
    int last = take_data(ev, s, buf, len);
    (void)u;
    if (kind == K_FANIN) {
        /* A round ends when every worker's share of it has arrived. */
        if (s->received % round_msgs != 0 || ++n_round_done < n_streams) return;
        n_round_done = 0;
        if (last) finish(ev); /* every stream ends with the same round */
        start_all(ev);
    } else if (last) {
        finish(ev);
    } else if (kind == K_BW2M && s->received % round_msgs == 0) {
        if (mln_ipc_master_send_prepare(ev, T_GO, ctl, sizeof(ctl), s->f) != 0) fail("send go");
    }
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

/* Every worker is ready (for the first round, or the next one: bm2w, fanin, rr). The
 * clock starts when all are ready the first time. */
static void m_ready(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)buf; (void)len; (void)u;
    (void)stream_of(f_ptr);
    if (++n_ready < n_streams) return;
    n_ready = 0;
    if (t_start == 0) t_start = now_ns();
    if (kind == K_BM2W) burst(ev, &streams[0]);
    else if (kind == K_RR) burst_round_robin(ev);
    else if (kind == K_FANIN) start_all(ev);
    else fail("unexpected ready");
}

static void m_pong(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    struct stream *s = stream_of(f_ptr);
    (void)u;
    check_msg(buf, len, s->received, s->count);
    if (++s->received == s->count) finish(ev);
    set_seq(msg, (uint32_t)s->received);
    if (send_one(ev, s, T_PING, msg, msg_size) != 0) fail("send ping");
}

/* Worker handlers. */
static void w_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (kind == K_BW2M) burst(ev, &wstream);
    else if (kind == K_CW2M) stream_until_refused(ev, &wstream);
    else if (kind == K_BM2W || kind == K_FANIN || kind == K_RR) {
        if (mln_ipc_worker_send_prepare(ev, T_READY, ctl, sizeof(ctl)) != 0) fail("send ready");
    } else fill_window(ev, &wstream);
}

static void w_start(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)buf; (void)len; (void)u;
    if (kind != K_FANIN) fail("unexpected start");
    burst(ev, &wstream);
}

static void w_data(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)f_ptr; (void)u;
    if (kind == K_FDM2W) { /* exactly one descriptor with each frame: take it, close it */
        int fd = mln_ipc_fd_take(0);
        if (mln_ipc_fds_count() != 1 || fd < 0) fail("not exactly one descriptor with the frame");
        if (close(fd) != 0) fail("close (a received descriptor)");
    }
    if (take_data(ev, &wstream, buf, len)) {
        if (mln_ipc_worker_send_prepare(ev, T_DONE, ctl, sizeof(ctl)) != 0) fail("send done");
    } else if ((kind == K_BM2W || kind == K_RR) && wstream.received % round_msgs == 0) {
        /* This round has arrived: ready for the next. */
        if (mln_ipc_worker_send_prepare(ev, T_READY, ctl, sizeof(ctl)) != 0) fail("send ready");
    }
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
    if (n_streams == MAX_WORKERS) fail("too many workers");
    streams[n_streams].f = f;
    streams[n_streams].pid = f->pid;
    ++n_streams;
    return 0;
}

#ifdef BENCH_MELON
/* Melon reads the worker count from its configuration: a file of our own in a temporary
 * directory (with the log and pid files Melon writes beside it), removed once the workers
 * have been forked. BENCH_MELON_LOG sets Melon's log_level (default "error"). */
static char conf_dir[256], conf_file[300];

static char *conf_path(void) { return conf_file; }

static void conf_write(int workers)
{
    const char *tmp = getenv("TMPDIR"), *level = getenv("BENCH_MELON_LOG");
    FILE *f;
    snprintf(conf_dir, sizeof(conf_dir), "%s/ipc_bench.XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(conf_dir) == NULL) die("mkdtemp");
    snprintf(conf_file, sizeof(conf_file), "%s/bench.conf", conf_dir);
    if ((f = fopen(conf_file, "w")) == NULL) die("fopen conf");
    fprintf(f, "log_level \"%s\";\ndaemon off;\nframework \"multiprocess\";\nworker_proc %d;\n"
            "log_path \"%s/melon.log\";\nproc_exec {\n}\n", level != NULL ? level : "error",
            workers, conf_dir);
    if (fclose(f) != 0) die("fclose conf");
    mln_path_hook_set(m_p_conf, conf_path);
}

static void conf_remove(void)
{
    char p[320];
    if (conf_dir[0] == '\0') return;
    unlink(conf_file);
    snprintf(p, sizeof(p), "%s/melon.log", conf_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/melon.pid", conf_dir);
    unlink(p);
    rmdir(conf_dir);
    conf_dir[0] = '\0';
}
#endif

static void master_process(mln_event_t *ev)
{
    int i;
#ifdef BENCH_MELON
    conf_remove();
#endif
    mln_fork_iterate(ev, add_stream, NULL);
    if (n_streams != n_workers) fail("worker count");
    for (i = 0; i < n_streams; ++i)
        streams[i].count = msg_count / n_streams + (i < msg_count % n_streams ? 1 : 0);
    /* Not during ping-pong: nothing but the two processes' messages in that loop. */
    if (kind != K_PP && mln_event_timer_set(ev, WATCH_MS, NULL, watchdog) == NULL) fail("timer");
    /* The kinds that wait until every worker is ready start the clock then (m_ready). */
    if (kind != K_BM2W && kind != K_FANIN && kind != K_RR) t_start = now_ns();
    for (i = 0; i < n_streams; ++i) {
        struct stream *s = &streams[i];
        switch (kind) {
        case K_W2M:
        case K_BW2M:
        case K_BM2W:
        case K_CW2M:
        case K_FANIN:
        case K_RR:
            if (mln_ipc_master_send_prepare(ev, T_GO, ctl, sizeof(ctl), s->f) != 0)
                fail("send go");
            break;
        case K_M2W:
        case K_FANOUT:
            fill_window(ev, s);
            break;
        case K_FDM2W:
            /* The descriptor handed over again and again (the master's own). */
            if (fd_to_send < 0 && (fd_to_send = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
                die("open /dev/null");
            fds_until_refused(ev, s);
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
    static const struct { mln_u32_t type; ipc_handler m, w; } h[] = {
        {T_GO, nop, w_go},       {T_DATA, m_data, w_data}, {T_ACK, m_ack, w_ack},
        {T_DONE, m_done, nop},   {T_PING, nop, w_ping},    {T_PONG, m_pong, nop},
        {T_READY, m_ready, nop}, {T_START, nop, w_start},
    };
    size_t i;
#ifndef BENCH_MELON
    mln_fork_worker_num_set((mln_u32_t)n_workers);
#endif
    if (kind == K_CW2M) {
        /* Both processes (set before the fork). */
#ifdef BENCH_MELON
        if (mln_ipc_queue_limit_set == NULL || mln_ipc_writable_handler_set == NULL
            || mln_ipc_max_message_set == NULL) {
            fprintf(stderr, "ipc_bench: cw2m: this IPC has no queue limit or writable callback "
                    "(Melon's own)\n");
            return -1;
        }
#endif
        if (mln_ipc_max_message_set(CB_MAX_MSG) != 0 || mln_ipc_queue_limit_set(CB_LIMIT) != 0)
            return -1;
        mln_ipc_writable_handler_set(writable, NULL);
    }
    if (kind == K_FDM2W) {
#ifdef BENCH_MELON
        if (mln_ipc_master_send_fds_prepare == NULL || mln_ipc_fd_take == NULL
            || mln_ipc_fds_count == NULL || mln_ipc_fds_limit_set == NULL
            || mln_ipc_writable_handler_set == NULL) {
            fprintf(stderr, "ipc_bench: fdm2w: this IPC cannot pass descriptors (Melon's own)\n");
            return -1;
        }
#endif
        if (mln_ipc_fds_limit_set(FDS_LIMIT) != 0) return -1;
        mln_ipc_writable_handler_set(fd_writable, NULL);
    }
    for (i = 0; i < sizeof(h) / sizeof(h[0]); ++i)
        if (mln_ipc_handler_register(h[i].type, h[i].m, h[i].w, NULL, NULL) == NULL) return -1;
    return 0;
}

/* The master holds a socketpair end per worker (and the library a few descriptors more):
 * raises RLIMIT_NOFILE's soft limit up to the hard one if FDS_PER_WORKER per worker + 64
 * do not fit, and fails the row with what is needed if they still do not. */
#define FDS_PER_WORKER 2

static void descriptors_for(int workers)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)workers * FDS_PER_WORKER + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need) {
            fprintf(stderr, "ipc_bench: %s with %d workers needs %lu descriptors (ulimit -n; "
                    "the hard limit is %lu)\n", kind_name, workers, (unsigned long)need,
                    (unsigned long)rl.rlim_max);
            exit(EXIT_CHECK);
        }
    }
}

/* The credit window in bytes: BENCH_WINDOW (bytes) or WINDOW_BYTES. */
static size_t window_bytes(void)
{
    const char *e = getenv("BENCH_WINDOW");
    return e != NULL && atol(e) > 0 ? (size_t)atol(e) : WINDOW_BYTES;
}

int run_melon(const char *k)
{
    static const struct { const char *name; enum kind kind; } kinds[] = {
        {"w2m", K_W2M}, {"m2w", K_M2W}, {"pp", K_PP}, {"fanout", K_FANOUT},
        {"bw2m", K_BW2M}, {"bm2w", K_BM2W}, {"cw2m", K_CW2M}, {"fdm2w", K_FDM2W},
        {"fanin", K_FANIN}, {"rr", K_RR},
    };
    static char arg0[] = "ipc_bench", *argv[] = {arg0, NULL};
    struct mln_framework_attr a;
    size_t i;
    long per_worker;
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); ++i)
        if (strcmp(k, kinds[i].name) == 0) break;
    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        fprintf(stderr, "ipc_bench: unknown kind %s\n", k);
        return 2;
    }
    kind = kinds[i].kind;
    kind_name = kinds[i].name;
    n_workers = kind == K_FANOUT ? FANOUT : kind == K_FANIN || kind == K_RR ? msg_workers : 1;
    if (n_workers < 1 || n_workers > MAX_WORKERS) fail("worker count out of range");
    if (msg_count % n_workers != 0) fail("the count must divide by the worker count");
    if (msg_burst % n_workers != 0 || msg_count % msg_burst != 0)
        fail("the burst must divide by the worker count, and the count by the burst");
    per_worker = msg_count / n_workers;
    round_msgs = msg_burst / n_workers;
    if (n_workers > 1) descriptors_for(n_workers);
    if (kind == K_BW2M || kind == K_BM2W || kind == K_CW2M || kind == K_FDM2W || kind == K_FANIN
        || kind == K_RR) {
        window_msgs = msg_count;
        ack_every = 0;
    } else {
        window_msgs = (long)(window_bytes() / (8 + msg_size));
        if (window_msgs < 8) window_msgs = 8;
        ack_every = window_msgs / 4;
    }
    /* Inherited by the workers: what a worker sends or expects. */
    wstream.count = per_worker;
    master_pid = getpid();
#ifdef BENCH_MELON
    conf_write(n_workers);
#endif
    a.argc = 1; /* Melon parses boot options (-r, -s, -h) out of argv */
    a.argv = argv;
    a.global_init = global_init;
    a.main_thread = NULL;
    a.master_process = master_process;
    a.worker_process = worker_process;
    if (mln_framework_init(&a) < 0) {
#ifdef BENCH_MELON
        conf_remove();
#endif
        fail("mln_framework_init");
    }
    /* finish() ends the master; a worker's loop never returns. */
    fail("mln_framework_init returned without a result");
    return 1;
}
