/* Registration semantics (docs/differences.md): a later registration overrides an earlier one;
 * unregistering before the fork restores the previous one; unregister never removes an
 * installed handler; explicitly set handlers beat the registry and work before and after
 * initialisation; a NULL handler and an unknown type drop the frame; udata_ptr persists. */
#include "ctest.h"
#include "mln_framework.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_event.h"

static char log_buf[256];
static int got13, got20;
static mln_ipc_cb_t *cb13;

static void report(mln_event_t *ev, const char *s)
{
    char b[32];
    size_t n = strlen(s);
    memcpy(b, s, n);
    CHECK(mln_ipc_worker_send_prepare(ev, 30, b, n) == 0);
}

#define WORKER(name, text) \
static void name(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr) \
{ (void)f_ptr; (void)buf; (void)len; (void)udata_ptr; report(ev, text); }

static void w10_old(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{ (void)f_ptr; (void)buf; (void)len; (void)udata_ptr; report(ev, "A"); }

static void w10_new(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    char s[32];
    long n = (long)*udata_ptr + 1;
    (void)f_ptr; (void)buf; (void)len;
    *udata_ptr = (void *)n;
    snprintf(s, sizeof(s), "B%ld", n - 100);
    report(ev, s);
}
WORKER(w11_c, "C")
WORKER(w11_d, "D")
WORKER(w14_explicit, "X")
WORKER(w14_registry, "Y")
WORKER(w15_never, "never15")

static void w16_end(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    char x[] = "x";
    (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
    CHECK(mln_ipc_worker_send_prepare(ev, 13, x, 1) == 0);
    CHECK(mln_ipc_worker_send_prepare(ev, 20, x, 1) == 0);
    report(ev, "END");
}

static void m13(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{ (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr; got13 = 1; }

static void m20(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len;
    CHECK(*udata_ptr == (void *)0x20);
    got20 = 1;
}

static void m30(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)f_ptr; (void)udata_ptr;
    if (len == 3 && memcmp(buf, "END", 3) == 0) {
        mln_event_break_set(ev);
        return;
    }
    strncat(log_buf, buf, len);
    strcat(log_buf, " ");
}

static int send_all(mln_event_t *ev, mln_fork_t *f, void *data)
{
    static const mln_u32_t types[] = {10, 10, 10, 11, 14, 15, 99, 16};
    char b[] = "m";
    size_t i;
    (void)data;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); ++i)
        CHECK(mln_ipc_master_send_prepare(ev, types[i], b, 1, f) == 0);
    return 0;
}

static void master_process(mln_event_t *ev)
{
    mln_ipc_handler_unregister(cb13); /* installed already: keeps firing */
    CHECK(mln_fork_master_ipc_handler_set(20, m20, (void *)0x20) == 0); /* after init */
    CHECK(mln_fork_master_ipc_handler_set(21, NULL, NULL) == -1);
    CHECK(mln_fork_iterate(ev, send_all, NULL) == 0);
}

static int global_init(void)
{
    mln_ipc_cb_t *d;
    CHECK(mln_ipc_handler_register(10, NULL, w10_old, NULL, NULL) != NULL);
    CHECK(mln_ipc_handler_register(10, NULL, w10_new, NULL, (void *)100) != NULL);
    CHECK(mln_ipc_handler_register(11, NULL, w11_c, NULL, NULL) != NULL);
    CHECK((d = mln_ipc_handler_register(11, NULL, w11_d, NULL, NULL)) != NULL);
    CHECK(d->type == 11 && d->worker_handler == w11_d);
    mln_ipc_handler_unregister(d);
    CHECK((cb13 = mln_ipc_handler_register(13, m13, NULL, NULL, NULL)) != NULL);
    CHECK(mln_fork_worker_ipc_handler_set(14, w14_explicit, NULL) == 0); /* before init */
    CHECK(mln_ipc_handler_register(14, NULL, w14_registry, NULL, NULL) != NULL);
    CHECK(mln_ipc_handler_register(15, m13, NULL, NULL, NULL) != NULL); /* worker side NULL */
    CHECK(mln_ipc_handler_register(15, NULL, NULL, NULL, NULL) == NULL);
    CHECK(mln_ipc_handler_register(16, NULL, w16_end, NULL, NULL) != NULL);
    CHECK(mln_ipc_handler_register(30, m30, NULL, NULL, NULL) != NULL);
    (void)w15_never;
    return 0;
}

int main(int argc, char *argv[])
{
    struct mln_framework_attr a = {argc, argv, global_init, NULL, master_process, NULL};
    if (ctest_framework_init(&a) < 0) return 1;
    if (strcmp(log_buf, "B1 B2 B3 C X ") != 0) {
        fprintf(stderr, "got '%s'\n", log_buf);
        return 1;
    }
    CHECK(got13 && got20);
    return 0;
}
