/* Descriptors through the channel (issue 23), the basics, both directions, one worker:
 * - master -> worker: a pipe's write end and a memfd (neither close-on-exec at the
 *   sender; the sender closes its own at once). The worker writes through the pipe (the
 *   master reads it, then end of file), maps the memfd (the master's text is there) and
 *   writes into the mapping (the master sees it in its own mapping: shared, no copy);
 * - worker -> master: a pipe's write end, a memfd, and a third pipe's write end the
 *   master's handler does not take; the master writes through the first, reads the
 *   second, and the worker then sees end of file on the third pipe: the untaken one was
 *   closed when the handler returned;
 * - received descriptors are close-on-exec;
 * - in a handler: mln_ipc_fds_count() is the number sent and stays so after takes;
 *   mln_ipc_fd_take(i) gives the sender's fds[i] once (a second take of the same index,
 *   and an index beyond the count, are -1 + ENOENT); mln_ipc_fds_truncated() is 0; a frame
 *   without descriptors: 0, -1 + ENOENT, 0;
 * - outside a handler: 0, -1 + ENOENT, 0;
 * - a frame with a descriptor whose type has no handler (each direction): the descriptor
 *   is closed (the sender's pipe sees end of file);
 * - the master's descriptors (/proc/self/fd): in the handler, the received ones are there;
 *   after it (in the handler of the worker's next frame), exactly the untaken one fewer;
 *   at the end, as before the test;
 * - the stats count descriptors on both sides (fds_sent, fds_received). */
#define _GNU_SOURCE
#include "fds.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_GIVE 8101   /* master -> worker: pipe, memfd */
#define T_BACK 8102   /* worker -> master: pipe, memfd, pipe (untaken) */
#define T_NOH 8103    /* master -> worker, no handler: pipe */
#define T_NOH2 8104   /* worker -> master, no handler: pipe */
#define T_CHECK 8105  /* master -> worker */
#define T_DONE 8106   /* worker -> master: its stats */
#define T_CHECK2 8107 /* master -> worker */
#define T_DONE2 8108  /* worker -> master */
#define T_SYNC 8109   /* worker -> master, right after T_BACK: T_BACK's handler returned */

static const char from_master[] = "from master", from_worker[] = "from worker";
static const char worker_memfd[] = "worker memfd", ack[] = "ack from worker";

/* Master. */
static int m_base, m_in_handler, p1[2], pn[2], finished;
static char *map1;
/* Worker. */
static int w_base, p2[2], p3[2], p4[2];

/* The three accessors when no frame is being handled, or a frame without descriptors. */
static void no_fds_here(void)
{
    CHECK(mln_ipc_fds_count() == 0);
    errno = 0;
    CHECK(mln_ipc_fd_take(0) == -1 && errno == ENOENT);
    errno = 0;
    CHECK(mln_ipc_fd_take(0xffffffffu) == -1 && errno == ENOENT);
    CHECK(mln_ipc_fds_truncated() == 0);
}

static void worker_give(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int a, b, fds[3];
    char *map;
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "give", 4) == 0);
    CHECK(mln_ipc_fds_count() == 2);
    CHECK(mln_ipc_fds_truncated() == 0);
    a = mln_ipc_fd_take(0);
    CHECK(a >= 0);
    errno = 0;
    CHECK(mln_ipc_fd_take(0) == -1 && errno == ENOENT); /* taken already */
    errno = 0;
    CHECK(mln_ipc_fd_take(2) == -1 && errno == ENOENT); /* beyond the count */
    b = mln_ipc_fd_take(1);
    CHECK(b >= 0 && b != a);
    errno = 0;
    CHECK(mln_ipc_fd_take(1) == -1 && errno == ENOENT);
    CHECK(mln_ipc_fds_count() == 2); /* takes do not change it */
    CHECK(fd_cloexec(a) && fd_cloexec(b));
    /* fds[0]: the pipe's write end. */
    CHECK((fcntl(a, F_GETFL) & O_ACCMODE) == O_WRONLY);
    CHECK(write(a, from_worker, sizeof(from_worker)) == (ssize_t)sizeof(from_worker));
    close(a);
    /* fds[1]: the memfd, shared with the master. */
    CHECK(memfd_named(b, "fds_basic_m"));
    map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
    CHECK(map != MAP_FAILED);
    CHECK(strcmp(map, from_master) == 0);
    memcpy(map + 100, ack, sizeof(ack));
    CHECK(munmap(map, 4096) == 0);
    close(b);

    /* Back: a pipe, a memfd, and a pipe the master will not take. */
    CHECK(pipe(p2) == 0 && pipe(p3) == 0);
    fds[0] = p2[1];
    fds[1] = memfd_with("fds_basic_w", worker_memfd);
    fds[2] = p3[1];
    CHECK(mln_ipc_worker_send_fds_prepare(ev, T_BACK, "back", 4, fds, 3) == 0);
    close(fds[0]); close(fds[1]); close(fds[2]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_SYNC, NULL, 0) == 0);
}

