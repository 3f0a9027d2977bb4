/* Hostile use: a crash-looping worker with descriptors queued to every life.
 * c-api.md: duplicates "are closed once written to the socket, or when the peer dies first
 * (counted in fds_lost, which a replacement inherits as it does restarts)".
 * On each STARTED the master queues 4 frames x 3 descriptors (a pipe's write end twice, a
 * memfd) behind 600 KiB to the new worker, which sleeps 200 ms and exits without reading, NLIVES times; the last life stays and says
 * hello. Then: fds_sent + fds_lost == everything queued; the master has the descriptors it
 * had at the start; the pipe reaches end of file once the master and the live worker closed
 * their write ends (no duplicate held anywhere). */
#define _GNU_SOURCE
#include "fds.h"
#include <stdatomic.h>
#include "mln_event.h"

#define T_F 8951
#define T_HELLO 8952
#define T_CLOSED 8953
#define NLIVES 7

static int p[2] = {-1, -1}, m_base, finished, queued, refused;
static atomic_int *lives;
static long t0;

static void worker_process(mln_event_t *ev)
{
    int life = atomic_fetch_add(lives, 1);
    if (life < NLIVES) { usleep(200 * 1000); _exit(0); } /* never reads: what is queued is lost */
    if (p[1] >= 0) close(p[1]);
    CHECK(mln_ipc_worker_send_prepare(ev, T_HELLO, &life, sizeof(life)) == 0);
}

static void check_end(mln_event_t *ev, void *data)
{
    mln_fork_t *f = data;
    mln_ipc_stats_t s = stats_of(f);
    (void)ev;
    fprintf(stderr, "%d lives in %ld ms; queued %d descriptors (%d refused); fds_sent %llu fds_lost %llu restarts %u\n",
            atomic_load(lives), now_ms() - t0, queued, refused, (unsigned long long)s.fds_sent,
            (unsigned long long)s.fds_lost, (unsigned)s.restarts);
    finished = 1;
    /* Each dead life had 600 KiB queued before its descriptors, and never read: all its
     * descriptors lost; the live one's were written. */
    if (s.fds_lost != (mln_u64_t)(queued - 12) || s.fds_sent != 12) {
        fprintf(stderr, "fds_lost/fds_sent do not add up\n");
        finished = 2;
    }
    if (count_fds() != m_base) {
        char cmd[64];
        fprintf(stderr, "master: %d descriptors, %d at the start\n", count_fds(), m_base);
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid());
        if (system(cmd)) {}
        finished = 2;
    }
    pipe_expect_eof(p[0]);
    mln_event_break_set(ev);
}

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)buf; (void)len; (void)udata_ptr;
    close(p[1]);
    p[1] = -1;
    CHECK(mln_event_timer_set(ev, 300, f_ptr, check_end) != NULL);
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    int i;
    (void)data;
    if (e->type == M_IPC_CHILD_GAVE_UP) { fprintf(stderr, "gave up\n"); exit(3); }
    if (e->type != M_IPC_CHILD_STARTED || p[1] < 0) return;
    { static char big[600 * 1024];
      CHECK(mln_ipc_master_send_prepare(ev, T_F, big, sizeof(big), f) == 0); }
    for (i = 0; i < 4; ++i) {
        int m = memfd_with("rq", "q"), fds[3] = {p[1], m, p[1]};
        if (mln_ipc_master_send_fds_prepare(ev, T_F, "abc", 3, fds, 3, f) == 0) queued += 3;
        else ++refused; /* ESRCH: it died already */
        close(m);
    }
}

static void master_process(mln_event_t *ev)
{
    (void)ev;
    t0 = now_ms();
    m_base = count_fds() - 1; /* p[1] closes before the check */
}

static int global_init(void)
{
    ctest_workers(1);
    CHECK(mln_ipc_max_message_set(1 << 20) == 0);
    mln_ipc_child_event_handler_set(on_event, NULL);
    if (!mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, worker_process};
    lives = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(lives != MAP_FAILED);
    CHECK(pipe(p) == 0);
    if (ctest_framework_init(&a) < 0) return 1;
    return finished == 1 ? 0 : 1;
}
