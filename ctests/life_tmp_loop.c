/* Lifecycle item 5 (a): a send through a temporary loop that is freed at once must not stop
 * the channel. One worker.
 * Worker side: a handler does `tmp = mln_event_new(); mln_ipc_worker_send_prepare(tmp, ...);
 * mln_event_free(tmp);`, then sends on its real loop, in the same handler and from a later
 * timer. Master side: the same with mln_ipc_master_send_prepare to the worker. Every frame
 * is numbered; the receiver checks that all arrive, in the order sent (the frame sent
 * through tmp first: it is queued on the same channel, as in Melon), and the end frame
 * carries the total. The pattern runs 3 times in each direction. Every process reports
 * failures to the master (life.h); the watchdog fails a stalled channel.
 * Today: the send through tmp leaves the channel waiting on a flush timer of the freed
 * loop; every later send returns 0 and nothing is written again (watchdog). */
#include "life.h"

#define T_GO 6401    /* master -> worker: run the worker-side pattern */
#define T_WDATA 6402 /* worker -> master, numbered */
#define T_WEND 6403  /* worker -> master: total */
#define T_MDATA 6404 /* master -> worker, numbered */
#define T_MEND 6405  /* master -> worker: total */
#define T_OK 6406    /* worker -> master: master-side pattern received */
#define LATER 8
#define REPEAT 3

static mln_fork_t *kid;
static int w_sent, w_got, m_sent, m_got, rounds;

static void w_send(mln_event_t *ev, mln_u32_t type, int n)
{
    CHECK(mln_ipc_worker_send_prepare(ev, type, &n, sizeof(n)) == 0);
}

static void m_send(mln_event_t *ev, mln_u32_t type, int n)
{
    CHECK(mln_ipc_master_send_prepare(ev, type, &n, sizeof(n), kid) == 0);
}

static int get_int(void *buf, mln_u32_t len)
{
    int n;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    return n;
}

/* ---- worker side ---- */

static void w_later(mln_event_t *ev, void *data)
{
    int i;
    (void)data;
    for (i = 0; i < LATER; ++i) w_send(ev, T_WDATA, w_sent++);
    w_send(ev, T_WEND, w_sent);
}

static void worker_go(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_event_t *tmp = mln_event_new();
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(tmp != NULL);
    w_send(tmp, T_WDATA, w_sent++);
    mln_event_free(tmp);
    w_send(ev, T_WDATA, w_sent++);
    CHECK(mln_event_timer_set(ev, 1, NULL, w_later) != NULL);
}

static void worker_mdata(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n = get_int(buf, len);
    (void)ev; (void)f_ptr; (void)udata_ptr;
    if (n != m_got) fprintf(stderr, "worker: frame %d arrived where %d was expected\n", n, m_got);
    CHECK(n == m_got);
    ++m_got;
}

static void worker_mend(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n = get_int(buf, len);
    (void)f_ptr; (void)udata_ptr;
    if (n != m_got) fprintf(stderr, "worker: %d frames sent, %d arrived\n", n, m_got);
    CHECK(n == m_got);
    w_send(ev, T_OK, n);
}

/* ---- master side ---- */

static void m_later(mln_event_t *ev, void *data)
{
    int i;
    (void)data;
    for (i = 0; i < LATER; ++i) m_send(ev, T_MDATA, m_sent++);
    m_send(ev, T_MEND, m_sent);
}

static void master_pattern(mln_event_t *ev)
{
    mln_event_t *tmp = mln_event_new();
    CHECK(tmp != NULL);
    m_send(tmp, T_MDATA, m_sent++);
    mln_event_free(tmp);
    m_send(ev, T_MDATA, m_sent++);
    CHECK(mln_event_timer_set(ev, 1, NULL, m_later) != NULL);
}

static void master_wdata(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n = get_int(buf, len);
    (void)ev; (void)f_ptr; (void)udata_ptr;
    if (n != w_got) fprintf(stderr, "master: frame %d arrived where %d was expected\n", n, w_got);
    CHECK(n == w_got);
    ++w_got;
}

static void master_wend(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n = get_int(buf, len);
    (void)f_ptr; (void)udata_ptr;
    if (n != w_got) fprintf(stderr, "master: %d frames sent, %d arrived\n", n, w_got);
    CHECK(n == w_got);
    master_pattern(ev);
}

static void master_ok(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n = get_int(buf, len);
    (void)udata_ptr;
    CHECK(f_ptr == kid && n == m_sent);
    if (++rounds < REPEAT) {
        CHECK(mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, kid) == 0);
        return;
    }
    life_check_live(ev, 1, 2, NULL, life_stop);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    kid = f;
    CHECK(mln_ipc_master_send_prepare(ev, T_GO, NULL, 0, f) == 0);
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
    if (!mln_ipc_handler_register(T_GO, NULL, worker_go, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WDATA, master_wdata, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_WEND, master_wend, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MDATA, NULL, worker_mdata, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MEND, NULL, worker_mend, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_OK, master_ok, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(rounds == REPEAT && w_got == REPEAT * (LATER + 2) && m_sent == REPEAT * (LATER + 2));
    return 0;
}