static void worker_check(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    no_fds_here();
    pipe_expect(p2[0], "x", 1); /* written by the master through fds[0] */
    pipe_expect_eof(p2[0]);
    pipe_expect_eof(p3[0]); /* the master did not take it: closed after its handler */
    close(p2[0]); close(p3[0]);
    /* Now the worker -> master frame whose type has no handler. */
    CHECK(pipe(p4) == 0);
    CHECK(mln_ipc_worker_send_fds_prepare(ev, T_NOH2, NULL, 0, &p4[1], 1) == 0);
    close(p4[1]);
    s = stats_of(NULL);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE, &s, sizeof(s)) == 0);
}

static void worker_check2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t s;
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    pipe_expect_eof(p4[0]); /* the master had no handler for it */
    close(p4[0]);
    /* The two received from the master, the one of T_NOH: all closed. */
    CHECK(count_fds() == w_base);
    s = stats_of(NULL);
    CHECK(s.fds_sent == 4 && s.fds_received == 3 && s.fds_lost == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, T_DONE2, NULL, 0) == 0);
}

static void master_back(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int x, y;
    char *map;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4 && memcmp(buf, "back", 4) == 0);
    m_in_handler = count_fds();
    CHECK(mln_ipc_fds_count() == 3);
    CHECK(mln_ipc_fds_truncated() == 0);
    x = mln_ipc_fd_take(0);
    y = mln_ipc_fd_take(1);
    CHECK(x >= 0 && y >= 0);
    CHECK(fd_cloexec(x) && fd_cloexec(y));
    CHECK((fcntl(x, F_GETFL) & O_ACCMODE) == O_WRONLY);
    CHECK(write(x, "x", 1) == 1);
    CHECK(memfd_named(y, "fds_basic_w"));
    map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, y, 0);
    CHECK(map != MAP_FAILED);
    CHECK(strcmp(map, worker_memfd) == 0);
    CHECK(munmap(map, 4096) == 0);
    close(x);
    close(y);
    /* fds[2] not taken. */
    CHECK(mln_ipc_fds_count() == 3);
    CHECK(count_fds() == m_in_handler - 2);

    /* What the worker did with the master's: wrote through the pipe (whose write ends are
     * all closed now: the master's, the library's copy, the worker's), wrote into the
     * shared memory. */
    pipe_expect(p1[0], from_worker, sizeof(from_worker));
    pipe_expect_eof(p1[0]);
    CHECK(strcmp(map1 + 100, ack) == 0);
}

static void master_sync(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    no_fds_here();
    /* T_BACK's handler has returned: its untaken descriptor is closed. */
    CHECK(count_fds() == m_in_handler - 3);
    CHECK(mln_ipc_master_send_prepare(ev, T_CHECK, NULL, 0, f_ptr) == 0);
}

static void master_done(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_ipc_stats_t ws, ms;
    (void)udata_ptr;
    no_fds_here();
    /* The untaken one is closed now, and nothing else changed. T_NOH2's (sent by the
     * worker after T_CHECK) came and went before this frame. */
    CHECK(count_fds() == m_in_handler - 3);
    pipe_expect_eof(pn[0]); /* the worker had no handler for T_NOH */
    CHECK(len == sizeof(ws));
    memcpy(&ws, buf, sizeof(ws));
    CHECK(ws.fds_sent >= 3 && ws.fds_sent <= 4); /* T_NOH2 may still be queued */
    CHECK(ws.fds_received == 3 && ws.fds_lost == 0);
    ms = stats_of(f_ptr);
    CHECK(ms.fds_sent == 3 && ms.fds_received == 4 && ms.fds_lost == 0);
    CHECK(ms.frames_sent == 3 && ms.frames_received == 4); /* announcements not counted */
    CHECK(mln_ipc_master_send_prepare(ev, T_CHECK2, NULL, 0, f_ptr) == 0);
}

static void master_done2(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    close(p1[0]);
    close(pn[0]);
    CHECK(munmap(map1, 4096) == 0);
    CHECK(count_fds() == m_base);
    finished = 1;
    mln_event_break_set(ev);
}

static int give(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int fds[2], m1;
    (void)data;
    CHECK(pipe(p1) == 0 && pipe(pn) == 0);
    m1 = memfd_with("fds_basic_m", from_master);
    map1 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m1, 0);
    CHECK(map1 != MAP_FAILED);
    CHECK(!fd_cloexec(p1[1]) && !fd_cloexec(m1));
    fds[0] = p1[1];
    fds[1] = m1;
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_GIVE, "give", 4, fds, 2, f) == 0);
    /* The library has its own copies: ours close now. */
    close(p1[1]);
    close(m1);
    CHECK(mln_ipc_master_send_fds_prepare(ev, T_NOH, "noh", 3, &pn[1], 1, f) == 0);
    close(pn[1]);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    no_fds_here();
    m_base = count_fds();
    CHECK(mln_fork_iterate(ev, give, NULL) == 0);
    no_fds_here();
}

static void worker_process(mln_event_t *ev)
{
    (void)ev;
    no_fds_here();
    w_base = count_fds();
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_GIVE, NULL, worker_give, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_CHECK, NULL, worker_check, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_CHECK2, NULL, worker_check2, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BACK, master_back, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE, master_done, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_SYNC, master_sync, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_DONE2, master_done2, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    no_fds_here();
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(finished);
    return 0;
}
