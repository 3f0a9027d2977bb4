/* errno of every IPC/fork function that returns -1 or NULL (include/mln_ipc.h): each
 * failure sets its documented errno, and a success leaves errno alone (a sentinel set
 * before the call is still there after it).
 *   EINVAL   bad arguments of every function (NULL loop, child, buffer with a length,
 *            handler, stats output, spawn arguments; sizes and limits out of range)
 *   ESRCH    a stale mln_fork_t * (a child that died and whose death was handled), an
 *            unknown one, a worker-only call in the master (also before mln_fork_prepare),
 *            stats of NULL outside a worker, a master-only call in a worker
 *   EMSGSIZE above the maximum message size, and lengths that cannot be framed
 *   EAGAIN   the queue limit, master side (the worker blocks on a pipe) and worker side
 *            (the master blocks on a pipe)
 *   ENOMEM   a send whose copy cannot be allocated (RLIMIT_AS; not under valgrind)
 *   EMFILE   mln_fork_restart, mln_fork_spawn and (standalone) mln_fork without a free
 *            descriptor: the system call's errno (not checked under valgrind)
 * Also: mln_fork_iterate's -1 when the handler stops the walk keeps the handler's errno; a
 * send to a child that is gone but whose death the loop has not handled yet returns 0 (the
 * frame is lost, as in Melon). */
#include <stdint.h>
#include <sys/resource.h>
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO 7701
#define T_NOP 7702    /* no handler on either side */
#define T_BLOCK 7703  /* master -> worker: stop reading until pipe A says go */
#define T_WFLOOD 7704 /* worker -> master; the master stops reading at the first */
#define T_WOK 7705    /* worker -> master: the worker's checks passed */
#define T_BYE 7706    /* master -> worker: write T_LAST by hand and exit */
#define T_LAST 7707
#define T_UNUSED 7708
#define SMALL_MAX ((mln_size_t)16 << 10) /* after the ENOMEM check */
#define SMALL_LIMIT ((mln_size_t)64 << 10)
#define FLOOD (8 * 1024)
#define BIG ((size_t)32 << 20)
#define SENTINEL 12345

/* `call` succeeds (a true expression) and leaves errno alone. */
#define OK(call) do { \
    errno = SENTINEL; \
    CHECK(call); \
    if (errno != SENTINEL) { \
        fprintf(stderr, "%s:%d: %s succeeded but changed errno to %d (pid %d)\n", __FILE__, \
                __LINE__, #call, errno, (int)getpid()); \
        exit(2); \
    } } while (0)

/* `call` fails (a true expression) with errno `e`. */
#define FAILS(call, e) do { \
    errno = 0; \
    CHECK(call); \
    if (errno != (e)) { \
        fprintf(stderr, "%s:%d: %s: errno %d (%s), expected %s (pid %d)\n", __FILE__, \
                __LINE__, #call, errno, strerror(errno), #e, (int)getpid()); \
        exit(2); \
    } } while (0)

static int pipe_a[2], pipe_b[2];
static unsigned char buf[SMALL_MAX];
static unsigned char *big;
static mln_fork_t fake, *gen[3];
static int state, n_gen, finished, flood_seen;
static unsigned master_writable;

static void nop(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)b; (void)len; (void)u;
}

static int count_children(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

/* Stops the walk with a failed send's errno (EMSGSIZE). */
static int failing(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    return mln_ipc_master_send_prepare(ev, T_NOP, buf, (mln_size_t)-1, f);
}

static void wait_pipe(int fd)
{
    char c;
    ssize_t n;
    do n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) exit(3); /* the peer is gone */
    CHECK(n == 1);
}

static long vm_size_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    fclose(f);
    CHECK(kb > 0);
    return kb;
}

