/* The common part of life_signal_order.c (5 kHz SIGALRM on both sides) and
 * life_signal_order_hup.c (SIGHUP from another process to the master), lifecycle item 4.
 * The including file defines SIGORDER_BOTH_WAYS (1: the workers stream and signal to the
 * master too; 0: the master alone sends) and SIG_MIN, includes this, then defines
 * sig_start() (start the signals in this process) and sig_stop() (after which the signal
 * handler sends nothing more). */
#ifndef LIFE_SIGNAL_ORDER_H
#define LIFE_SIGNAL_ORDER_H
#include "life.h"

#define N 2
#define T_SEQ 6301
#define T_END 6302
#define T_ACK 6303
#define T_PROG 6304   /* receiver -> sender: frames received so far (flow control) */
#define WINDOW 8192
#define PROG_EVERY 1024
#define BATCH 50
#define LOOP_MIN 20000
#define MAX_NS 2000000000LL
#define SIZE 64

struct peer {
    mln_fork_t *f;               /* NULL: the master (in a worker) */
    volatile sig_atomic_t next;  /* number of the next frame; frames accepted so far */
    volatile sig_atomic_t sig_ok, sig_refused;
    long loop_sent;
    long acked;                  /* frames the peer said it received */
};

static mln_event_t *loop_ev;
static struct peer peers[N];
static int npeers;
static volatile sig_atomic_t in_send, stopped;
static long long t0;
static long received, ends, acks;      /* receiver side */
static int streaming = 1, stalled;

static void sig_start(void);
static void sig_stop(void);

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int send_seq(mln_event_t *ev, struct peer *p, mln_u32_t type, long n)
{
    char b[SIZE];
    memset(b, 0, sizeof(b));
    memcpy(b, &n, sizeof(n));
    if (p->f) return mln_ipc_master_send_prepare(ev, type, b, sizeof(b), p->f);
    return mln_ipc_worker_send_prepare(ev, type, b, sizeof(b));
}

static struct peer *peer_of(mln_fork_t *f)
{
    int i;
    for (i = 0; i < npeers; ++i)
        if (peers[i].f == f) return &peers[i];
    return NULL;
}

/* Signal context. */
static void sig_send_one(mln_event_t *ev, struct peer *p)
{
    if (send_seq(ev, p, T_SEQ, p->next) == 0) {
        p->next = p->next + 1;
        p->sig_ok = p->sig_ok + 1;
    } else {
        p->sig_refused = p->sig_refused + 1;
    }
}

static int sig_each(mln_event_t *ev, mln_fork_t *f, void *data)
{
    struct peer *p = peer_of(f);
    (void)data;
    if (p) sig_send_one(ev, p);
    return 0;
}

static void stream(mln_event_t *ev, void *data)
{
    int i, j, enough = 1, room = 0;
    (void)data;
    for (i = 0; i < npeers; ++i) {
        struct peer *p = &peers[i];
        if (p->next - p->acked < WINDOW) room = 1;
        for (j = 0; j < BATCH && p->next - p->acked < WINDOW; ++j) {
            int r;
            in_send = 1;
            __asm__ __volatile__("" ::: "memory");
            r = send_seq(ev, p, T_SEQ, p->next);
            if (r == 0) p->next = p->next + 1;
            __asm__ __volatile__("" ::: "memory");
            in_send = 0;
            CHECK(r == 0);
            ++p->loop_sent;
        }
        if (p->loop_sent < LOOP_MIN || p->sig_ok < SIG_MIN) enough = 0;
    }
    if (!enough && now_ns() - t0 < MAX_NS) {
        /* Every window full: wait for a progress report (flow control, no spinning). */
        if (room) CHECK(mln_event_timer_set(ev, 0, NULL, stream) != NULL);
        else stalled = 1;
        return;
    }
    sig_stop();
    streaming = 0;
    for (i = 0; i < npeers; ++i) {
        struct peer *p = &peers[i];
        fprintf(stderr, "%s %d -> peer %d: %ld loop frames, %d signal frames accepted, %d refused\n",
                getpid() == life_master ? "master" : "worker", (int)getpid(),
                p->f ? (int)p->f->pid : (int)getppid(), p->loop_sent, (int)p->sig_ok, (int)p->sig_refused);
        CHECK(p->sig_ok > 0);
        CHECK(send_seq(ev, p, T_END, p->next) == 0);
    }
}

