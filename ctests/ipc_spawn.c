/* mln_fork_spawn: the exec'd program (this binary again, in --child mode) gets its
 * socketpair descriptor number as its last argument, starts with default SIGPIPE/SIGCHLD,
 * and speaks the protocol on that fd. The caller's argument array is copied (a stack array
 * here). A M_PST_DFL program is not restarted: once it exits only the plain worker is left
 * in the master's list. (Which descriptors it inherits: ipc_spawn_fds.c.) */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_REPORT 9201
#define T_BYE 9202

static int reported, replied;
/* This program's path, resolved once: under valgrind "/proc/self/exe" would name the
 * valgrind tool, not this test. */
static char self[4096];

static int child_mode(int argc, char *argv[])
{
    int fd = atoi(argv[argc - 1]), bad = 0;
    struct sigaction sa;
    mln_u32_t h[2];
    char msg[64];
    if (fcntl(fd, F_GETFL) < 0 || (fcntl(fd, F_GETFL) & O_NONBLOCK)) bad += 1; /* blocking */
    if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) bad += 100;
    if (sigaction(SIGCHLD, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) bad += 1000;
    if (strcmp(argv[1], "--child") != 0 || argc != 3) bad += 10000;
    snprintf(msg, sizeof(msg), "bad=%d", bad);
    h[0] = 4 + (mln_u32_t)strlen(msg);
    h[1] = T_REPORT;
    if (write(fd, h, 8) != 8 || write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) return 11;
    /* Wait for the master's reply frame, then exit. */
    if (read(fd, h, 8) != 8 || h[1] != T_BYE) return 12;
    return 0;
}

static void master_report(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = f_ptr;
    (void)udata_ptr;
    if (len != 5 || memcmp(buf, "bad=0", 5) != 0) fprintf(stderr, "child says %.*s\n", (int)len, (char *)buf);
    CHECK(len == 5 && memcmp(buf, "bad=0", 5) == 0);
    CHECK(f->etype == M_PET_EXE && f->stype == M_PST_DFL && f->n_args == 2);
    CHECK(strcmp(f->args[0], self) == 0 && strcmp(f->args[1], "--child") == 0);
    reported = 1;
    CHECK(mln_ipc_master_send_prepare(ev, T_BYE, NULL, 0, f) == 0);
    replied = 1;
}

static int count(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f;
    ++*(int *)data;
    return 0;
}

/* Once the reply went out, watch (every 5 ms) for the program to leave the list. */
static void check_gone(mln_event_t *ev, void *data)
{
    int n = 0;
    (void)data;
    CHECK(mln_fork_iterate(ev, count, &n) == 0);
    if (replied && n == 1) {
        mln_event_break_set(ev); /* Melon's macro carries its own ';': braces needed */
    } else {
        CHECK(mln_event_timer_set(ev, 5, NULL, check_gone) != NULL);
    }
}

static void master_process(mln_event_t *ev)
{
    char a0[sizeof(self)], a1[] = "--child";
    char *args[2];
    memcpy(a0, self, sizeof(self));
    args[0] = a0;
    args[1] = a1;
    CHECK(mln_fork_spawn(M_PST_DFL, args, 2, ev) == 0);
    memset(a0, 'x', strlen(a0)); /* the library must have copied */
    CHECK(mln_event_timer_set(ev, 5, NULL, check_gone) != NULL);
}

static int global_init(void)
{
    ctest_workers(1); /* a sibling: the list holds two children until the program exits */
    return mln_ipc_handler_register(T_REPORT, master_report, NULL, NULL, NULL) ? 0 : -1;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    ssize_t n;
    if (argc >= 2 && strcmp(argv[1], "--child") == 0) return child_mode(argc, argv);
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(n > 0);
    self[n] = 0;
    if (ctest_framework_init(&a) < 0) return 1;
    CHECK(reported && replied);
    return 0;
}