/* Before any fork: the checks that need no peer. */
static void no_peer(void)
{
    mln_event_t *ev = mln_event_new();
    mln_ipc_stats_t st;
    mln_ipc_cb_t *cb;
    char a0[] = "/bin/true";
    char *args[1], *null_arg[1] = {NULL};
    int n = 0;
    args[0] = a0;
    CHECK(ev != NULL);
    /* Not a worker (and not even prepared): worker-only calls give ESRCH. */
    FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, buf, 1) == -1, ESRCH);
    FAILS(mln_ipc_stats_get(NULL, &st) == -1, ESRCH);

    FAILS(mln_ipc_handler_register(T_UNUSED, NULL, NULL, NULL, NULL) == NULL, EINVAL);
    OK((cb = mln_ipc_handler_register(T_UNUSED, nop, NULL, NULL, NULL)) != NULL);
    mln_ipc_handler_unregister(cb);
    FAILS(mln_fork_master_ipc_handler_set(T_UNUSED, NULL, NULL) == -1, EINVAL);
    FAILS(mln_fork_worker_ipc_handler_set(T_UNUSED, NULL, NULL) == -1, EINVAL);
    OK(mln_fork_master_ipc_handler_set(T_UNUSED, nop, NULL) == 0);
    OK(mln_fork_worker_ipc_handler_set(T_UNUSED, nop, NULL) == 0);
    OK(mln_ipc_set_process_handlers() == 0);

    /* Sizes: max message 4 .. 2^32-1 and at most a non-zero limit; limit 0 or >= max. */
    FAILS(mln_ipc_max_message_set(0) == -1, EINVAL);
    FAILS(mln_ipc_max_message_set(3) == -1, EINVAL);
    FAILS(mln_ipc_max_message_set((mln_size_t)1 << 32) == -1, EINVAL);
    FAILS(mln_ipc_max_message_set(((mln_size_t)256 << 20) + 1) == -1, EINVAL); /* > limit */
    OK(mln_ipc_max_message_set(4) == 0);
    OK(mln_ipc_queue_limit_set(4) == 0);
    FAILS(mln_ipc_max_message_set(5) == -1, EINVAL); /* above the limit now */
    OK(mln_ipc_queue_limit_set(0) == 0);
    OK(mln_ipc_max_message_set(0xffffffffu) == 0);
    FAILS(mln_ipc_queue_limit_set(0xfffffffeu) == -1, EINVAL); /* below the max */
    FAILS(mln_ipc_queue_limit_set(1) == -1, EINVAL);
    OK(mln_ipc_max_message_set(64 << 20) == 0); /* the defaults again */
    OK(mln_ipc_queue_limit_set((mln_size_t)256 << 20) == 0);

    /* Sending: bad arguments come before the peer. */
    FAILS(mln_ipc_master_send_prepare(NULL, T_NOP, buf, 1, &fake) == -1, EINVAL);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, NULL) == -1, EINVAL);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, &fake) == -1, ESRCH); /* unknown */
    FAILS(mln_ipc_worker_send_prepare(NULL, T_NOP, buf, 1) == -1, EINVAL);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, (64 << 20) - 3, &fake) == -1, EMSGSIZE);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, (mln_size_t)-1, &fake) == -1, EMSGSIZE);
    FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, buf, 0xfffffffcu) == -1, EMSGSIZE);

    FAILS(mln_ipc_stats_get(NULL, NULL) == -1, EINVAL);
    FAILS(mln_ipc_stats_get(&fake, &st) == -1, ESRCH);
    FAILS(mln_fork_iterate(NULL, count_children, &n) == -1, EINVAL);
    OK(mln_fork_iterate(ev, count_children, &n) == 0 && n == 0);
    FAILS(mln_fork_spawn(M_PST_DFL, NULL, 1, NULL) == -1, EINVAL);
    FAILS(mln_fork_spawn(M_PST_DFL, args, 0, NULL) == -1, EINVAL);
    FAILS(mln_fork_spawn((enum proc_state_type)7, args, 1, NULL) == -1, EINVAL);
    FAILS(mln_fork_spawn(M_PST_DFL, null_arg, 1, NULL) == -1, EINVAL);
