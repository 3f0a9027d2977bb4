/* Issue 22: a graceful stop of a spawned supervised program that does not run our worker
 * side goes straight to SIGTERM at the deadline, and it is not restarted.
 *
 * 2 supervised workers (slots 0 and 1), then two supervised programs spawned with
 * mln_fork_spawn(M_PST_SUP, ...): this binary in --child mode, which says hello (its pid,
 * a raw frame) and then reads its descriptor, ignoring every frame, until end of file.
 * Checks:
 * - STARTED for each: the workers in slots 0 and 1, the programs in slots 2 and 3 in the
 *   order they were spawned, restarts 0, f the listed record;
 * - mln_fork_stop(ev, A, 300): 0; from then on A is not listed, a send to it and
 *   mln_ipc_stats_get(A) fail with ESRCH, a second stop of A fails with ESRCH;
 *   mln_fork_stop(NULL, ...) fails with EINVAL;
 * - A's EXITED: slot 2, how TERMINATED, killed by SIGTERM (exited 0, status SIGTERM) or an
 *   unknown status (exited -1, status -1: a C master ignores SIGCHLD, the kernel reaps an
 *   exec'd program; see lifecycle-api), restart_in_ms -1, not before the 300 ms deadline;
 * - 1 s later A has not been restarted: no STARTED since, no new process, 3 listed;
 * - mln_fork_stop(ev, NULL, deadline): the workers end STOPPED (exited 1, status 0) in
 *   slots 0 and 1, program B TERMINATED in slot 3; 4 processes in all.
 * Every process reports failures (life.h; the programs through their exit status). */
#include "life.h"

#define N 2
#define STOP_MS 300

static char self[4096]; /* this program's path (under valgrind /proc/self/exe is the tool) */
static pid_t pid_of_slot[N + 2];
static mln_fork_t *prog_a;
static pid_t prog_pid[2];
static int phase, n_started, n_exited;
static long t_stop;
static int event_tag;

/* The spawned program: hello with its pid, then read and ignore everything. */
static int child_mode(int argc, char *argv[])
{
    int fd = atoi(argv[argc - 1]);
    mln_u32_t h[3];
    char b[4096];
    ssize_t n;
    h[0] = 4 + sizeof(pid_t);
    h[1] = T_LIFE_HELLO;
    h[2] = (mln_u32_t)getpid();
    if (write(fd, h, sizeof(h)) != (ssize_t)sizeof(h)) return 11;
    while ((n = read(fd, b, sizeof(b))) != 0)
        if (n < 0 && errno != EINTR) return 12;
    return 0; /* the master closed the channel */
}

/* The programs spawned so far: the exec'd children in the list, in order. */
static int programs(mln_event_t *ev, mln_fork_t **out)
{
    struct life_kids k;
    int i, n = 0;
    life_kids_collect(ev, &k);
    for (i = 0; i < k.n; ++i)
        if (k.f[i]->etype == M_PET_EXE) out[n++] = k.f[i];
    return n;
}

static void spawn_one(mln_event_t *ev, int i)
{
    char a0[sizeof(self)], a1[] = "--child";
    char *args[2];
    mln_fork_t *p[4];
    memcpy(a0, self, sizeof(self));
    args[0] = a0;
    args[1] = a1;
    CHECK(mln_fork_spawn(M_PST_SUP, args, 2, ev) == 0);
    CHECK(getpid() == life_master);
    CHECK(programs(ev, p) == i + 1);
    prog_pid[i] = p[i]->pid;
    if (i == 0) prog_a = p[0];
}

static void stop_a(mln_event_t *ev)
{
    struct life_kids k;
    mln_ipc_stats_t st;
    int i;
    phase = 2;
    CHECK(prog_a->pid == prog_pid[0]);
    CHECK(mln_fork_stop(NULL, prog_a, STOP_MS) == -1 && errno == EINVAL);
    t_stop = now_ms();
    CHECK(mln_fork_stop(ev, prog_a, STOP_MS) == 0);
    CHECK(mln_ipc_master_send_prepare(ev, 9999, "x", 1, prog_a) == -1 && errno == ESRCH);
    CHECK(mln_ipc_stats_get(prog_a, &st) == -1 && errno == ESRCH);
    CHECK(mln_fork_stop(ev, prog_a, STOP_MS) == -1 && errno == ESRCH);
    life_kids_collect(ev, &k);
    CHECK(k.n == N + 1);
    for (i = 0; i < k.n; ++i) CHECK(k.pid[i] != prog_pid[0]);
}

