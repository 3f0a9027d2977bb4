/* A send's `ev` is never dereferenced (the header: "must not be NULL but is otherwise not
 * used"), so a loop pointer the program has freed does no harm:
 *   1. in the master, a loop is created and freed and its memory reused (filled with 0xff),
 *      then 100 sends to a live worker go through that dangling pointer: each returns 0
 *      and the worker receives all 100, in order;
 *   2. after mln_framework_init returned (the framework freed its loop and ended the
 *      workers), sends through the framework's old loop pointer to the old child pointer
 *      return -1 with ESRCH, from normal context and from a signal handler (standalone
 *      build: Melon's framework leaves its workers running).
 * The defect it was written for: the send read the freed loop to decide whether a signal handler had
 * interrupted it: with the memory reused, every send after the 32nd was refused (EAGAIN)
 * and memcheck reported invalid reads. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_SEQ 7901
#define T_COUNT 7902
#define N 100

static mln_event_t *old_ev;
static mln_fork_t *old_f;
static int sig_result = 1, sig_errno;

static int first(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    *(mln_fork_t **)data = f;
    return -1;
}

static void worker_seq(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n = (long)*udata_ptr;
    int seq;
    (void)f_ptr;
    CHECK(len == sizeof(seq));
    memcpy(&seq, buf, sizeof(seq));
    CHECK(seq == n);
    *udata_ptr = (void *)++n;
    if (n == N) CHECK(mln_ipc_worker_send_prepare(ev, T_COUNT, &n, sizeof(n)) == 0);
}

static void master_count(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    long n;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(n));
    memcpy(&n, buf, sizeof(n));
    CHECK(n == N);
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    mln_event_t *tmp = mln_event_new();
    void *reuse[16];
    int i;
    old_ev = ev;
    CHECK(mln_fork_iterate(ev, first, &old_f) == -1 && old_f != NULL);
    CHECK(tmp != NULL);
    mln_event_free(tmp);
    for (i = 0; i < 16; ++i) {
        reuse[i] = malloc(64 + 64 * (size_t)i);
        CHECK(reuse[i] != NULL);
        memset(reuse[i], 0xff, 64 + 64 * (size_t)i);
    }
    for (i = 0; i < N; ++i) {
        int r;
        errno = 0;
        r = mln_ipc_master_send_prepare(tmp, T_SEQ, &i, sizeof(i), old_f);
        if (r != 0) fprintf(stderr, "send %d through a freed loop: errno %d\n", i, errno);
        CHECK(r == 0);
    }
    for (i = 0; i < 16; ++i) free(reuse[i]);
}

static void on_usr1(int sig)
{
    (void)sig;
    errno = 0;
    sig_result = mln_ipc_master_send_prepare(old_ev, T_SEQ, "x", 1, old_f);
    sig_errno = errno;
}

static int global_init(void)
{
    ctest_workers(1);
    if (!mln_ipc_handler_register(T_SEQ, NULL, worker_seq, NULL, (void *)0)) return -1;
    return mln_ipc_handler_register(T_COUNT, master_count, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    CHECK(ctest_framework_init(&a) == 0);
#ifdef CTEST_MELON
    /* Melon's framework leaves its workers running: the old child is still live. */
    kill(old_f->pid, SIGKILL);
    return 0;
#endif
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(old_ev, T_SEQ, "x", 1, old_f) == -1 && errno == ESRCH);
    CHECK(signal(SIGUSR1, on_usr1) != SIG_ERR);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(sig_result == -1 && sig_errno == ESRCH);
    return 0;
}
