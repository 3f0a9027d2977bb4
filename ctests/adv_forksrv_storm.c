/* Adversarial: restart storms through the fork server (mln_fork_server_set), with a master
 * thread holding a lock the workers take at their start (a worker the master forked
 * itself would hang on it).
 * CTEST_STANDALONE_ONLY: mln_fork_server_set is an extension of the standalone build.
 * - 6 workers; 6 rounds in which the master kills every child at once (SIGKILL): each
 *   round ends when every slot's new worker said hello, with the master as its parent;
 *   in round 2 the master also starts 3 more workers with mln_fork_restart from a handler
 *   (9 from then on); in round 4 it spawns a program (/bin/sh -c 'exit 3', not
 *   supervised) through the server, whose EXITED event comes.
 * - After each round: the master's children are exactly its live workers and the one
 *   fork server, none of them a zombie (every killed worker was reaped).
 * - After mln_framework_init: the master has no child left at all (the server too was
 *   reaped), and no process whose parent is the master exists. */
#define _GNU_SOURCE
#include "ctest.h"
#include "procs.h"
#include <dirent.h>
#include <sys/resource.h>
#include "mln_event.h"

#define N 6
#define EXTRA 3
#define ROUNDS 6
#define T_HI 9201

static pid_t master_pid;
static pid_t spawned_pid = -1;

static int round_no, hellos, want = N, exited, spawned_exited;
static mln_event_t *mev;

struct tally { int n, zombies, servers; };

static void tally_one(const struct proc_child *c, void *data)
{
    struct tally *t = data;
    if (c->pid == spawned_pid) return; /* the spawned program, reaped by the kernel */
    ++t->n;
    if (c->state == 'Z') ++t->zombies;
    if (c->server) ++t->servers;
}

/* Children of `parent`: how many, how many zombies, how many named mln-forkserver. */
static void children_of(pid_t parent, int *n, int *zombies, int *servers)
{
    struct tally t = {0, 0, 0};
    proc_children(parent, tally_one, &t);
    *n = t.n;
    *zombies = t.zombies;
    *servers = t.servers;
}

/* The highest open descriptor. */
static int highest_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int hi = -1, me;
    CHECK(d != NULL);
    me = dirfd(d);
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != me && fd > hi) hi = fd;
    }
    closedir(d);
    return hi;
}

static int kill_one(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)data;
    CHECK(kill(f->pid, SIGKILL) == 0);
    return 0;
}

static int count_one(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev;
    if (f->n_args == 0) ++*(int *)data; /* workers; the spawned program may still run */
    return 0;
}

static void next_round(mln_event_t *ev, void *data)
{
    int n, z, s, live = 0;
    (void)data;
    CHECK(mln_fork_iterate(ev, count_one, &live) == 0);
    children_of(master_pid, &n, &z, &s);
    if (live != want || n != live + 1 || z != 0 || s != 1)
        fprintf(stderr, "round %d: %d listed (%d expected), %d children (%d zombies, %d "
                "servers)\n", round_no, live, want, n, z, s);
    CHECK(live == want && n == live + 1 && z == 0 && s == 1);
    if (round_no == ROUNDS) {
        if (spawned_exited) {
            mln_event_break_set(ev);
            return;
        }
        /* The spawned program's EXITED has not come yet. */
        mln_event_timer_set(ev, 10, NULL, next_round);
        return;
    }
    ++round_no;
    hellos = 0;
    CHECK(mln_fork_iterate(ev, kill_one, NULL) == 0);
    if (round_no == 4) {
        char *args[] = {"/bin/sh", "-c", "exit 3"};
        CHECK(mln_fork_spawn(M_PST_DFL, args, 3, ev) == 0);
    }
}

