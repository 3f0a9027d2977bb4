/* CTEST_STANDALONE_ONLY: ABI of our headers (include/); melon tests use Melon's headers */
/*
 * ABI of the headers against Melon's (MELON_IPC_SPEC.md §1, §2), x86_64 Linux:
 * sizes, alignments and field offsets of every exported struct, the C types behind the
 * typedefs, the values of every constant, the enums and the function-like macros.
 * Most checks are compile-time (_Static_assert); the same numbers are checked again at
 * run time so that a failure names every wrong item, not just the first.
 *
 * Only Melon's header names are included, in two different orders and each twice: the
 * guards must make any order and repetition work.
 */
#include "mln_types.h"
#include "mln_event.h"
#include "mln_connection.h"
#include "mln_fork.h"
#include "mln_ipc.h"
#include "mln_framework.h"
#include "mln_framework.h"
#include "mln_ipc.h"
#include "mln_fork.h"
#include "mln_connection.h"
#include "mln_event.h"
#include "mln_types.h"

/* The headers define no generic names (cbindgen.toml keeps the Rust-side ones out): a
 * program may define these itself (X11 defines None). */
#if defined(None) || defined(DEFAULT) || defined(LEN_LEN) || defined(TYPE_LEN) \
    || defined(HEADER_LEN) || defined(DEFAULT_MAX_MESSAGE)
#error "the headers define a generic name"
#endif
enum layout_program_names { None, Error, Warn, Info, Debug, Level, DEFAULT };

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

static int failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "layout: check failed: %s (line %d)\n", #cond, __LINE__);  \
            failures++;                                                                \
        }                                                                              \
    } while (0)

/* `expr` has exactly type `T` (not merely a convertible one). */
#define IS_TYPE(expr, T) _Generic((expr), T: 1, default: 0)

