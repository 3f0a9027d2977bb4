/* Helpers of the descriptor-passing tests (ctests/fds_*.c, issue 23). Not part of the API.
 * Define _GNU_SOURCE before including anything (memfd_create, pipe2).
 *
 * - fd_cloexec(fd): whether FD_CLOEXEC is set (fcntl F_GETFD).
 * - memfd_with(name, text): a memfd of 4 KiB (not close-on-exec) holding `text` at offset 0.
 * - memfd_named(fd, name): whether /proc/self/fd/<fd> names the memfd `name`.
 * - same_file(a, b): whether two descriptors refer to the same open file's inode.
 * - pipe_expect(fd, want, n): the next n bytes readable at once in pipe fd are `want`
 *   (a non-blocking read: data that is not there yet fails the check, it does not hang).
 * - pipe_expect_eof(fd): every write end of the pipe is closed: a non-blocking read gives
 *   0, neither data nor EAGAIN (a write end still open somewhere gives EAGAIN).
 * - stats_of(f): mln_ipc_stats_get of child f (NULL in a worker: the master connection).
 * - fds_exit_fails (a child-event handler, mln_ipc_child_event_handler_set): a worker that
 *   ends fails the test at once (a failed CHECK in a worker exits it; without this the
 *   master would wait for its replacement until the harness's timeout). */
#ifndef FDS_H
#define FDS_H
#include "ctest.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define FDS_UNUSED __attribute__((unused))

FDS_UNUSED static int fd_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    CHECK(fl >= 0);
    return (fl & FD_CLOEXEC) != 0;
}

FDS_UNUSED static int memfd_with(const char *name, const char *text)
{
    int fd = memfd_create(name, 0);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 4096) == 0);
    CHECK(pwrite(fd, text, strlen(text) + 1, 0) == (ssize_t)strlen(text) + 1);
    return fd;
}

FDS_UNUSED static int memfd_named(int fd, const char *name)
{
    char path[64], link[256], want[256];
    ssize_t n;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, link, sizeof(link) - 1);
    if (n < 0) return 0;
    link[n] = 0;
    snprintf(want, sizeof(want), "/memfd:%s", name);
    return strncmp(link, want, strlen(want)) == 0;
}

FDS_UNUSED static int same_file(int a, int b)
{
    struct stat sa, sb;
    CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0);
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static inline ssize_t read_nb(int fd, void *buf, size_t n)
{
    int fl = fcntl(fd, F_GETFL);
    ssize_t r;
    CHECK(fl >= 0);
    if (!(fl & O_NONBLOCK)) CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
    do r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

FDS_UNUSED static void pipe_expect(int fd, const void *want, size_t n)
{
    char got[512];
    CHECK(n <= sizeof(got));
    CHECK(read_nb(fd, got, n) == (ssize_t)n);
    CHECK(memcmp(got, want, n) == 0);
}

FDS_UNUSED static void pipe_expect_eof(int fd)
{
    char c;
    ssize_t r = read_nb(fd, &c, 1);
    if (r != 0)
        fprintf(stderr, "pipe %d: read %zd (%s), expected end of file\n", fd, r,
                r < 0 ? strerror(errno) : "data");
    CHECK(r == 0);
}

FDS_UNUSED static mln_ipc_stats_t stats_of(mln_fork_t *f)
{
    mln_ipc_stats_t s;
    CHECK(mln_ipc_stats_get(f, &s) == 0);
    return s;
}

FDS_UNUSED static void fds_exit_fails(mln_event_t *ev, mln_fork_t *f,
                                      const mln_ipc_child_event_t *e, void *data)
{
    (void)ev; (void)f; (void)data;
    if (e->type != M_IPC_CHILD_EXITED) return;
    fprintf(stderr, "worker %d ended (%s %d): failing\n", (int)e->pid,
            e->exited == 1 ? "exit status" : "signal", e->status);
    exit(3);
}

#endif