/* 1 s after A's end: not restarted. */
static void after_a(mln_event_t *ev, void *data)
{
    struct life_kids k;
    int i;
    (void)data;
    CHECK(phase == 3);
    life_read_starts();
    CHECK(life_started.n == N + 2);
    CHECK(n_started == N + 2);
    life_kids_collect(ev, &k);
    CHECK(k.n == N + 1);
    for (i = 0; i < k.n; ++i)
        CHECK(k.pid[i] == pid_of_slot[0] || k.pid[i] == pid_of_slot[1] || k.pid[i] == pid_of_slot[N + 1]);
    CHECK(k.pid[0] != k.pid[1] && k.pid[1] != k.pid[2] && k.pid[0] != k.pid[2]);
    phase = 4;
    /* Long enough for a worker under valgrind to end on its own (its exit runs the leak
     * check); B ignores the quit and gets SIGTERM then. */
    CHECK(mln_fork_stop(ev, NULL, valgrind() ? 5000 : 1000) == 0);
    life_kids_collect(ev, &k);
    CHECK(k.n == 0);
}

static void maybe_next(mln_event_t *ev)
{
    if (phase == 0 && n_started == N && life_hellos.n == N) {
        phase = 1;
        spawn_one(ev, 0);
        spawn_one(ev, 1);
    } else if (phase == 1 && n_started == N + 2 && life_hellos.n == N + 2) {
        stop_a(ev);
    }
}

static void on_hello(mln_event_t *ev, mln_fork_t *f)
{
    (void)f;
    maybe_next(ev);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    CHECK(getpid() == life_master);
    CHECK(data == &event_tag);
    if (e->type == M_IPC_CHILD_STARTED) {
        CHECK(f != NULL && f->pid == e->pid);
        CHECK(e->restarts == 0);
        if (phase == 0) {
            CHECK(e->slot < N && f->etype == M_PET_DFL);
        } else {
            if (phase != 1) fprintf(stderr, "master: STARTED pid %d slot %u in phase %d\n", (int)e->pid, e->slot, phase);
            CHECK(phase == 1);
            CHECK(f->etype == M_PET_EXE && f->stype == M_PST_SUP);
            CHECK(e->slot == N || e->slot == N + 1);
            CHECK(e->pid == prog_pid[e->slot - N]);
        }
        CHECK(pid_of_slot[e->slot] == 0);
        pid_of_slot[e->slot] = e->pid;
        ++n_started;
        maybe_next(ev);
        return;
    }
    if (e->type == M_IPC_CHILD_EXITED) {
        long dt = now_ms() - t_stop;
        int unknown = e->exited == -1 && e->status == -1;
        CHECK(f != NULL && f->pid == e->pid);
        CHECK(e->slot < N + 2 && pid_of_slot[e->slot] == e->pid);
        if (phase == 2) {
            if (e->slot != N || e->how != M_IPC_END_TERMINATED || e->restart_in_ms != -1 || dt < STOP_MS - 10
                || !(unknown || (e->exited == 0 && e->status == SIGTERM)))
                fprintf(stderr, "master: EXITED pid %d slot %u how %d exited %d status %d "
                                "restart_in_ms %lld, %ld ms after the stop\n",
                        (int)e->pid, e->slot, (int)e->how, e->exited, e->status,
                        (long long)e->restart_in_ms, dt);
            CHECK(e->slot == N && e->pid == prog_pid[0]);
            CHECK(e->how == M_IPC_END_TERMINATED);
            CHECK(unknown || (e->exited == 0 && e->status == SIGTERM));
            CHECK(e->restart_in_ms == -1);
            /* SIGTERM at the deadline, not before (10 ms for clock rounding). */
            CHECK(dt >= STOP_MS - 10);
            fprintf(stderr, "master: program A ended %ld ms after its stop (exited %d, status %d)\n", dt,
                    e->exited, e->status);
            phase = 3;
            CHECK(mln_event_timer_set(ev, 1000, NULL, after_a) != NULL);
            return;
        }
        CHECK(phase == 4);
        CHECK(e->restart_in_ms == -1);
        if (e->slot < N) {
            CHECK(e->how == M_IPC_END_STOPPED && e->exited == 1 && e->status == 0);
        } else {
            CHECK(e->slot == N + 1 && e->pid == prog_pid[1]);
            CHECK(e->how == M_IPC_END_TERMINATED);
            CHECK(unknown || (e->exited == 0 && e->status == SIGTERM));
        }
        if (++n_exited == N + 1) mln_event_break_set(ev);
        return;
    }
    fprintf(stderr, "master: unexpected event %d\n", (int)e->type);
    CHECK(0);
}

static void master_process(mln_event_t *ev)
{
    life_master_watch(ev);
    life_watchdog(valgrind() ? 240 : 50);
}

static int global_init(void)
{
    ctest_workers(N);
    life_max_workers = N + 2;
    life_on_hello = on_hello;
    return life_register_common();
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, life_worker_hello};
    ssize_t n;
    if (argc >= 2 && strcmp(argv[1], "--child") == 0) return child_mode(argc, argv);
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(n > 0);
    self[n] = 0;
    life_init();
    mln_ipc_child_event_handler_set(on_event, &event_tag);
    if (ctest_framework_init(&a) < 0) return 1;
    life_master_end();
    CHECK(phase == 4 && n_exited == N + 1);
    CHECK(life_started.n == N + 2);
    return 0;
}