/* Receiver side, per sender: frames received in order, and whether its end arrived (a
 * worker has one sender, the master one per worker). */
static long m_received[N];
static int m_ended[N];

static long *recv_count(void *f_ptr, int **ended)
{
    static int w_ended;
    int i;
    if (getpid() != life_master) { *ended = &w_ended; return &received; }
    for (i = 0; i < npeers; ++i)
        if (peers[i].f == f_ptr) { *ended = &m_ended[i]; return &m_received[i]; }
    CHECK(0);
    return NULL;
}

static void on_seq(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n;
    int *ended;
    long *count = recv_count(f_ptr, &ended);
    (void)ev; (void)udata_ptr;
    CHECK(len == SIZE);
    memcpy(&n, buf, sizeof(n));
    if (*ended) fprintf(stderr, "pid %d: frame %ld arrived after the end\n", (int)getpid(), n);
    CHECK(!*ended);
    if (n != *count)
        fprintf(stderr, "pid %d: frame %ld arrived where %ld was expected\n", (int)getpid(), n, *count);
    CHECK(n == *count);
    if (++*count % PROG_EVERY == 0) {
        if (getpid() == life_master)
            CHECK(mln_ipc_master_send_prepare(ev, T_PROG, count, sizeof(*count), f_ptr) == 0);
        else
            CHECK(mln_ipc_worker_send_prepare(ev, T_PROG, count, sizeof(*count)) == 0);
    }
}

static void on_prog(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    struct peer *p = getpid() == life_master ? peer_of(f_ptr) : &peers[0];
    long n;
    (void)udata_ptr;
    CHECK(p != NULL && len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n > p->acked && n <= p->next);
    p->acked = n;
    if (stalled && streaming) {
        stalled = 0;
        CHECK(mln_event_timer_set(ev, 0, NULL, stream) != NULL);
    }
}

static void maybe_done(mln_event_t *ev)
{
    if ((!SIGORDER_BOTH_WAYS || ends == npeers) && acks == npeers) mln_event_break_set(ev);
}

static void on_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n;
    int *ended;
    long *count = recv_count(f_ptr, &ended);
    (void)udata_ptr;
    CHECK(len == SIZE);
    memcpy(&n, buf, sizeof(n));
    if (n != *count)
        fprintf(stderr, "pid %d: %ld frames accepted by the sender, %ld arrived before its end\n",
                (int)getpid(), n, *count);
    CHECK(n == *count);
    *ended = 1;
    if (getpid() == life_master) {
        ++ends;
        maybe_done(ev);
    } else {
        CHECK(mln_ipc_worker_send_prepare(ev, T_ACK, NULL, 0) == 0);
    }
}

static void master_ack(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    ++acks;
    maybe_done(ev);
}

static int collect(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(npeers < N);
    peers[npeers++].f = f;
    return 0;
}

static void start(mln_event_t *ev)
{
    loop_ev = ev;
    t0 = now_ns();
    if (SIGORDER_BOTH_WAYS || getpid() == life_master) sig_start();
    CHECK(mln_event_timer_set(ev, 0, NULL, stream) != NULL);
}

static void worker_process(mln_event_t *ev)
{
    life_worker_hello(ev);
    if (!SIGORDER_BOTH_WAYS) return;
    npeers = 1;
    peers[0].f = NULL;
    start(ev);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(30);
    CHECK(mln_fork_iterate(ev, collect, NULL) == 0 && npeers == N);
    start(ev);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N;
    if (!mln_ipc_handler_register(T_SEQ, on_seq, on_seq, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, on_end, on_end, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ACK, master_ack, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PROG, on_prog, on_prog, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK((!SIGORDER_BOTH_WAYS || ends == N) && acks == N && !streaming);
    return 0;
}
#endif