/* Struct size and alignment, at compile time and at run time. */
#define STRUCT(T, size, align)                                                         \
    _Static_assert(sizeof(T) == (size), "sizeof " #T);                                 \
    _Static_assert(_Alignof(T) == (align), "_Alignof " #T);
#define STRUCT_RT(T, size, align)                                                      \
    do {                                                                               \
        CHECK(sizeof(T) == (size));                                                    \
        CHECK(_Alignof(T) == (align));                                                 \
    } while (0)

/* Field offset and size, at compile time and at run time. */
#define FIELD(T, f, off, size)                                                         \
    _Static_assert(offsetof(T, f) == (off), "offsetof " #T "." #f);                    \
    _Static_assert(sizeof(((T *)0)->f) == (size), "sizeof " #T "." #f);
#define FIELD_RT(T, f, off, size)                                                      \
    do {                                                                               \
        CHECK(offsetof(T, f) == (off));                                                \
        CHECK(sizeof(((T *)0)->f) == (size));                                          \
    } while (0)

/* Field C type. */
#define FTYPE(T, f, FT) _Static_assert(IS_TYPE(((T *)0)->f, FT), "type of " #T "." #f);

/* Constant value, at compile time and at run time. */
#define CONST(name, value) _Static_assert((name) == (value), #name " == " #value);
#define CONST_RT(name, value) CHECK((name) == (value))

/* ---- §1.1 mln_types.h: the exact C types ---- */
_Static_assert(IS_TYPE((mln_u8_t)0, unsigned char), "mln_u8_t");
_Static_assert(IS_TYPE((mln_s8_t)0, char), "mln_s8_t is plain char");
_Static_assert(IS_TYPE((mln_u16_t)0, unsigned short), "mln_u16_t");
_Static_assert(IS_TYPE((mln_s16_t)0, short), "mln_s16_t");
_Static_assert(IS_TYPE((mln_u32_t)0, unsigned int), "mln_u32_t");
_Static_assert(IS_TYPE((mln_s32_t)0, int), "mln_s32_t");
_Static_assert(IS_TYPE((mln_u64_t)0, unsigned long), "mln_u64_t");
_Static_assert(IS_TYPE((mln_s64_t)0, long), "mln_s64_t");
_Static_assert(IS_TYPE((mln_s8ptr_t)0, char *), "mln_s8ptr_t");
_Static_assert(IS_TYPE((mln_u8ptr_t)0, unsigned char *), "mln_u8ptr_t");
_Static_assert(IS_TYPE((mln_s16ptr_t)0, short *), "mln_s16ptr_t");
_Static_assert(IS_TYPE((mln_u16ptr_t)0, unsigned short *), "mln_u16ptr_t");
_Static_assert(IS_TYPE((mln_s32ptr_t)0, int *), "mln_s32ptr_t");
_Static_assert(IS_TYPE((mln_u32ptr_t)0, unsigned int *), "mln_u32ptr_t");
_Static_assert(IS_TYPE((mln_s64ptr_t)0, long *), "mln_s64ptr_t");
_Static_assert(IS_TYPE((mln_u64ptr_t)0, unsigned long *), "mln_u64ptr_t");
_Static_assert(IS_TYPE((mln_size_t)0, size_t), "mln_size_t is size_t");
_Static_assert(IS_TYPE((mln_off_t)0, off_t), "mln_off_t is off_t");
_Static_assert(IS_TYPE((mln_sptr_t)0, long), "mln_sptr_t");
_Static_assert(IS_TYPE((mln_uptr_t)0, unsigned long), "mln_uptr_t");
_Static_assert(IS_TYPE((mln_sauto_t)0, long), "mln_sauto_t");
_Static_assert(IS_TYPE((mln_uauto_t)0, unsigned long), "mln_uauto_t");
_Static_assert(IS_TYPE((mln_spin_t)0, long), "mln_spin_t");
_Static_assert(sizeof(mln_u8_t) == 1 && sizeof(mln_s8_t) == 1, "8-bit types");
_Static_assert(sizeof(mln_u16_t) == 2 && sizeof(mln_s16_t) == 2, "16-bit types");
_Static_assert(sizeof(mln_u32_t) == 4 && sizeof(mln_s32_t) == 4, "32-bit types");
_Static_assert(sizeof(mln_u64_t) == 8 && sizeof(mln_s64_t) == 8, "64-bit types");
_Static_assert(sizeof(mln_size_t) == 8 && sizeof(mln_off_t) == 8, "size/off");
_Static_assert(sizeof(pid_t) == 4, "pid_t");

/* ---- §1.2 enums: Melon's tags, 4 bytes ---- */
_Static_assert(sizeof(enum proc_state_type) == 4, "enum proc_state_type");
_Static_assert(sizeof(enum proc_exec_type) == 4, "enum proc_exec_type");
_Static_assert(sizeof(enum mln_event_type) == 4, "enum mln_event_type");
CONST(M_PST_DFL, 0)
CONST(M_PST_SUP, 1)
CONST(M_PET_DFL, 0)
CONST(M_PET_EXE, 1)
CONST(M_EV_FD, 0)
CONST(M_EV_TM, 1)
/* They are enum constants of those enums, as in Melon. */
_Static_assert(IS_TYPE((enum proc_state_type)M_PST_SUP, enum proc_state_type), "tag");

/* ---- opaque types carry Melon's struct tags ---- */
_Static_assert(IS_TYPE((mln_alloc_t *)0, struct mln_alloc_s *), "mln_alloc_t");
_Static_assert(IS_TYPE((mln_chain_t *)0, struct mln_chain_s *), "mln_chain_t");
_Static_assert(IS_TYPE((mln_event_timer_t *)0, struct mln_fheap_node_s *), "mln_event_timer_t");

/* ---- struct tags and typedef names, as in Melon ---- */
_Static_assert(IS_TYPE((mln_fork_t *)0, struct mln_fork_s *), "mln_fork_t");
_Static_assert(IS_TYPE((mln_ipc_handler_t *)0, struct mln_ipc_handler_s *), "mln_ipc_handler_t");
_Static_assert(IS_TYPE((mln_ipc_cb_t *)0, struct mln_ipc_cb_s *), "mln_ipc_cb_t");
_Static_assert(IS_TYPE((mln_event_t *)0, struct mln_event_s *), "mln_event_t");

/* ---- §1.10 mln_event_t ---- */
STRUCT(mln_event_t, 208, 8)
FIELD(mln_event_t, is_break, 136, 4)
FTYPE(mln_event_t, is_break, mln_u32_t)

/* ---- §1.8 mln_tcp_conn_t ---- */
STRUCT(mln_tcp_conn_t, 64, 8)
FIELD(mln_tcp_conn_t, pool, 0, 8)
FIELD(mln_tcp_conn_t, rcv_head, 8, 8)
FIELD(mln_tcp_conn_t, rcv_tail, 16, 8)
FIELD(mln_tcp_conn_t, snd_head, 24, 8)
FIELD(mln_tcp_conn_t, snd_tail, 32, 8)
FIELD(mln_tcp_conn_t, sent_head, 40, 8)
FIELD(mln_tcp_conn_t, sent_tail, 48, 8)
FIELD(mln_tcp_conn_t, sockfd, 56, 4)
FTYPE(mln_tcp_conn_t, pool, mln_alloc_t *)
FTYPE(mln_tcp_conn_t, rcv_head, mln_chain_t *)
FTYPE(mln_tcp_conn_t, sent_tail, mln_chain_t *)
FTYPE(mln_tcp_conn_t, sockfd, int)
_Static_assert(offsetof(mln_tcp_conn_t, sockfd) + sizeof(int) == 60, "nonblock unit at 60");

/* ---- §1.4 mln_fork_t ---- */
STRUCT(mln_fork_t, 144, 8)
FIELD(mln_fork_t, prev, 0, 8)
FIELD(mln_fork_t, next, 8, 8)
FIELD(mln_fork_t, args, 16, 8)
FIELD(mln_fork_t, conn, 24, 64)
FIELD(mln_fork_t, pid, 88, 4)
FIELD(mln_fork_t, n_args, 92, 4)
FIELD(mln_fork_t, state, 96, 4)
FIELD(mln_fork_t, msg_len, 100, 4)
FIELD(mln_fork_t, msg_type, 104, 4)
FIELD(mln_fork_t, error_bytes, 112, 8)
FIELD(mln_fork_t, msg_content, 120, 8)
FIELD(mln_fork_t, msg_buf_size, 128, 8)
FIELD(mln_fork_t, etype, 136, 4)
FIELD(mln_fork_t, stype, 140, 4)
FTYPE(mln_fork_t, prev, struct mln_fork_s *)
FTYPE(mln_fork_t, next, struct mln_fork_s *)
FTYPE(mln_fork_t, args, mln_s8ptr_t *)
FTYPE(mln_fork_t, conn, mln_tcp_conn_t)
FTYPE(mln_fork_t, pid, pid_t)
FTYPE(mln_fork_t, n_args, mln_u32_t)
FTYPE(mln_fork_t, error_bytes, mln_size_t)
FTYPE(mln_fork_t, msg_content, void *)
FTYPE(mln_fork_t, msg_buf_size, mln_size_t)
FTYPE(mln_fork_t, etype, enum proc_exec_type)
FTYPE(mln_fork_t, stype, enum proc_state_type)

/* ---- §1.5 struct mln_fork_attr ---- */
STRUCT(struct mln_fork_attr, 32, 8)
FIELD(struct mln_fork_attr, args, 0, 8)
FIELD(struct mln_fork_attr, n_args, 8, 4)
FIELD(struct mln_fork_attr, fd, 12, 4)
FIELD(struct mln_fork_attr, pid, 16, 4)
FIELD(struct mln_fork_attr, etype, 20, 4)
FIELD(struct mln_fork_attr, stype, 24, 4)
FTYPE(struct mln_fork_attr, etype, enum proc_exec_type)
FTYPE(struct mln_fork_attr, stype, enum proc_state_type)

/* ---- §1.6 mln_ipc_handler_t ---- */
STRUCT(mln_ipc_handler_t, 32, 8)
FIELD(mln_ipc_handler_t, handler, 0, 8)
FIELD(mln_ipc_handler_t, data, 8, 8)
FIELD(mln_ipc_handler_t, type, 16, 4)
FIELD(mln_ipc_handler_t, next, 24, 8)
FTYPE(mln_ipc_handler_t, handler, ipc_handler)
FTYPE(mln_ipc_handler_t, next, struct mln_ipc_handler_s *)

/* ---- §1.7 mln_ipc_cb_t (next before prev) ---- */
STRUCT(mln_ipc_cb_t, 56, 8)
FIELD(mln_ipc_cb_t, next, 0, 8)
FIELD(mln_ipc_cb_t, prev, 8, 8)
FIELD(mln_ipc_cb_t, master_handler, 16, 8)
FIELD(mln_ipc_cb_t, worker_handler, 24, 8)
FIELD(mln_ipc_cb_t, master_data, 32, 8)
FIELD(mln_ipc_cb_t, worker_data, 40, 8)
FIELD(mln_ipc_cb_t, type, 48, 4)
FTYPE(mln_ipc_cb_t, next, struct mln_ipc_cb_s *)
FTYPE(mln_ipc_cb_t, master_handler, ipc_handler)
FTYPE(mln_ipc_cb_t, type, mln_u32_t)

/* ---- §1.11 struct mln_framework_attr ---- */
STRUCT(struct mln_framework_attr, 48, 8)
FIELD(struct mln_framework_attr, argc, 0, 4)
FIELD(struct mln_framework_attr, argv, 8, 8)
FIELD(struct mln_framework_attr, global_init, 16, 8)
FIELD(struct mln_framework_attr, main_thread, 24, 8)
FIELD(struct mln_framework_attr, master_process, 32, 8)
FIELD(struct mln_framework_attr, worker_process, 40, 8)
FTYPE(struct mln_framework_attr, argc, int)
FTYPE(struct mln_framework_attr, argv, char **)
FTYPE(struct mln_framework_attr, global_init, mln_framework_init_t)
FTYPE(struct mln_framework_attr, worker_process, mln_framework_process_t)

/* ---- §2 constants ---- */
CONST(M_EV_HASH_LEN, 64)
CONST(M_EV_EPOLL_SIZE, 1024)
CONST(M_EV_RECV, 0x1)
CONST(M_EV_SEND, 0x2)
CONST(M_EV_ERROR, 0x4)
CONST(M_EV_RSE_MASK, 0x7)
CONST(M_EV_ONESHOT, 0x8)
CONST(M_EV_NONBLOCK, 0x10)
CONST(M_EV_BLOCK, 0x20)
CONST(M_EV_APPEND, 0x40)
CONST(M_EV_CLR, 0x80)
CONST(M_EV_FD_MASK, 0xff)
CONST(M_EV_UNLIMITED, -1)
CONST(M_EV_UNMODIFIED, -2)
CONST(M_EV_TIMEOUT_US, 7000)
CONST(M_EV_TIMEOUT_MS, 7)
CONST(M_EV_TIMEOUT_NS, 7000000)
CONST(M_EV_NOLOCK_TIMEOUT_US, 3000)
CONST(M_EV_NOLOCK_TIMEOUT_MS, 3)
CONST(M_EV_NOLOCK_TIMEOUT_NS, 3000000)
CONST(M_C_SEND, 1)
CONST(M_C_RECV, 2)
CONST(M_C_SENT, 3)
CONST(M_C_FINISH, 1)
CONST(M_C_NOTYET, 2)
CONST(M_C_ERROR, 3)
CONST(M_C_CLOSED, 4)
CONST(M_C_TYPE_MEMORY, 0x1)
CONST(M_C_TYPE_FILE, 0x2)
CONST(M_C_TYPE_FOLLOW, 0x8)
CONST(STATE_IDLE, 0)
CONST(STATE_LENGTH, 1)
CONST(M_F_TYPELEN, sizeof(mln_u32_t))
CONST(M_F_LENLEN, sizeof(mln_u32_t))
CONST(M_IPC_HASH_BUCKETS, 64)
CONST(M_IPC_HASH_MASK, 63)
CONST(M_IPC_TYPE_CONF, 1)
/* The object-like macros of Melon's headers are usable in #if as well. */
#if M_EV_RECV != 1 || M_EV_FD_MASK != 0xff || M_EV_UNLIMITED != -1 || M_C_CLOSED != 4 \
    || STATE_LENGTH != 1 || M_IPC_HASH_MASK != 63 || M_IPC_TYPE_CONF != 1
#error "constant values in #if"
#endif

/* Melon's include guards are all defined whichever header came first. */
#if !defined(__MLN_TYPES_H) || !defined(__MLN_EVENT_H) || !defined(__MLN_CONNECTION_H) \
    || !defined(__MLN_FORK_H) || !defined(__MLN_IPC_H) || !defined(__MLN_FRAMEWORK_H)
#error "a Melon include guard is missing"
#endif
#if !defined(mln_tcp_conn_fd_get) || !defined(mln_tcp_conn_pool_get) \
    || !defined(mln_tcp_conn_send_empty) || !defined(mln_tcp_conn_recv_empty) \
    || !defined(mln_tcp_conn_sent_empty) || !defined(mln_event_break_set) \
    || !defined(mln_event_break_reset) || !defined(mln_event_signal_set)
#error "a function-like macro of Melon's headers is missing"
#endif

/* ---- §1.3 callback typedefs: functions with Melon's exact prototypes convert without a
 * cast (-Werror turns any mismatch into a compile error). ---- */
static void my_ipc(mln_event_t *ev, void *f_ptr, void *buf, mln_u32_t len, void **udata_ptr)
{
    (void)ev; (void)f_ptr; (void)buf; (void)len; (void)udata_ptr;
}
static int my_iter(mln_event_t *ev, mln_fork_t *f, void *data)
{
    (void)ev; (void)f; (void)data;
    return 0;
}
static void my_clr(void *data) { (void)data; }
static void my_fd(mln_event_t *ev, int fd, void *data) { (void)ev; (void)fd; (void)data; }
static void my_tm(mln_event_t *ev, void *data) { (void)ev; (void)data; }
static int my_init(void) { return 0; }
static void my_proc(mln_event_t *ev) { (void)ev; }
static void my_sig(int signo) { (void)signo; }

int main(void)
{
    ipc_handler h1 = my_ipc;
    fork_iterate_handler h2 = my_iter;
    clr_handler h3 = my_clr;
    ev_fd_handler h4 = my_fd;
    ev_tm_handler h5 = my_tm;
    dispatch_callback h6 = my_tm;
    mln_framework_init_t h7 = my_init;
    mln_framework_process_t h8 = my_proc;
    CHECK(h1 && h2 && h3 && h4 && h5 && h6 && h7 && h8);

    /* The same numbers at run time. */
    STRUCT_RT(mln_event_t, 208, 8);
    FIELD_RT(mln_event_t, is_break, 136, 4);
    STRUCT_RT(mln_tcp_conn_t, 64, 8);
    FIELD_RT(mln_tcp_conn_t, pool, 0, 8);
    FIELD_RT(mln_tcp_conn_t, rcv_head, 8, 8);
    FIELD_RT(mln_tcp_conn_t, rcv_tail, 16, 8);
    FIELD_RT(mln_tcp_conn_t, snd_head, 24, 8);
    FIELD_RT(mln_tcp_conn_t, snd_tail, 32, 8);
    FIELD_RT(mln_tcp_conn_t, sent_head, 40, 8);
    FIELD_RT(mln_tcp_conn_t, sent_tail, 48, 8);
    FIELD_RT(mln_tcp_conn_t, sockfd, 56, 4);
    STRUCT_RT(mln_fork_t, 144, 8);
    FIELD_RT(mln_fork_t, prev, 0, 8);
    FIELD_RT(mln_fork_t, next, 8, 8);
    FIELD_RT(mln_fork_t, args, 16, 8);
    FIELD_RT(mln_fork_t, conn, 24, 64);
    FIELD_RT(mln_fork_t, pid, 88, 4);
    FIELD_RT(mln_fork_t, n_args, 92, 4);
    FIELD_RT(mln_fork_t, state, 96, 4);
    FIELD_RT(mln_fork_t, msg_len, 100, 4);
    FIELD_RT(mln_fork_t, msg_type, 104, 4);
    FIELD_RT(mln_fork_t, error_bytes, 112, 8);
    FIELD_RT(mln_fork_t, msg_content, 120, 8);
    FIELD_RT(mln_fork_t, msg_buf_size, 128, 8);
    FIELD_RT(mln_fork_t, etype, 136, 4);
    FIELD_RT(mln_fork_t, stype, 140, 4);
    STRUCT_RT(struct mln_fork_attr, 32, 8);
    FIELD_RT(struct mln_fork_attr, args, 0, 8);
    FIELD_RT(struct mln_fork_attr, n_args, 8, 4);
    FIELD_RT(struct mln_fork_attr, fd, 12, 4);
    FIELD_RT(struct mln_fork_attr, pid, 16, 4);
    FIELD_RT(struct mln_fork_attr, etype, 20, 4);
    FIELD_RT(struct mln_fork_attr, stype, 24, 4);
    STRUCT_RT(mln_ipc_handler_t, 32, 8);
    FIELD_RT(mln_ipc_handler_t, handler, 0, 8);
    FIELD_RT(mln_ipc_handler_t, data, 8, 8);
    FIELD_RT(mln_ipc_handler_t, type, 16, 4);
    FIELD_RT(mln_ipc_handler_t, next, 24, 8);
    STRUCT_RT(mln_ipc_cb_t, 56, 8);
    FIELD_RT(mln_ipc_cb_t, next, 0, 8);
    FIELD_RT(mln_ipc_cb_t, prev, 8, 8);
    FIELD_RT(mln_ipc_cb_t, master_handler, 16, 8);
    FIELD_RT(mln_ipc_cb_t, worker_handler, 24, 8);
    FIELD_RT(mln_ipc_cb_t, master_data, 32, 8);
    FIELD_RT(mln_ipc_cb_t, worker_data, 40, 8);
    FIELD_RT(mln_ipc_cb_t, type, 48, 4);
    STRUCT_RT(struct mln_framework_attr, 48, 8);
    FIELD_RT(struct mln_framework_attr, argc, 0, 4);
    FIELD_RT(struct mln_framework_attr, argv, 8, 8);
    FIELD_RT(struct mln_framework_attr, global_init, 16, 8);
    FIELD_RT(struct mln_framework_attr, main_thread, 24, 8);
    FIELD_RT(struct mln_framework_attr, master_process, 32, 8);
    FIELD_RT(struct mln_framework_attr, worker_process, 40, 8);

    CONST_RT(M_PST_DFL, 0);
    CONST_RT(M_PST_SUP, 1);
    CONST_RT(M_PET_DFL, 0);
    CONST_RT(M_PET_EXE, 1);
    CONST_RT(M_EV_FD, 0);
    CONST_RT(M_EV_TM, 1);
    CONST_RT(M_EV_RECV | M_EV_SEND | M_EV_ERROR, M_EV_RSE_MASK);
    CONST_RT(M_EV_UNLIMITED, -1);
    CONST_RT(M_EV_UNMODIFIED, -2);
    CONST_RT(M_F_TYPELEN + M_F_LENLEN, 8);
    CONST_RT(M_IPC_HASH_BUCKETS - 1, M_IPC_HASH_MASK);

    /* Enum types can be declared and switched on as in Melon. */
    enum proc_state_type st = M_PST_SUP;
    enum proc_exec_type et = M_PET_EXE;
    enum mln_event_type evt = M_EV_TM;
    mln_fork_t f;
    memset(&f, 0, sizeof(f));
    f.stype = st;
    f.etype = et;
    CHECK(f.stype == M_PST_SUP && f.etype == M_PET_EXE && evt == M_EV_TM);
    switch (f.stype) {
    case M_PST_DFL: failures++; break;
    case M_PST_SUP: break;
    }

    /* Connection macros. */
    f.conn.sockfd = 42;
    CHECK(mln_tcp_conn_fd_get(&f.conn) == 42);
    CHECK(mln_tcp_conn_pool_get(&f.conn) == NULL);
    CHECK(mln_tcp_conn_send_empty(&f.conn));
    CHECK(mln_tcp_conn_recv_empty(&f.conn));
    CHECK(mln_tcp_conn_sent_empty(&f.conn));
    f.conn.snd_head = (mln_chain_t *)&f; /* any non-NULL pointer: never dereferenced */
    CHECK(!mln_tcp_conn_send_empty(&f.conn));

    /* Break macros touch bit 0 of the u32 at 136 only (a one-bit field in Melon); their
     * expansions end with ';' as Melon's do, so they are used as statements. */
    mln_event_t ev;
    memset(&ev, 0, sizeof(ev));
    mln_u32_t word;
    ev.is_break = 0xfffffff0u;
    mln_event_break_set(&ev)
    memcpy(&word, (char *)&ev + 136, sizeof(word));
    CHECK(word == 0xfffffff1u);
    mln_event_break_reset(&ev)
    memcpy(&word, (char *)&ev + 136, sizeof(word));
    CHECK(word == 0xfffffff0u);
    mln_event_break_set(&ev);
    CHECK(ev.is_break & 1u);

    /* mln_event_signal_set is signal(). */
    void (*old)(int) = mln_event_signal_set(SIGUSR1, my_sig);
    CHECK(old != SIG_ERR);
    CHECK(mln_event_signal_set(SIGUSR1, SIG_DFL) == my_sig);

    if (failures) {
        fprintf(stderr, "layout: %d check(s) failed\n", failures);
        return 1;
    }
    printf("layout: all checks passed\n");
    return 0;
}
