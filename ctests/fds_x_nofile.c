/* Hostile use: a worker at a tiny RLIMIT_NOFILE (its open descriptors + 6)
 * receives bursts of frames with 3 descriptors each (memfds named "s<seq>-<i>"), keeping
 * what it takes for a while. c-api.md: "A receiver at RLIMIT_NOFILE gets the frame with
 * fewer descriptors and mln_ipc_fds_truncated() 1 ...; nothing is shifted onto the next
 * frame." Each frame: take(i) for i < count is s<seq>-i; truncated iff count < 3; every
 * frame arrives, in order. At the end the worker holds exactly what it kept. */
#define _GNU_SOURCE
#include "fds.h"
#include <sys/resource.h>
#include "mln_event.h"

#define T_F 8961
#define T_END 8962
#define T_RESULT 8963
#define NF 600

static int w_seq, w_trunc, w_full, w_base, held[8], nheld;
static int finished;

static void worker_f(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int seq, i, n;
    (void)ev; (void)f_ptr; (void)udata_ptr;
    CHECK(len == 4);
    memcpy(&seq, buf, 4);
    if (seq != w_seq) { fprintf(stderr, "frame %d arrived as %d\n", seq, w_seq); exit(4); }
    ++w_seq;
    n = (int)mln_ipc_fds_count();
    CHECK(n <= 3);
    if ((n < 3) != (mln_ipc_fds_truncated() == 1)) {
        fprintf(stderr, "frame %d: %d descriptors, truncated %d\n", seq, n, mln_ipc_fds_truncated());
        exit(5);
    }
    if (n < 3) ++w_trunc; else ++w_full;
    for (i = 0; i < n; ++i) {
        char name[32];
        int fd = mln_ipc_fd_take((mln_u32_t)i);
        snprintf(name, sizeof(name), "s%d-%d", seq, i);
        if (fd < 0 || !memfd_named(fd, name)) {
            char path[64], link[128] = "";
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            if (fd >= 0 && readlink(path, link, sizeof(link) - 1) < 0) link[0] = 0;
            fprintf(stderr, "frame %d: take(%d) = %d (%s), expected %s\n", seq, i, fd, link, name);
            exit(6);
        }
        if (nheld < 5 && (seq % 7) <= 1) held[nheld++] = fd; /* keep some: pressure */
        else close(fd);
    }
    if ((seq % 7) == 5) while (nheld > 0) close(held[--nheld]);
}

static void worker_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    while (nheld > 0) close(held[--nheld]);
    r[0] = w_seq; r[1] = w_full; r[2] = w_trunc;
    if (count_fds() != w_base) { fprintf(stderr, "worker: %d descriptors, %d at start\n", count_fds(), w_base); exit(7); }
    CHECK(mln_ipc_worker_send_prepare(ev, T_RESULT, r, sizeof(r)) == 0);
}

static void master_result(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int r[3];
    (void)f_ptr; (void)udata_ptr;
    CHECK(len == sizeof(r));
    memcpy(r, buf, sizeof(r));
    fprintf(stderr, "worker: %d frames, %d whole, %d truncated\n", r[0], r[1], r[2]);
    CHECK(r[0] == NF);
    finished = 1;
    mln_event_break_set(ev);
}

static int go(mln_event_t *ev, mln_fork_t *f, void *data)
{
    int i, j;
    (void)data;
    for (i = 0; i < NF; ++i) {
        int fds[3];
        for (j = 0; j < 3; ++j) {
            char name[32];
            snprintf(name, sizeof(name), "s%d-%d", i, j);
            fds[j] = memfd_create(name, 0);
            CHECK(fds[j] >= 0);
        }
        while (mln_ipc_master_send_fds_prepare(ev, T_F, &i, 4, fds, 3, f) < 0) {
            CHECK(errno == EAGAIN);
            /* at the descriptor limit: let the loop write (nested dispatch is heavy; poll) */
            fprintf(stderr, "EAGAIN at %d\n", i);
            exit(8);
        }
        for (j = 0; j < 3; ++j) close(fds[j]);
    }
    CHECK(mln_ipc_master_send_prepare(ev, T_END, NULL, 0, f) == 0);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    CHECK(mln_fork_iterate(ev, go, NULL) == 0);
}

static void worker_process(mln_event_t *ev)
{
    struct rlimit rl;
    int k, fr = 0;
    (void)ev;
    w_base = count_fds();
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    for (k = 0; fr < 6; ++k)
        if (fcntl(k, F_GETFD) < 0) ++fr;
    rl.rlim_cur = (rlim_t)k;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    fprintf(stderr, "worker: %d open, RLIMIT_NOFILE %d\n", w_base, k);
}

static int global_init(void)
{
    ctest_workers(1);
    mln_ipc_fds_limit_set(0);
    mln_ipc_child_event_handler_set(fds_exit_fails, NULL);
    if (!mln_ipc_handler_register(T_F, NULL, worker_f, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_END, NULL, worker_end, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_RESULT, master_result, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
