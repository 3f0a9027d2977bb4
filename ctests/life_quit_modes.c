/* Hostile quit handlers, one per worker: normal; exit(3) inside; returns 1 and lingers
 * (SIGTERM at the deadline); ignores SIGTERM (SIGKILL a second later); forks a grandchild
 * that keeps the socket; sends 50 MiB then returns 0; returns an odd value (7). */
#include "life_rec.h"

#define T_MODE 9211
#define T_BULK 9212
#define T_BYE 9213
#define NW 7
#define MB (1 << 20)

static int started, exited_n;
static mln_fork_t *fs[NW];
static pid_t pids[NW];
static long t_stop[NW];
static long bulk_bytes;
static int byes_from[NW];
static int mode; /* worker side */

static int slot_of(mln_fork_t *f)
{
    int i;
    for (i = 0; i < NW; ++i) if (fs[i] == f) return i;
    return -1;
}

static void on_event(mln_event_t *ev, mln_fork_t *f, const mln_ipc_child_event_t *e, void *data)
{
    rec_ev_t *r = rec_record(f, e);
    (void)data;
    if (e->type == M_IPC_CHILD_STARTED) {
        int m = (int)e->slot;
        ACHECK(m < NW && fs[m] == NULL && rec_count(M_IPC_CHILD_STARTED, -1) <= NW);
        fs[m] = f;
        pids[m] = f->pid;
        ACHECK(mln_ipc_master_send_prepare(ev, T_MODE, &m, sizeof(m), f) == 0);
        t_stop[m] = now_ms();
        ACHECK(mln_fork_stop(ev, f, m == 5 ? 20000 : 1000) == 0);
        ++started;
    } else if (e->type == M_IPC_CHILD_EXITED) {
        int m = slot_of(f);
        long dt = now_ms() - t_stop[m];
        fprintf(stderr, "mode %d: how %s exited %d status %d after %ld ms\n", m,
                rec_how_name(r->how), r->exited, r->status, dt);
        ACHECK(m >= 0 && (int)e->slot == m && e->pid == pids[m]);
        ACHECK(r->restart_in_ms == -1);
        switch (m) {
        case 0: ACHECK(r->how == M_IPC_END_STOPPED && r->exited == 1 && r->status == 0 && byes_from[0] == 1); break;
        case 1: ACHECK(r->how == M_IPC_END_STOPPED && r->exited == 1 && r->status == 3); break;
        case 2: ACHECK(r->how == M_IPC_END_TERMINATED && r->exited == 0 && r->status == SIGTERM);
                ACHECK(dt >= 900 && dt < 2500); break;
        case 3: ACHECK(r->how == M_IPC_END_KILLED && r->exited == 0 && r->status == SIGKILL);
                ACHECK(dt >= 1900 && dt < 3500); break;
        case 4: break; /* a grandchild holding the socket: see rec_stop_grandchild.c */
        case 5: ACHECK(r->how == M_IPC_END_STOPPED && r->exited == 1 && r->status == 0);
                ACHECK(bulk_bytes == 50L * MB); ACHECK(byes_from[5] == 1); break;
        case 6: ACHECK(r->exited != -1); break;
        }
        if (++exited_n == NW) mln_event_break_set(ev);
    }
}

static void master_bulk(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)buf; (void)u;
    ACHECK(slot_of(f_ptr) == 5);
    bulk_bytes += len;
}

static void master_bye(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)buf; (void)len; (void)u;
    ++byes_from[slot_of(f_ptr)];
}

static void worker_mode(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **u)
{
    (void)ev; (void)f_ptr; (void)u;
    CHECK(len == sizeof(mode));
    memcpy(&mode, buf, sizeof(mode));
    if (mode == 3) signal(SIGTERM, SIG_IGN);
}

static int quit(mln_event_t *ev, void *data)
{
    static char chunk[MB];
    int i;
    (void)data;
    switch (mode) {
    case 0: CHECK(mln_ipc_worker_send_prepare(ev, T_BYE, NULL, 0) == 0); return 0;
    case 1: exit(3);
    case 2: return 1;
    case 3: return 1;
    case 4: {
        pid_t p = fork();
        CHECK(p >= 0);
        if (p == 0) { close(mln_tcp_conn_fd_get(mln_fork_master_connection_get())); sleep(4); _exit(0); }
        return 0;
    }
    case 5:
        for (i = 0; i < 50; ++i)
            CHECK(mln_ipc_worker_send_prepare(ev, T_BULK, chunk, sizeof(chunk)) == 0);
        CHECK(mln_ipc_worker_send_prepare(ev, T_BYE, NULL, 0) == 0);
        return 0;
    default: return 7;
    }
}

static int global_init(void)
{
    ctest_workers(NW);
    mln_ipc_child_event_handler_set(on_event, NULL);
    mln_ipc_worker_quit_handler_set(quit, NULL);
    if (!mln_ipc_handler_register(T_MODE, NULL, worker_mode, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BULK, master_bulk, NULL, NULL, NULL)) return -1;
    if (!mln_ipc_handler_register(T_BYE, master_bye, NULL, NULL, NULL)) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, NULL, NULL};
    rec_init(40);
    if (ctest_framework_init(&a) < 0) return 1;
    ACHECK(getpid() == rec_master);
    ACHECK(exited_n == NW);
    ACHECK(rec_check_pids() == 0);
    return 0;
}
