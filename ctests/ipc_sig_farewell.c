/* CTEST_STANDALONE_ONLY: a worker's end of loop is Melon's framework's there (docs/melon-build.md) */
/* The worker side of ipc_sig_goodbye: a worker whose SIGTERM handler sends a farewell to
 * its master and breaks its own loop must have that frame written before it leaves
 * mln_framework_init. Three workers keep their loops busy (a 0 ms timer pinging the
 * master, so the signal often interrupts the library and the farewell is parked); once all
 * said hello, the master sends each a SIGTERM from another process; it must receive the
 * three farewells (their replacements' hellos are ignored). Repeated ROUNDS times, each in
 * a fresh process. The defect it was written for: the worker returned without writing what was parked or
 * still queued. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 8801
#define T_PING 8802
#define T_FAREWELL 8803
#define WORKERS 3
#define ROUNDS 10

static mln_event_t *wev;
static int hellos, farewells, pids[WORKERS];

static void on_term(int sig)
{
    int e = errno, pid = (int)getpid();
    (void)sig;
    (void)mln_ipc_worker_send_prepare(wev, T_FAREWELL, &pid, sizeof(pid));
    mln_event_break_set(wev);
    errno = e;
}

static void busy(mln_event_t *ev, void *data)
{
    (void)data;
    (void)mln_ipc_worker_send_prepare(ev, T_PING, "p", 1);
    CHECK(mln_event_timer_set(ev, 0, NULL, busy) != NULL);
}

static void worker_process(mln_event_t *ev)
{
    struct sigaction sa;
    int pid = (int)getpid();
    wev = ev;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &pid, sizeof(pid)) == 0);
    CHECK(mln_event_timer_set(ev, 0, NULL, busy) != NULL);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int i;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(int));
    if (hellos >= WORKERS) return; /* a replacement */
    memcpy(&pids[hellos++], buf, sizeof(int));
    if (hellos == WORKERS && fork() == 0) {
        usleep(2000);
        for (i = 0; i < WORKERS; ++i) kill(pids[i], SIGTERM);
        _exit(0);
    }
}

static void master_ping(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
}

static void master_farewell(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    if (++farewells == WORKERS) mln_event_break_set(ev);
}

static void give_up(mln_event_t *ev, void *data)
{
    (void)data;
    mln_event_break_set(ev);
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_event_timer_set(ev, 10000, NULL, give_up) != NULL);
}

static int global_init(void)
{
    ctest_workers(WORKERS);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_PING, master_ping, NULL, NULL, NULL)) return -1;
    return mln_ipc_handler_register(T_FAREWELL, master_farewell, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    int round, lost = 0;
    for (round = 0; round < ROUNDS; ++round) {
        int report[2], got = 0;
        pid_t pid;
        CHECK(pipe(report) == 0);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
            pid_t master = getpid();
            close(report[0]);
            CHECK(ctest_framework_init(&a) == 0);
            if (getpid() != master) _exit(0); /* a worker that ended its own loop */
            CHECK(write(report[1], &farewells, sizeof(farewells)) == sizeof(farewells));
            _exit(0);
        }
        close(report[1]);
        CHECK(read(report[0], &got, sizeof(got)) == sizeof(got));
        close(report[0]);
        CHECK(wait_status(pid) == 0);
        if (got != WORKERS) {
            fprintf(stderr, "round %d: %d farewells of %d\n", round, got, WORKERS);
            ++lost;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    CHECK(lost == 0);
    return 0;
}
