/* Lifecycle item 5 (b): a temporary loop dispatched once while the socket is full, then
 * freed, must not stop the channel. One worker.
 * Worker side: the worker asks the master to block (the master's handler says so on a
 * pipe and blocks on another, so it reads nothing meanwhile); then, from the handler of
 * that pipe on its real loop, the worker does
 * `tmp = mln_event_new()`, sends 8 MiB (128 frames of 64 KiB) through tmp, dispatches tmp
 * once (a 0 ms timer on tmp breaks it; the socket fills up), frees tmp, lets the master go
 * on (pipe), and sends more frames on its real loop. Master side: the same the other way
 * round (the worker's handler blocks on a pipe while the master does the tmp pattern).
 * Every frame is numbered and its payload checked; the receiver checks that all arrive
 * in order and that the end frame carries the total. Pipes carry only "blocked now" / "go
 * on" (no sleeps); every process reports failures to the master (life.h); the watchdog
 * fails a stalled channel.
 * Today: the channel keeps waiting for writability on the freed tmp loop: every later
 * send returns 0 and nothing is written again (watchdog), and the freed loop is used. */
#include "life.h"

#define T_START 6501  /* master -> worker: run the worker-side pattern */
#define T_MBLOCK 6502 /* worker -> master: block until the worker says go on */
#define T_WDATA 6503  /* worker -> master, numbered */
#define T_WEND 6504   /* worker -> master: total */
#define T_WBLOCK 6505 /* master -> worker: block until the master says go on */
#define T_MDATA 6506  /* master -> worker, numbered */
#define T_MEND 6507   /* master -> worker: total */
#define T_OK 6508     /* worker -> master: master-side frames received */
#define BIG 65536
#define NBIG 128
#define AFTER 8

static int m2w[2], w2m[2];   /* pipes: master -> worker, worker -> master */
static mln_fork_t *kid;
static int w_sent, w_got, m_sent, m_got;

static void pipe_put(int fd)
{
    char c = 'x';
    CHECK(write(fd, &c, 1) == 1);
}

static void pipe_get(int fd)
{
    char c;
    ssize_t n;
    while ((n = read(fd, &c, 1)) < 0 && errno == EINTR) {}
    CHECK(n == 1);
}

static unsigned char *frame(int n, size_t len)
{
    static unsigned char b[BIG];
    size_t i;
    CHECK(len >= sizeof(n) && len <= BIG);
    for (i = 0; i < len; ++i) b[i] = (unsigned char)(i * 7 + (size_t)n);
    memcpy(b, &n, sizeof(n));
    return b;
}

/* Checks a numbered frame against the expected number; returns it. */
static int check_frame(void *buf, mln_u32_t len, int expect, const char *who)
{
    int n;
    CHECK(len >= sizeof(n));
    memcpy(&n, buf, sizeof(n));
    if (n != expect) fprintf(stderr, "%s: frame %d arrived where %d was expected\n", who, n, expect);
    CHECK(n == expect);
    CHECK(memcmp(buf, frame(n, len), len) == 0);
    return n;
}

static size_t size_of(int n)
{
    return n < NBIG ? BIG : 64;
}

/* ---- worker side ---- */

static void w_send(mln_event_t *ev, mln_u32_t type, int n)
{
    CHECK(mln_ipc_worker_send_prepare(ev, type, frame(n, size_of(n)), size_of(n)) == 0);
}

static void tm_break(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

static void w_pattern(mln_event_t *ev, int fd, void *data)
{
    mln_event_t *tmp;
    int i;
    (void)data;
    CHECK(mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == 0);
    pipe_get(m2w[0]); /* the master is blocked: it reads nothing */
    tmp = mln_event_new();
    CHECK(tmp != NULL);
    for (i = 0; i < NBIG; ++i) w_send(tmp, T_WDATA, w_sent++);
    CHECK(mln_event_timer_set(tmp, 0, NULL, tm_break) != NULL);
    mln_event_dispatch(tmp);
    mln_event_free(tmp);
    pipe_put(w2m[1]); /* master: go on */
    for (i = 0; i < AFTER; ++i) w_send(ev, T_WDATA, w_sent++);
    CHECK(mln_ipc_worker_send_prepare(ev, T_WEND, &w_sent, sizeof(w_sent)) == 0);
}

static void worker_start(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, T_MBLOCK, NULL, 0) == 0);
    /* Once the master says it is blocked. */
    CHECK(mln_event_fd_set(ev, m2w[0], M_EV_RECV, M_EV_UNLIMITED, NULL, w_pattern) == 0);
}