static void master_hi(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    mln_fork_t *f = f_ptr;
    int hi[2];
    int i;
    (void)u;
    CHECK(getpid() == master_pid && len == sizeof(hi));
    memcpy(hi, buf, sizeof(hi));
    CHECK(hi[0] == (int)f->pid && hi[1] == (int)master_pid);
    if (++hellos < want) return;
    if (round_no == 2 && want == N) {
        /* Three more, forked from a handler. */
        for (i = 0; i < EXTRA; ++i) CHECK(mln_fork_restart(ev) == 1);
        CHECK(getpid() == master_pid);
        want = N + EXTRA;
        return;
    }
    if (round_no == 5 && !valgrind()) {
        /* At the descriptor limit the master cannot receive the new child's socket: the
         * restart fails, and the child the server made is killed and reaped. */
        struct rlimit old, low;
        int before = count_fds(), n, z, s, live = 0, fill[512], nfill, r, e;
        CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
        low = old;
        low.rlim_cur = (rlim_t)highest_fd() + 1;
        CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
        /* Every descriptor below the limit in use. */
        nfill = 0;
        while (nfill < 512 && (fill[nfill] = dup(0)) >= 0) ++nfill;
        if (!(nfill < 512 && errno == EMFILE)) fprintf(stderr, "nfill %d errno %d hi %d before %d\n", nfill, errno, highest_fd(), before);
        CHECK(nfill < 512 && errno == EMFILE);
        errno = 0;
        r = mln_fork_restart(ev);
        e = errno;
        CHECK(getpid() == master_pid);
        while (nfill > 0) close(fill[--nfill]);
        CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
        if (r != -1) fprintf(stderr, "restart at the limit: %d (errno %d)\n", r, e);
        CHECK(r == -1);
        CHECK(count_fds() == before);
        CHECK(mln_fork_iterate(ev, count_one, &live) == 0);
        children_of(master_pid, &n, &z, &s);
        if (n != live + 1 || z != 0 || s != 1)
            fprintf(stderr, "EMFILE: %d listed, %d children (%d zombies, %d servers)\n", live, n,
                    z, s);
        CHECK(live == want && n == live + 1 && z == 0 && s == 1);
    }
    /* From a timer: the last EXITED events and reaps settle first. */
    mln_event_timer_set(ev, 20, NULL, next_round);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    (void)ev; (void)data;
    CHECK(getpid() == master_pid);
    if (e->type == M_IPC_CHILD_STARTED && f != NULL && f->n_args > 0) spawned_pid = e->pid;
    if (e->type != M_IPC_CHILD_EXITED) return;
    if (e->pid == spawned_pid) {
        spawned_exited = 1;
        CHECK(e->restart_in_ms < 0);
        return;
    }
    ++exited;
    CHECK(e->how == M_IPC_END_CRASHED || e->how == M_IPC_END_KILLED);
    CHECK(e->restart_in_ms >= 0);
}

static void worker_process(mln_event_t *ev)
{
    int hi[2];
    CHECK(pthread_mutex_lock(&held) == 0);
    CHECK(pthread_mutex_unlock(&held) == 0);
    hi[0] = (int)getpid();
    hi[1] = (int)getppid();
    CHECK(mln_ipc_worker_send_prepare(ev, T_HI, hi, sizeof(hi)) == 0);
}

static void master_process(mln_event_t *ev)
{
    mev = ev;
    holder_start();
}

static int global_init(void)
{
    ctest_workers(N);
    mln_fork_server_set(1);
    if (!mln_ipc_handler_register(T_HI, master_hi, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    int n, z, s, st;
    master_pid = getpid();
    alarm(55);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(getpid() == master_pid);
    CHECK(round_no == ROUNDS && spawned_exited);
    CHECK(exited >= N * 2 + (N + EXTRA) * (ROUNDS - 2));
    holder_release();
    children_of(master_pid, &n, &z, &s);
    if (n != 0) fprintf(stderr, "after the end: %d children (%d zombies, %d servers)\n", n, z, s);
    CHECK(n == 0);
    CHECK(waitpid(-1, &st, WNOHANG | __WALL) == -1 && errno == ECHILD);
    return 0;
}