#ifndef CTEST_MELON /* the melon build keeps Melon's framework */
    FAILS(mln_framework_init(NULL) == -1, EINVAL);
#endif
    mln_event_free(ev);
}

/* In the master, with live child f and a loop: ENOMEM (a 32 MiB copy that cannot be
 * allocated; nothing queued, nothing counted). */
static void enomem(mln_event_t *ev, mln_fork_t *f)
{
    struct rlimit saved, r;
    mln_ipc_stats_t s1, s2;
    /* Something queued first (a handler's small frame waits for the end of the pass), so
     * the big one is copied into the queue rather than written from `big`. */
    OK(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, f) == 0);
    CHECK(mln_ipc_stats_get(f, &s1) == 0 && s1.queued_frames > 0);
    CHECK(getrlimit(RLIMIT_AS, &saved) == 0);
    r = saved;
    r.rlim_cur = (rlim_t)(vm_size_kb() + 1024) * 1024;
    CHECK(setrlimit(RLIMIT_AS, &r) == 0);
    errno = 0;
    CHECK(mln_ipc_master_send_prepare(ev, T_NOP, big, BIG, f) == -1);
    {
        int e = errno;
        CHECK(setrlimit(RLIMIT_AS, &saved) == 0);
        if (e != ENOMEM) {
            fprintf(stderr, "32 MiB send under RLIMIT_AS: errno %d (%s), expected ENOMEM\n",
                    e, strerror(e));
            exit(2);
        }
    }
    CHECK(mln_ipc_stats_get(f, &s2) == 0);
    CHECK(s2.queued_frames == s1.queued_frames && s2.queued_bytes == s1.queued_bytes);
    CHECK(s2.sends_refused == s1.sends_refused && s2.frames_sent == s1.frames_sent);
}

/* Descriptors exhausted: the fork functions fail with the system call's errno. Under
 * valgrind only -1 is checked: its emulated descriptor limit lets socketpair succeed with
 * descriptors it then refuses to use (EBADF). */
static void emfile(void)
{
    struct rlimit saved, r;
    char a0[] = "/bin/true";
    char *args[1];
    int filler[64], k = 0, d, rr;
    args[0] = a0;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    r = saved;
    r.rlim_cur = (rlim_t)count_fds() + 4;
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0);
    while ((d = dup(0)) >= 0) { CHECK(k < 64); filler[k++] = d; }
    CHECK(errno == EMFILE);
    errno = 0;
    rr = mln_fork_restart(NULL);
    if (rr == 0) _exit(0);
    CHECK(rr == -1 && (errno == EMFILE || valgrind()));
    errno = 0;
    CHECK(mln_fork_spawn(M_PST_DFL, args, 1, NULL) == -1 && (errno == EMFILE || valgrind()));
#ifndef CTEST_MELON /* the melon build's mln_fork skips a worker it cannot fork, as Melon */
    errno = 0;
    rr = mln_fork();
    if (rr == 0) _exit(0);
    CHECK(rr == -1 && (errno == EMFILE || valgrind()));
#endif
    while (k > 0) close(filler[--k]);
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
}

/* Worker: the master stops the worker's reading with T_BLOCK; then the worker's own checks
 * and its flood (EAGAIN); the writable callback reports. */
