/* Worker events (mln_ipc_child_event_handler_set): start, crash by exit status, crash by
 * signal, in order per slot; a worker's STARTED before its first frame (its hello). Two
 * supervised workers; each says hello from worker_process (life.h). The master's
 * child-event handler records every event and checks:
 * - no event before the master's loop runs (none recorded when master_process runs);
 * - STARTED for slots 0 and 1: restarts 0, f the record of the child (f->pid == e->pid,
 *   visited by mln_fork_iterate);
 * - once both started, worker 0 is told to die: it sends 10 numbered frames, waits (on its
 *   loop) until its queue is written, then exit(3). EXITED slot 0: how CRASHED, exited 1,
 *   status 3, restarts 0, restart_in_ms >= 0, frames_lost 0, f the same record (readable:
 *   f->pid == e->pid), the process gone, every one of its frames (hello and the 10) handed
 *   to the master's handlers before the event, f no longer visited by mln_fork_iterate and
 *   a send to it -1 ESRCH. Then STARTED slot 0: restarts 1, a new pid and a new record;
 * - then worker 1 the same way but raise(SIGSEGV) (default action, no core): EXITED slot 1
 *   exited 0, status SIGSEGV; then STARTED slot 1 with restarts 1;
 * - per slot exactly STARTED, EXITED, STARTED, and nothing else (no GAVE_UP, no
 *   ROLLING_DONE); 4 worker processes in all, each said hello. Every process reports
 *   failures to the master (life.h). */
#include "life.h"
#include <sys/resource.h>

#define N 2
#define NBYE 10
#define T_DIE 2201
#define T_BYE 2202

struct slot { int state; mln_fork_t *f; pid_t pid, first_pid; mln_fork_t *first_f; };
static struct slot slots[N];
static int master_started, done, byes_of[2]; /* byes of the first worker of slot 0, 1 */
static pid_t first_pid[N];

/* Worker: after its frames are written, die as told. */
static void worker_die_now(mln_event_t *ev, void *data)
{
    int mode = (int)(long)data;
    static int turns;
    mln_ipc_stats_t st;
    CHECK(mln_ipc_stats_get(NULL, &st) == 0);
    if (st.queued_frames != 0) {
        CHECK(++turns < 100000);
        CHECK(mln_event_timer_set(ev, 1, data, worker_die_now) != NULL);
        return;
    }
    if (mode == 0) exit(3);
    {
        struct rlimit no_core = {0, 0};
        CHECK(setrlimit(RLIMIT_CORE, &no_core) == 0);
        signal(SIGSEGV, SIG_DFL); /* life.h's handler would report it */
        /* raise, not a bad access: valgrind reports only a fault the kernel raised. */
        raise(SIGSEGV);
        _exit(9);
    }
}

static void worker_die(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int mode, i;
    (void)f_ptr; (void)udata_ptr;
    CHECK(getpid() != life_master);
    CHECK(len == sizeof(int));
    memcpy(&mode, buf, sizeof(int));
    for (i = 0; i < NBYE; ++i)
        CHECK(mln_ipc_worker_send_prepare(ev, T_BYE, &i, sizeof(i)) == 0);
    CHECK(mln_event_timer_set(ev, 0, (void *)(long)mode, worker_die_now) != NULL);
}

static void master_bye(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    int seq, k;
    (void)ev; (void)udata_ptr;
    CHECK(len == sizeof(int));
    memcpy(&seq, buf, sizeof(int));
    k = f->pid == first_pid[0] ? 0 : f->pid == first_pid[1] ? 1 : -1;
    CHECK(k >= 0);
    CHECK(seq == byes_of[k]);
    ++byes_of[k];
}

static void tell_die(mln_event_t *ev, int s)
{
    int mode = s;
    CHECK(mln_ipc_master_send_prepare(ev, T_DIE, &mode, sizeof(mode), slots[s].f) == 0);
}

static void check_done(mln_event_t *ev)
{
    if (slots[0].state == 3 && slots[1].state == 3 && life_hellos.n == 2 * N && !done) {
        done = 1;
        mln_event_break_set(ev);
    }
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    int i, started = 0;
    /* Its STARTED came before its first frame (events go before the frames of a turn). */
    for (i = 0; i < life_nevents; ++i)
        if (life_events[i].e.type == M_IPC_CHILD_STARTED && life_events[i].e.pid == f->pid)
            started = 1;
    CHECK(started);
    check_done(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    const struct life_event *x = life_event_record(f, e);
    struct life_kids kids;
    struct slot *s;
    (void)x;
    CHECK(data == (void *)&slots);
    CHECK(master_started);
    CHECK(e->type == M_IPC_CHILD_STARTED || e->type == M_IPC_CHILD_EXITED);
    CHECK(e->slot < N);
    s = &slots[e->slot];
    CHECK(f != NULL && f->pid == e->pid);
    life_kids_collect(ev, &kids);
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(s->state == 0 || s->state == 2);
        CHECK(life_kids_index(&kids, f) >= 0);
        CHECK(kill(e->pid, 0) == 0);
        if (s->state == 0) {
            CHECK(e->restarts == 0);
            s->first_pid = first_pid[e->slot] = e->pid;
            s->first_f = f;
        } else {
            CHECK(e->restarts == 1);
            CHECK(e->pid != s->first_pid);
            CHECK(f != s->first_f); /* a replacement never reuses its predecessor's record */
        }
        s->f = f;
        s->pid = e->pid;
        ++s->state;
        if (slots[0].state == 1 && slots[1].state == 1) tell_die(ev, 0);
        else if (e->slot == 0 && s->state == 3) tell_die(ev, 1);
        else check_done(ev);
        return;
    }
    /* EXITED */
    CHECK(s->state == 1);
    CHECK(f == s->f && e->pid == s->pid);
    CHECK(e->how == M_IPC_END_CRASHED);
    if (e->slot == 0) CHECK(e->exited == 1 && e->status == 3);
    else CHECK(e->exited == 0 && e->status == SIGSEGV);
    CHECK(e->restarts == 0);
    CHECK(e->restart_in_ms >= 0 && e->restart_in_ms <= 10000);
    CHECK(e->frames_lost == 0);
    CHECK(pid_exited(e->pid));
    /* Everything it sent was handed to the handlers before. */
    CHECK(life_pids_has(&life_hellos, e->pid));
    CHECK(byes_of[e->slot] == NBYE);
    /* Gone from the list; sends refused. */
    CHECK(life_kids_index(&kids, f) < 0);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_DIE, NULL, 0, f) == -1 && errno == ESRCH);
    s->state = 2;
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 180 : 30);
    CHECK(life_nevents == 0);
    mln_ipc_child_event_handler_set(on_event, &slots);
    master_started = 1;
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = 2 * N;
    life_on_hello = on_hello;
    if (!mln_ipc_handler_register(T_DIE, NULL, worker_die, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BYE, master_bye, NULL, NULL, NULL)) return -1;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    int s, i, k;
    static const int want[3] = {M_IPC_CHILD_STARTED, M_IPC_CHILD_EXITED, M_IPC_CHILD_STARTED};
    life_init();
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    if (!done) life_events_dump();
    CHECK(done);
    CHECK(life_nevents == 3 * N);
    for (s = 0; s < N; ++s) {
        for (i = k = 0; i < life_nevents; ++i) {
            if (life_events[i].e.slot != (mln_u32_t)s) continue;
            CHECK(k < 3 && (int)life_events[i].e.type == want[k]);
            ++k;
        }
        CHECK(k == 3);
    }
    return 0;
}