static void worker_wblock(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    pipe_put(w2m[1]); /* blocked now */
    pipe_get(m2w[0]); /* until the master is done with its tmp loop */
}

static void worker_mdata(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    check_frame(buf, len, m_got, "worker");
    ++m_got;
}

static void worker_mend(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    if (n != m_got) fprintf(stderr, "worker: %d frames sent, %d arrived\n", n, m_got);
    CHECK(n == m_got);
    CHECK(mln_ipc_worker_send_prepare(ev, T_OK, &n, sizeof(n)) == 0);
}

/* ---- master side ---- */

static void m_send(mln_event_t *ev, mln_u32_t type, int n)
{
    CHECK(mln_ipc_master_send_prepare(ev, type, frame(n, size_of(n)), size_of(n), kid) == 0);
}

static void master_mblock(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    pipe_put(m2w[1]); /* blocked now */
    pipe_get(w2m[0]); /* until the worker is done with its tmp loop */
}

static void master_wdata(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)udata_ptr;
    check_frame(buf, len, w_got, "master");
    ++w_got;
}

static void m_pattern(mln_event_t *ev, int fd, void *data)
{
    mln_event_t *tmp;
    int i;
    (void)data;
    CHECK(mln_event_fd_set(ev, fd, M_EV_CLR, M_EV_UNLIMITED, NULL, NULL) == 0);
    pipe_get(w2m[0]); /* the worker is blocked: it reads nothing */
    tmp = mln_event_new();
    CHECK(tmp != NULL);
    for (i = 0; i < NBIG; ++i) m_send(tmp, T_MDATA, m_sent++);
    CHECK(mln_event_timer_set(tmp, 0, NULL, tm_break) != NULL);
    mln_event_dispatch(tmp);
    mln_event_free(tmp);
    pipe_put(m2w[1]); /* worker: go on */
    for (i = 0; i < AFTER; ++i) m_send(ev, T_MDATA, m_sent++);
    CHECK(mln_ipc_master_send_prepare(ev, T_MEND, &m_sent, sizeof(m_sent), kid) == 0);
}

static void master_wend(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    if (n != w_got) fprintf(stderr, "master: %d frames sent, %d arrived\n", n, w_got);
    CHECK(n == w_got && n == NBIG + AFTER);
    CHECK(mln_ipc_master_send_prepare(ev, T_WBLOCK, NULL, 0, kid) == 0);
    /* Once the worker says it is blocked. */
    CHECK(mln_event_fd_set(ev, w2m[0], M_EV_RECV, M_EV_UNLIMITED, NULL, m_pattern) == 0);
}

static void master_ok(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n;
    (void)udata_ptr;
    CHECK(f_ptr == kid && len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == m_sent && n == NBIG + AFTER);
    life_check_live(ev, 1, 2, NULL, life_stop);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    kid = f;
    CHECK(mln_ipc_master_send_prepare(ev, T_START, NULL, 0, f) == 0);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(20);
}

static int global_init(void)
{
    ctest_workers(1);
    life_max_workers = 1;
    life_on_hello = on_hello;
    if (!mln_ipc_handler_register(T_START, NULL, worker_start, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MBLOCK, master_mblock, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WDATA, master_wdata, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WEND, master_wend, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WBLOCK, NULL, worker_wblock, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MDATA, NULL, worker_mdata, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MEND, NULL, worker_mend, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_OK, master_ok, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    CHECK(pipe(m2w) == 0 && pipe(w2m) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(w_got == NBIG + AFTER && m_sent == NBIG + AFTER);
    return 0;
}