static void worker_block(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    mln_ipc_stats_t st;
    int n = 0;
    (void)f_ptr; (void)b; (void)len; (void)u;
    wait_pipe(pipe_a[0]);
    FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, NULL, 5) == -1, EINVAL);
    FAILS(mln_ipc_worker_send_prepare(NULL, T_NOP, buf, 1) == -1, EINVAL);
    FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, buf, SMALL_MAX - 3) == -1, EMSGSIZE);
    FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, buf, (mln_size_t)-1) == -1, EMSGSIZE);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, &fake) == -1, ESRCH);
    FAILS(mln_ipc_stats_get(NULL, NULL) == -1, EINVAL);
    FAILS(mln_ipc_stats_get(&fake, &st) == -1, ESRCH);
    OK(mln_ipc_stats_get(NULL, &st) == 0);
    OK(mln_fork_iterate(ev, count_children, &n) == 0 && n == 0);
    OK(mln_ipc_worker_send_prepare(ev, T_NOP, buf, SMALL_MAX - 4) == 0); /* the largest */
    /* The master blocks at the first T_WFLOOD: flood until refused. */
    for (;;) {
        errno = SENTINEL;
        if (mln_ipc_worker_send_prepare(ev, T_WFLOOD, buf, FLOOD) != 0) break;
        CHECK(errno == SENTINEL);
        CHECK(++n < 100000);
    }
    if (errno != EAGAIN) {
        fprintf(stderr, "worker flood: errno %d (%s), expected EAGAIN\n", errno, strerror(errno));
        exit(2);
    }
    CHECK(write(pipe_b[1], "g", 1) == 1);
}

static void worker_bye(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    mln_u32_t h[2] = {4, T_LAST};
    (void)ev; (void)f_ptr; (void)b; (void)len; (void)u;
    /* Written by hand (not queued): it must be out before this process is. */
    CHECK(write(mln_tcp_conn_fd_get(mln_fork_master_connection_get()), h, sizeof(h)) == sizeof(h));
    _exit(0);
}

static void writable(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)data;
    if (f != NULL) { /* the master: its flood to gen[0] drained */
        ++master_writable;
        return;
    }
    OK(mln_ipc_worker_send_prepare(ev, T_WOK, buf, 0) == 0);
}

static void worker_process(mln_event_t *ev)
{
    pid_t me = getpid();
    close(pipe_a[1]);
    close(pipe_b[0]);
    CHECK(mln_ipc_max_message_set(SMALL_MAX) == 0);
    CHECK(mln_ipc_queue_limit_set(SMALL_LIMIT) == 0);
    OK(mln_ipc_worker_send_prepare(ev, T_HELLO, &me, sizeof(me)) == 0);
}

/* Master. */
static void master_hello(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    mln_fork_t *f = f_ptr;
    mln_ipc_stats_t st;
    pid_t pid;
    int n = 0;
    (void)u;
    CHECK(len == sizeof(pid));
    memcpy(&pid, b, sizeof(pid));
    CHECK(n_gen < 3);
    gen[n_gen++] = f;
    if (n_gen == 1) {
        CHECK(state == 0);
        FAILS(mln_ipc_worker_send_prepare(ev, T_NOP, buf, 1) == -1, ESRCH); /* the master */
        FAILS(mln_ipc_stats_get(NULL, &st) == -1, ESRCH);
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, NULL, 5, f) == -1, EINVAL);
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, (64 << 20) - 3, f) == -1, EMSGSIZE);
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 0xfffffffcu, f) == -1, EMSGSIZE);
        FAILS(mln_ipc_stats_get(f, NULL) == -1, EINVAL);
        OK(mln_ipc_stats_get(f, &st) == 0);
        OK(mln_fork_iterate(ev, count_children, &n) == 0 && n == 1);
        OK(mln_fork_prepare() == 0); /* idempotent */
        OK(mln_ipc_master_send_prepare(ev, T_NOP, NULL, 0, f) == 0);
        /* The walk stops at the handler's failure, whose errno it keeps. */
        FAILS(mln_fork_iterate(ev, failing, NULL) == -1, EMSGSIZE);
        if (!valgrind()) enomem(ev, f);

        /* EAGAIN: the worker stops reading; small limit from here on. */
        OK(mln_ipc_max_message_set(SMALL_MAX) == 0);
        OK(mln_ipc_queue_limit_set(SMALL_LIMIT) == 0);
        OK(mln_ipc_master_send_prepare(ev, T_BLOCK, buf, 0, f) == 0);
        for (n = 0;; ++n) {
            errno = SENTINEL;
            if (mln_ipc_master_send_prepare(ev, T_NOP, buf, FLOOD, f) != 0) break;
            CHECK(errno == SENTINEL);
            CHECK(n < 100000);
        }
        if (errno != EAGAIN) {
            fprintf(stderr, "master flood: errno %d (%s), expected EAGAIN\n", errno,
                    strerror(errno));
            exit(2);
        }
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, FLOOD, f) == -1, EAGAIN); /* again */
        CHECK(write(pipe_a[1], "g", 1) == 1);
        state = 1;
        return;
    }
    if (n_gen == 2) {
        /* gen[0] was killed and its death handled (this is its replacement). */
        CHECK(state == 2);
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, gen[0]) == -1, ESRCH);
        FAILS(mln_ipc_master_send_prepare(ev, T_NOP, NULL, 0, gen[0]) == -1, ESRCH);
        FAILS(mln_ipc_stats_get(gen[0], &st) == -1, ESRCH);
        emfile();
        OK(mln_ipc_master_send_prepare(ev, T_BYE, buf, 0, f) == 0);
        state = 3;
        return;
    }
    CHECK(state == 4);
    FAILS(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, gen[1]) == -1, ESRCH);
    FAILS(mln_ipc_stats_get(gen[1], &st) == -1, ESRCH);
    finished = 1;
    mln_event_break_set(ev);
}

