/* For the fork-server tests: the children of a process as /proc lists them (the server
 * and the workers it makes are the master's children: their count, their states and
 * the server's name are what those tests check), and a thread holding a lock (what a
 * fork beside it must not copy). */
#ifndef CTEST_PROCS_H
#define CTEST_PROCS_H

#include "ctest.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

struct proc_child {
    pid_t pid;
    char state;  /* /proc/PID/stat's: 'Z' for a zombie */
    int server;  /* named mln-forkserver */
};

/* Calls `each` for every process whose parent is `parent` (NULL: only counts them);
 * returns how many there are. */
static inline int proc_children(pid_t parent, void (*each)(const struct proc_child *, void *),
                                void *data)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int count = 0;
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        char path[64], buf[512];
        struct proc_child c;
        int ppid, fd;
        ssize_t len;
        char *open_paren, *close_paren;
        c.pid = atoi(e->d_name);
        if (c.pid <= 0) continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)c.pid);
        fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = 0;
        open_paren = strchr(buf, '(');
        close_paren = strrchr(buf, ')');
        if (open_paren == NULL || close_paren == NULL) continue;
        if (sscanf(close_paren + 1, " %c %d", &c.state, &ppid) != 2 || ppid != parent) continue;
        c.server = close_paren - open_paren - 1 == 14 && memcmp(open_paren + 1, "mln-forkserver", 14) == 0;
        ++count;
        if (each != NULL) each(&c, data);
    }
    closedir(d);
    return count;
}

static inline void proc_note_server(const struct proc_child *c, void *data)
{
    pid_t *found = data;
    if (c->server && c->state != 'Z') *found = *found == 0 ? c->pid : -1;
}

/* The live child of `parent` named mln-forkserver (0: none; -1: more than one); how many
 * children `parent` has in `*children` (if not NULL). */
static inline pid_t proc_find_server(pid_t parent, int *children)
{
    pid_t found = 0;
    int n = proc_children(parent, proc_note_server, &found);
    if (children != NULL) *children = n;
    return found;
}

/* A second thread that holds `held` until `holder_release()`: what a fork beside it copies
 * locked for ever (the fork-server tests' workers take `held` at their start). */
static pthread_mutex_t held __attribute__((unused)) = PTHREAD_MUTEX_INITIALIZER;
static int holder_locked[2] __attribute__((unused)), holder_release_pipe[2] __attribute__((unused));
static pthread_t holder_thread __attribute__((unused));

static inline void *holder_main(void *arg)
{
    char c;
    (void)arg;
    CHECK(pthread_mutex_lock(&held) == 0);
    CHECK(write(holder_locked[1], "l", 1) == 1);
    while (read(holder_release_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    CHECK(pthread_mutex_unlock(&held) == 0);
    return NULL;
}

/* Starts the holder and returns once it holds `held`. */
static inline void holder_start(void)
{
    char c;
    CHECK(pipe(holder_locked) == 0 && pipe(holder_release_pipe) == 0);
    CHECK(pthread_create(&holder_thread, NULL, holder_main, NULL) == 0);
    CHECK(read(holder_locked[0], &c, 1) == 1);
}

/* Lets the holder unlock and end, and joins it. */
static inline void holder_release(void)
{
    CHECK(write(holder_release_pipe[1], "r", 1) == 1);
    CHECK(pthread_join(holder_thread, NULL) == 0);
}

#endif
