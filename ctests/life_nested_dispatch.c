/* CTEST_STANDALONE_ONLY: Melon's loop never reports a descriptor again while its handler runs, so a nested dispatch cannot receive on the channel being handled */
/* Lifecycle item 3: a handler that runs the event loop itself (nested dispatch) keeps a
 * valid `buf`. One worker.
 * Worker side: the master sends a request (100 B .. 200 KB, a pattern); the worker's
 * handler asks the master for an answer and runs `while (!answered) mln_event_dispatch(ev);`.
 * The answer (64 KB .. 300 KB) must reach the nested handler intact, and afterwards the
 * outer handler's `buf` must still hold its own request, byte for byte (and `len` its
 * length).
 * Master side, the same the other way round: a worker's frame makes a master handler ask
 * the worker for a large answer and dispatch until it arrived; its `buf` must stay intact.
 * Seven size pairs each way, including a 300 KB answer under a 200 KB request. The worker
 * must never die (a second worker start fails the test), and every process reports
 * failures to the master (life.h).
 * Today: the nested receive reuses the receive buffer the outer `buf` points into: the
 * request is overwritten by the answer (the check fails), and when the answer needs a
 * larger buffer the old one is freed under the outer handler (SIGSEGV / invalid read). */
#include "life.h"

#define T_REQ 6201    /* master -> worker: the outer request */
#define T_ASK 6202    /* worker -> master: "answer request k" */
#define T_ANSWER 6203 /* master -> worker: the answer */
#define T_DONE 6204   /* worker -> master: request k done (its buf was intact) */
#define T_MREQ 6205   /* worker -> master: the outer frame of the master-side case */
#define T_MASK 6206   /* master -> worker: "answer k" */
#define T_MANSWER 6207 /* worker -> master */
#define T_MGO 6208    /* master -> worker: send the master-side case k */

struct size_case { mln_u32_t req, answer; };
static const struct size_case cases[] = {
    {100, 64 * 1024}, {100, 100 * 1024}, {1000, 200 * 1024}, {100, 300 * 1024},
    {64 * 1024, 100 * 1024}, {200 * 1024, 300 * 1024}, {16, 256 * 1024 + 1},
};
#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

static int wcase, mcase, answered;

/* Byte i of pattern `seed`. */
static unsigned char pat(unsigned seed, size_t i)
{
    return (unsigned char)((i * 131u + seed * 7919u + (i >> 9)) & 0xff);
}

static unsigned char *make(unsigned seed, size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    size_t i;
    CHECK(b != NULL);
    for (i = 0; i < n; ++i) b[i] = pat(seed, i);
    return b;
}

/* Index of the first wrong byte, or -1. */
static long bad_at(const void *buf, size_t n, unsigned seed)
{
    const unsigned char *b = buf;
    size_t i;
    for (i = 0; i < n; ++i)
        if (b[i] != pat(seed, i)) return (long)i;
    return -1;
}

static void send_pat(mln_event_t *ev, mln_u32_t type, unsigned seed, size_t n, mln_fork_t *to)
{
    unsigned char *b = make(seed, n);
    if (to) CHECK(mln_ipc_master_send_prepare(ev, type, b, n, to) == 0);
    else CHECK(mln_ipc_worker_send_prepare(ev, type, b, n) == 0);
    free(b);
}

/* ---- worker side ---- */

static void worker_req(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k = wcase;
    long bad;
    (void)f_ptr; (void)udata_ptr;
    CHECK(k < NCASES && len == cases[k].req && bad_at(buf, len, 100 + k) < 0);
    answered = 0;
    CHECK(mln_ipc_worker_send_prepare(ev, T_ASK, &k, sizeof(k)) == 0);
    while (!answered) {
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
    bad = bad_at(buf, len, 100 + k);
    if (bad >= 0)
        fprintf(stderr, "worker: case %d (request %u B, answer %u B): the outer buf changed at byte %ld\n",
                k, cases[k].req, cases[k].answer, bad);
    CHECK(bad < 0);
    ++wcase;
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &k, sizeof(k)) == 0);
}

static void worker_answer(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(!answered);
    CHECK(len == cases[wcase].answer && bad_at(buf, len, 200 + wcase) < 0);
    answered = 1;
    mln_event_break_set(ev);
}

static void worker_mgo(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(k));
    memcpy(&k, buf, sizeof(k));
    send_pat(ev, T_MREQ, 300 + k, cases[k].req, NULL);
}

static void worker_mask(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(k));
    memcpy(&k, buf, sizeof(k));
    send_pat(ev, T_MANSWER, 400 + k, cases[k].answer, NULL);
}

/* ---- master side ---- */

static void master_ask(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k;
    (void)udata_ptr;
    CHECK(len == sizeof(k));
    memcpy(&k, buf, sizeof(k));
    CHECK(k == wcase);
    send_pat(ev, T_ANSWER, 200 + k, cases[k].answer, f_ptr);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k;
    (void)udata_ptr;
    CHECK(len == sizeof(k));
    memcpy(&k, buf, sizeof(k));
    CHECK(k == wcase);
    if (++wcase < NCASES) {
        send_pat(ev, T_REQ, 100 + wcase, cases[wcase].req, f_ptr);
        return;
    }
    /* Now the master side. */
    CHECK(mln_ipc_master_send_prepare(ev, T_MGO, &mcase, sizeof(mcase), f_ptr) == 0);
}

static void master_mreq(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int k = mcase;
    long bad;
    (void)udata_ptr;
    CHECK(k < NCASES && len == cases[k].req && bad_at(buf, len, 300 + k) < 0);
    answered = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_MASK, &k, sizeof(k), f_ptr) == 0);
    while (!answered) {
        mln_event_dispatch(ev);
        mln_event_break_reset(ev);
    }
    bad = bad_at(buf, len, 300 + k);
    if (bad >= 0)
        fprintf(stderr, "master: case %d (request %u B, answer %u B): the outer buf changed at byte %ld\n",
                k, cases[k].req, cases[k].answer, bad);
    CHECK(bad < 0);
    if (++mcase < NCASES) {
        CHECK(mln_ipc_master_send_prepare(ev, T_MGO, &mcase, sizeof(mcase), f_ptr) == 0);
        return;
    }
    life_check_live(ev, 1, 3, NULL, life_stop);
}

static void master_manswer(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    CHECK(!answered);
    CHECK(len == cases[mcase].answer && bad_at(buf, len, 400 + mcase) < 0);
    answered = 1;
    mln_event_break_set(ev);
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    send_pat(ev, T_REQ, 100, cases[0].req, f);
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
    if (!mln_ipc_handler_register(T_REQ, NULL, worker_req, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ANSWER, NULL, worker_answer, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MGO, NULL, worker_mgo, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MASK, NULL, worker_mask, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_ASK, master_ask, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MREQ, master_mreq, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_MANSWER, master_manswer, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(wcase == NCASES && mcase == NCASES && life_hellos.n == 1);
    return 0;
}
