/* melon-ipc demo: a Melon-style program, compiled unchanged against melon-ipc.
 * The master starts 4 workers; each worker says hello; the master answers each hello with
 * a task (a number to square); workers send results back; once all 4 results are in, the
 * master prints a summary and leaves its loop (the workers then exit on their own). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

#define T_HELLO  5000 /* worker -> master: "hello" */
#define T_TASK   5001 /* master -> worker: int to square */
#define T_RESULT 5002 /* worker -> master: int result */
#define WORKERS  4

static int next_task = 3, results, sum;

static void master_hello(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = (mln_fork_t *)f_ptr;
    int task = next_task++;
    (void)udata_ptr;
    printf("master: hello from worker %d: \"%.*s\" -> task %d\n", (int)f->pid, (int)len, (char *)buf, task);
    fflush(stdout);
    mln_ipc_master_send_prepare(ev, T_TASK, &task, sizeof(task), f);
}

static void master_result(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    mln_fork_t *f = (mln_fork_t *)f_ptr;
    int r;
    (void)udata_ptr;
    if (len != sizeof(r)) return;
    memcpy(&r, buf, sizeof(r));
    printf("master: result %d from worker %d\n", r, (int)f->pid);
    fflush(stdout);
    sum += r;
    if (++results == WORKERS) {
        printf("master: all %d results in, sum %d; bye\n", WORKERS, sum);
        fflush(stdout);
        mln_event_break_set(ev);
    }
}

static void worker_task(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    int n, r;
    (void)f_ptr; (void)udata_ptr;
    if (len != sizeof(n)) return;
    memcpy(&n, buf, sizeof(n));
    r = n * n;
    printf("worker %d: task %d -> %d\n", (int)getpid(), n, r);
    fflush(stdout);
    mln_ipc_worker_send_prepare(ev, T_RESULT, &r, sizeof(r));
}

static void worker_process(mln_event_t *ev)
{
    char hello[] = "ready";
    mln_ipc_worker_send_prepare(ev, T_HELLO, hello, strlen(hello));
}

static int global_init(void)
{
    mln_fork_worker_num_set(WORKERS); /* melon-ipc extension; Melon reads worker_proc */
    if (mln_ipc_handler_register(T_HELLO, master_hello, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_RESULT, master_result, NULL, NULL, NULL) == NULL) return -1;
    if (mln_ipc_handler_register(T_TASK, NULL, worker_task, NULL, NULL) == NULL) return -1;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr cattr;
    cattr.argc = argc;
    cattr.argv = argv;
    cattr.global_init = global_init;
    cattr.main_thread = NULL;
    cattr.master_process = NULL;
    cattr.worker_process = worker_process;
    return mln_framework_init(&cattr) < 0 ? 1 : 0;
}