static void master_wflood(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)ev; (void)b; (void)u;
    CHECK(f_ptr == gen[0] && len == FLOOD);
    if (flood_seen++ == 0) wait_pipe(pipe_b[0]); /* stop reading until the worker's EAGAIN */
}

static void master_wok(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)ev; (void)b; (void)len; (void)u;
    CHECK(state == 1 && f_ptr == gen[0] && flood_seen > 0);
    state = 2;
    CHECK(kill(gen[0]->pid, SIGKILL) == 0);
}

static void master_last(mln_event_t *ev, void *f_ptr, void *b, mln_u32_t len, void **u)
{
    (void)b; (void)len; (void)u;
    CHECK(state == 3 && f_ptr == gen[1]);
    /* gen[1] wrote this and exited: its death is handled after this pass. Until then a
     * send is accepted (and the frame lost), as in Melon. */
    OK(mln_ipc_master_send_prepare(ev, T_NOP, buf, 1, gen[1]) == 0);
    state = 4;
}

static void watchdog(mln_event_t *ev, void *data)
{
    (void)ev; (void)data;
    fprintf(stderr, "watchdog: stuck in state %d, %d generation(s)\n", state, n_gen);
    exit(3);
}

static void master_process(mln_event_t *ev)
{
    close(pipe_a[0]);
    close(pipe_b[1]);
    CHECK(mln_event_timer_set(ev, valgrind() ? 240000 : 45000, NULL, watchdog) != NULL);
}

static int global_init(void)
{
    static const struct { mln_u32_t type; ipc_handler m, w; } h[] = {
        {T_HELLO, master_hello, NULL}, {T_BLOCK, NULL, worker_block},
        {T_WFLOOD, master_wflood, NULL}, {T_WOK, master_wok, NULL},
        {T_BYE, NULL, worker_bye},     {T_LAST, master_last, NULL},
    };
    size_t i;
    ctest_workers(1);
    OK((mln_ipc_writable_handler_set(writable, NULL), 1));
    for (i = 0; i < sizeof(h) / sizeof(h[0]); ++i)
        if (!mln_ipc_handler_register(h[i].type, h[i].m, h[i].w, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    big = calloc(1, BIG);
    CHECK(big != NULL);
    CHECK(pipe(pipe_a) == 0 && pipe(pipe_b) == 0);
    no_peer();
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    free(big);
    return 0;
}
