/* A send refused because the peer is gone (-1, ESRCH) queued nothing: a worker is killed,
 * and while the master's loop has not handled its death yet (the master is in a handler
 * that waits until the process has exited), a small send is accepted (queued: the socket
 * does not know yet) and a 1 MiB send meets the dead socket and is refused. The stats must
 * count one queued frame, not two (the refused one is not "lost" either: the program was
 * told).
 * The defect it was written for: the refused frame stayed counted as queued, and the log
 * said 2 queued frames were lost. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 9101
#define T_SMALL 9102
#define T_BIG 9103

static int done;

static void worker_process(mln_event_t *ev)
{
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, NULL, 0) == 0);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    static char big[1 << 20];
    mln_fork_t *f = f_ptr;
    mln_ipc_stats_t st;
    int r;
    (void)buf; (void)len; (void)udata_ptr;
    if (done) return; /* the replacement */
    done = 1;
    CHECK(kill(f->pid, SIGKILL) == 0);
    while (!pid_exited(f->pid)) usleep(1000); /* polling a process we cannot be told about */
    CHECK(mln_ipc_master_send_prepare(ev, T_SMALL, "x", 1, f) == 0);
    errno = 0;
    r = mln_ipc_master_send_prepare(ev, T_BIG, big, sizeof(big), f);
    CHECK(r == -1 && errno == ESRCH);
    CHECK(mln_ipc_stats_get(f, &st) == 0);
    fprintf(stderr, "master: queued %llu frame(s), %llu bytes\n",
            (unsigned long long)st.queued_frames, (unsigned long long)st.queued_bytes);
    CHECK(st.queued_frames == 1);
    CHECK(st.queued_bytes == 9);
    mln_event_break_set(ev);
}

static int global_init(void)
{
    ctest_workers(1);
    return mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, worker_process};
    CHECK(ctest_framework_init(&a) == 0);
    CHECK(done == 1);
    return 0;
}
