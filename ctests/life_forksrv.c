/* Issue 25: the fork server (mln_fork_server_set), from C: a master that runs a thread
 * holding a mutex across a rolling restart and a crash restart; every new worker is made
 * by the server (a single-threaded copy of the process made at the end of mln_fork), so
 * it takes that mutex at its start without hanging (a worker the master forked itself
 * would get the mutex locked for ever: its rolling restart would time out, this test
 * fails without the server).
 * CTEST_STANDALONE_ONLY: mln_fork_server_set is an extension of the standalone build.
 * Checks:
 * - after mln_fork: one process named mln-forkserver whose parent is the master, not in
 *   the list, never named by an event;
 * - mln_fork_rolling_restart(ev, 1, 5000, 5000) with the thread holding the mutex:
 *   STARTED for each replacement (slots 0 and 1), each replacement's hello says its parent
 *   is the master and its generation is 1 (a copy of the process when mln_fork returned:
 *   the master set 2 before the call), the old workers EXITED (STOPPED, status 0), then
 *   ROLLING_DONE (status 0);
 * - a replacement that exits with status 7: EXITED (CRASHED, exited 1, status 7, a
 *   restart due), restarted by the server (STARTED in its slot, hello from the master's
 *   child);
 * - after mln_framework_init: the server is gone (and reaped: no such pid), every process
 *   started said hello, 5 in all. */
#include "life.h"
#include "procs.h"

#define N 2
#define T_HI 6201
#define T_EXIT 6202

static int generation = 1;
static pid_t server;
static int phase; /* 0 starting, 1 rolling, 2 crash restart, 3 done */
static int hellos_in_phase, started_in_phase, old_exited, rolling_done;
static pid_t old_pid[N], crashed_pid;
static int event_tag;

static void master_hi(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int hi[3];
    (void)udata_ptr;
    CHECK(getpid() == life_master);
    CHECK(len == sizeof(hi));
    memcpy(hi, buf, sizeof(hi));
    CHECK(hi[0] == (int)f->pid && f->pid != server);
    CHECK(hi[1] == (int)life_master); /* the master's child, whoever made it */
    CHECK(hi[2] == 1);                /* a copy of the process as mln_fork left it */
    CHECK(life_pids_add(&life_hellos, f->pid));
    life_read_starts();
    ++hellos_in_phase;
    if (phase == 0 && hellos_in_phase == N) {
        phase = 1;
        hellos_in_phase = started_in_phase = 0;
        generation = 2;
        CHECK(mln_fork_rolling_restart(ev, 1, 5000, 5000) == 0);
    } else if (phase == 2 && hellos_in_phase == 1) {
        phase = 3;
        mln_event_break_set(ev);
    }
}

static int send_exit(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (crashed_pid != 0) return 0;
    crashed_pid = f->pid;
    CHECK(mln_ipc_master_send_prepare(ev, T_EXIT, NULL, 0, f) == 0);
    return 0;
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    CHECK(getpid() == life_master);
    CHECK(data == &event_tag);
    CHECK(e->pid != server);
    switch (e->type) {
    case M_IPC_CHILD_STARTED:
        CHECK(f != NULL && e->slot < N);
        if (phase == 0) old_pid[e->slot] = e->pid;
        else CHECK(phase == 1 || phase == 2);
        ++started_in_phase;
        break;
    case M_IPC_CHILD_EXITED:
        if (phase == 1) {
            CHECK(e->pid == old_pid[e->slot]);
            CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
            ++old_exited;
        } else {
            CHECK(phase == 2 && e->pid == crashed_pid);
            CHECK(e->how == M_IPC_END_CRASHED && e->exited == 1 && e->status == 7);
            CHECK(e->restart_in_ms >= 0);
        }
        break;
    case M_IPC_ROLLING_DONE:
        CHECK(phase == 1 && f == NULL);
        if (e->status != 0) fprintf(stderr, "master: rolling restart aborted\n");
        CHECK(e->status == 0);
        CHECK(old_exited == N && started_in_phase == N && hellos_in_phase == N);
        rolling_done = 1;
        phase = 2;
        hellos_in_phase = started_in_phase = 0;
        CHECK(mln_fork_iterate(ev, send_exit, NULL) == 0);
        CHECK(crashed_pid != 0);
        break;
    default:
        fprintf(stderr, "master: unexpected event %d\n", (int)e->type);
        CHECK(0);
    }
}

static void worker_exit(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    exit(7);
}

static void worker_process(mln_event_t *ev)
{
    int hi[3];
    CHECK(getpid() != life_master);
    /* Locked for ever in a copy of the master made while the thread held it. */
    CHECK(pthread_mutex_lock(&held) == 0);
    CHECK(pthread_mutex_unlock(&held) == 0);
    hi[0] = (int)getpid();
    hi[1] = (int)getppid();
    hi[2] = generation;
    CHECK(mln_ipc_worker_send_prepare(ev, T_HI, hi, sizeof(hi)) == 0);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 240 : 50);
    server = proc_find_server(getpid(), NULL);
    if (server <= 0) fprintf(stderr, "master: no fork server (%d)\n", (int)server);
    CHECK(server > 0);
    holder_start();
}

static int global_init(void)
{
    ctest_workers(N);
    mln_fork_server_set(1);
    life_max_workers = 5;
    if (!mln_ipc_handler_register(T_HI, master_hi, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_EXIT, NULL, worker_exit, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    life_init();
    mln_ipc_child_event_handler_set(on_event, &event_tag);
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 3 && rolling_done);
    CHECK(life_started.n == 5);
    /* The end of the framework ended the server and reaped it. */
    CHECK(kill(server, 0) == -1 && errno == ESRCH);
    holder_release();
    return 0;
}
