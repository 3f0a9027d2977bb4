//! ABI types and constants of Melon's `mln_types.h`, `mln_event.h`, `mln_connection.h`,
//! `mln_fork.h`, `mln_ipc.h` and `mln_framework.h` (x86_64 Linux, Melon HEAD 270f2c80).
//!
//! Every `#[repr(C)]` struct here has its size and field offsets asserted at compile time
//! against the numbers in MELON_IPC_SPEC.md §1, and again from C in `ctests/layout.c`.
//! cbindgen turns this file into the type part of `include/mln_ipc.h`.
#![allow(non_camel_case_types, non_upper_case_globals)]

use core::ffi::{c_char, c_int, c_void};
use core::mem::{offset_of, size_of};

// ---------------------------------------------------------------------------------------
// mln_types.h (spec §1.1)
// ---------------------------------------------------------------------------------------
pub type mln_u8_t = u8;
pub type mln_s8_t = c_char;
pub type mln_u16_t = u16;
pub type mln_s16_t = i16;
pub type mln_u32_t = u32;
pub type mln_s32_t = i32;
pub type mln_u64_t = u64;
pub type mln_s64_t = i64;
pub type mln_s8ptr_t = *mut c_char;
pub type mln_u8ptr_t = *mut u8;
pub type mln_s16ptr_t = *mut i16;
pub type mln_u16ptr_t = *mut u16;
pub type mln_s32ptr_t = *mut i32;
pub type mln_u32ptr_t = *mut u32;
pub type mln_s64ptr_t = *mut i64;
pub type mln_u64ptr_t = *mut u64;
pub type mln_size_t = usize;
pub type mln_off_t = i64;
pub type mln_sptr_t = isize;
pub type mln_uptr_t = usize;
pub type mln_sauto_t = i64;
pub type mln_uauto_t = u64;
pub type mln_spin_t = i64;

// ---------------------------------------------------------------------------------------
// Enums (spec §1.2). Carried as `u32` across the boundary so that an out-of-range value
// written by C is a value we can refuse, never undefined behaviour in Rust.
// ---------------------------------------------------------------------------------------
/// `enum proc_state_type`: what the master does when a child dies.
pub type proc_state_type = u32;
/// Plain child: not restarted when it dies.
pub const M_PST_DFL: proc_state_type = 0;
/// Supervised child: restarted when it dies.
pub const M_PST_SUP: proc_state_type = 1;

/// `enum proc_exec_type`: how a child was started.
pub type proc_exec_type = u32;
/// Plain `fork()` worker.
pub const M_PET_DFL: proc_exec_type = 0;
/// `fork()` + `execv()` program.
pub const M_PET_EXE: proc_exec_type = 1;

/// `enum mln_event_type`.
pub type mln_event_type = u32;
pub const M_EV_FD: mln_event_type = 0;
pub const M_EV_TM: mln_event_type = 1;

// ---------------------------------------------------------------------------------------
// Opaque Melon types that appear only behind pointers.
// ---------------------------------------------------------------------------------------
/// Melon's memory pool. Opaque; in the standalone build always NULL.
#[repr(C)]
pub struct mln_alloc_t {
    _opaque: [u8; 0],
}
/// Melon's buffer chain. Opaque; in the standalone build the queue pointers are always NULL.
#[repr(C)]
pub struct mln_chain_t {
    _opaque: [u8; 0],
}
/// An event-loop timer handle returned by `mln_event_timer_set`. Opaque.
#[repr(C)]
pub struct mln_event_timer_t {
    _opaque: [u8; 0],
}

// ---------------------------------------------------------------------------------------
// mln_event.h (spec §1.10, §2)
// ---------------------------------------------------------------------------------------
/// An event loop (`struct mln_event_s`). Allocate with `mln_event_new`, free with
/// `mln_event_free`. Only `is_break` is meant to be touched from C, through the
/// `mln_event_break_set` / `mln_event_break_reset` macros; everything else is private.
/// Size and the offset of `is_break` are Melon's (208 and 136).
#[repr(C)]
pub struct mln_event_s {
    pub _private0: [u64; 17],
    /// Bit 0: leave `mln_event_dispatch` at the next check. Bits 1..31 are unused.
    pub is_break: mln_u32_t,
    pub _private1: [u32; 1],
    pub _private2: [u64; 8],
}
/// `mln_event_t`.
pub type mln_event_t = mln_event_s;

/// Descriptor handler: `(ev, fd, data)`.
pub type ev_fd_handler =
    Option<unsafe extern "C" fn(ev: *mut mln_event_t, fd: c_int, data: *mut c_void)>;
/// Timer handler: `(ev, data)`.
pub type ev_tm_handler = Option<unsafe extern "C" fn(ev: *mut mln_event_t, data: *mut c_void)>;
/// Called at the top of every dispatch iteration: `(ev, data)`.
pub type dispatch_callback = Option<unsafe extern "C" fn(ev: *mut mln_event_t, data: *mut c_void)>;

pub const M_EV_HASH_LEN: u32 = 64;
pub const M_EV_EPOLL_SIZE: u32 = 1024;
pub const M_EV_RECV: mln_u32_t = 0x1;
pub const M_EV_SEND: mln_u32_t = 0x2;
pub const M_EV_ERROR: mln_u32_t = 0x4;
pub const M_EV_RSE_MASK: mln_u32_t = 0x7;
pub const M_EV_ONESHOT: mln_u32_t = 0x8;
pub const M_EV_NONBLOCK: mln_u32_t = 0x10;
pub const M_EV_BLOCK: mln_u32_t = 0x20;
pub const M_EV_APPEND: mln_u32_t = 0x40;
pub const M_EV_CLR: mln_u32_t = 0x80;
pub const M_EV_FD_MASK: mln_u32_t = 0xff;
pub const M_EV_UNLIMITED: c_int = -1;
pub const M_EV_UNMODIFIED: c_int = -2;
pub const M_EV_TIMEOUT_US: u32 = 7000;
pub const M_EV_TIMEOUT_MS: u32 = 7;
pub const M_EV_TIMEOUT_NS: u32 = 7000000;
pub const M_EV_NOLOCK_TIMEOUT_US: u32 = 3000;
pub const M_EV_NOLOCK_TIMEOUT_MS: u32 = 3;
pub const M_EV_NOLOCK_TIMEOUT_NS: u32 = 3000000;

// ---------------------------------------------------------------------------------------
// mln_connection.h (spec §1.8, §2)
// ---------------------------------------------------------------------------------------
/// A connection (`mln_tcp_conn_t`). In the IPC API it names one end of a socketpair:
/// `mln_tcp_conn_fd_get(c)` gives its descriptor. In the standalone build the queues and
/// the pool are always NULL (melon-ipc keeps its own queues); in the melon build it is a
/// genuine Melon connection. `nonblock` is a one-bit field in Melon; here it is a whole
/// `mln_u32_t` at the same offset, holding 0 or 1.
#[repr(C)]
pub struct mln_tcp_conn_t {
    pub pool: *mut mln_alloc_t,
    pub rcv_head: *mut mln_chain_t,
    pub rcv_tail: *mut mln_chain_t,
    pub snd_head: *mut mln_chain_t,
    pub snd_tail: *mut mln_chain_t,
    pub sent_head: *mut mln_chain_t,
    pub sent_tail: *mut mln_chain_t,
    pub sockfd: c_int,
    pub nonblock: mln_u32_t,
}

impl mln_tcp_conn_t {
    /// A connection record with no pool and no queues, on descriptor `fd`.
    pub const fn unset(fd: c_int) -> Self {
        mln_tcp_conn_t {
            pool: core::ptr::null_mut(),
            rcv_head: core::ptr::null_mut(),
            rcv_tail: core::ptr::null_mut(),
            snd_head: core::ptr::null_mut(),
            snd_tail: core::ptr::null_mut(),
            sent_head: core::ptr::null_mut(),
            sent_tail: core::ptr::null_mut(),
            sockfd: fd,
            nonblock: 0,
        }
    }
}

pub const M_C_SEND: c_int = 1;
pub const M_C_RECV: c_int = 2;
pub const M_C_SENT: c_int = 3;
pub const M_C_FINISH: c_int = 1;
pub const M_C_NOTYET: c_int = 2;
pub const M_C_ERROR: c_int = 3;
pub const M_C_CLOSED: c_int = 4;
pub const M_C_TYPE_MEMORY: u32 = 0x1;
pub const M_C_TYPE_FILE: u32 = 0x2;
pub const M_C_TYPE_FOLLOW: u32 = 0x8;

// ---------------------------------------------------------------------------------------
// mln_fork.h / mln_ipc.h (spec §1.4-§1.7, §2)
// ---------------------------------------------------------------------------------------
/// A message handler: `(ev, f_ptr, buf, len, udata_ptr)`.
///
/// `f_ptr` is the sending child's `mln_fork_t *` in the master, and the master connection
/// (`mln_fork_master_connection_get()`) in a worker. `buf` points at the payload, is valid
/// only during the call, is not NUL-terminated, has no particular alignment (read
/// multi-byte values with `memcpy`) and is non-NULL even when `len` is 0.
/// `udata_ptr` points at this process's data slot for the type: it starts as the
/// registered data, and what the handler stores there is seen by the next message.
pub type ipc_handler = Option<
    unsafe extern "C" fn(
        ev: *mut mln_event_t,
        f_ptr: *mut c_void,
        buf: *mut c_void,
        len: mln_u32_t,
        udata_ptr: *mut *mut c_void,
    ),
>;
/// Called by `mln_fork_iterate` for each child; a negative return stops the walk.
pub type fork_iterate_handler = Option<
    unsafe extern "C" fn(ev: *mut mln_event_t, f: *mut mln_fork_t, data: *mut c_void) -> c_int,
>;
/// Resource-clear callback run in every newly forked child.
pub type clr_handler = Option<unsafe extern "C" fn(data: *mut c_void)>;

pub const STATE_IDLE: u32 = 0;
pub const STATE_LENGTH: u32 = 1;
pub const M_F_TYPELEN: usize = 4;
pub const M_F_LENLEN: usize = 4;
pub const M_IPC_HASH_BUCKETS: u32 = 64;
pub const M_IPC_HASH_MASK: u32 = 63;
/// Reserved type used by Melon's configuration reload (payload "conf_reload").
pub const M_IPC_TYPE_CONF: u32 = 1;

/// One child process as seen by the master (`struct mln_fork_s`, 144 bytes).
///
/// Owned by melon-ipc: a pointer stays valid until the child is found dead (after which a
/// restarted child gets a new `mln_fork_t`). `conn` is the master's end of the socketpair.
/// The receive-state fields (`state` .. `msg_buf_size`) are kept for layout compatibility;
/// melon-ipc keeps its receive state elsewhere and leaves them zero.
#[repr(C)]
pub struct mln_fork_s {
    pub prev: *mut mln_fork_s,
    pub next: *mut mln_fork_s,
    /// `execv` arguments of an exec'd child (a copy owned by melon-ipc), NULL otherwise.
    pub args: *mut mln_s8ptr_t,
    pub conn: mln_tcp_conn_t,
    pub pid: libc::pid_t,
    pub n_args: mln_u32_t,
    pub state: mln_u32_t,
    pub msg_len: mln_u32_t,
    pub msg_type: mln_u32_t,
    pub error_bytes: mln_size_t,
    pub msg_content: *mut c_void,
    pub msg_buf_size: mln_size_t,
    pub etype: proc_exec_type,
    pub stype: proc_state_type,
}
/// `mln_fork_t`.
pub type mln_fork_t = mln_fork_s;

/// Melon's internal fork argument block (`struct mln_fork_attr`, 32 bytes). Declared for
/// layout compatibility only; no function takes it.
#[repr(C)]
pub struct mln_fork_attr {
    pub args: *mut mln_s8ptr_t,
    pub n_args: mln_u32_t,
    pub fd: c_int,
    pub pid: libc::pid_t,
    pub etype: proc_exec_type,
    pub stype: proc_state_type,
}

/// One installed handler of a per-process table (`struct mln_ipc_handler_s`, 32 bytes).
#[repr(C)]
pub struct mln_ipc_handler_s {
    pub handler: ipc_handler,
    pub data: *mut c_void,
    pub r#type: mln_u32_t,
    pub next: *mut mln_ipc_handler_s,
}
/// `mln_ipc_handler_t`.
pub type mln_ipc_handler_t = mln_ipc_handler_s;

/// A registry entry returned by `mln_ipc_handler_register` (`struct mln_ipc_cb_s`, 56
/// bytes). Owned by melon-ipc until passed to `mln_ipc_handler_unregister`; read-only for C.
#[repr(C)]
pub struct mln_ipc_cb_s {
    pub next: *mut mln_ipc_cb_s,
    pub prev: *mut mln_ipc_cb_s,
    pub master_handler: ipc_handler,
    pub worker_handler: ipc_handler,
    pub master_data: *mut c_void,
    pub worker_data: *mut c_void,
    pub r#type: mln_u32_t,
}
/// `mln_ipc_cb_t`.
pub type mln_ipc_cb_t = mln_ipc_cb_s;

/// Extension (not in Melon): called on the loop when a peer whose send was refused with
/// EAGAIN (queue limit) has drained to half the limit or less. `f`: the child, or NULL in a
/// worker (the master connection). Set with `mln_ipc_writable_handler_set`.
pub type mln_ipc_writable_handler =
    Option<unsafe extern "C" fn(ev: *mut mln_event_t, f: *mut mln_fork_t, data: *mut c_void)>;

/// Extension (not in Melon): counters of one connection, filled by `mln_ipc_stats_get`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mln_ipc_stats_t {
    /// Frames completely written to the socket, and their payload bytes.
    pub frames_sent: mln_u64_t,
    pub bytes_sent: mln_u64_t,
    /// Frames received and dispatched (or dropped: no handler), and their payload bytes.
    pub frames_received: mln_u64_t,
    pub bytes_received: mln_u64_t,
    /// Frames and wire bytes (headers included) queued and not yet written, now.
    pub queued_frames: mln_u64_t,
    pub queued_bytes: mln_u64_t,
    /// The largest `queued_bytes` seen.
    pub queue_peak_bytes: mln_u64_t,
    /// Sends refused with EAGAIN (queue limit).
    pub sends_refused: mln_u64_t,
    /// Restarts of this worker slot so far (master side; 0 in a worker).
    pub restarts: mln_u64_t,
    /// Nanoseconds sends to this peer spent waiting for it to read (pacing: only in a
    /// program that set no writable handler; README "Backpressure").
    pub paced_ns: mln_u64_t,
    /// Descriptors handed to the socket (`mln_ipc_*_send_fds_prepare`).
    pub fds_sent: mln_u64_t,
    /// Descriptors received with frames.
    pub fds_received: mln_u64_t,
    /// Descriptors queued to this worker slot's earlier processes that died before they
    /// were written (closed, not leaked); carried over to the replacement as `restarts`.
    pub fds_lost: mln_u64_t,
}

// ---------------------------------------------------------------------------------------
// Lifecycle control (extensions, issue 22)
// ---------------------------------------------------------------------------------------
/// Extension (not in Melon): the kind of a child event (`mln_ipc_child_event_t::type`).
/// A C enum in the header (`after_includes` of cbindgen.toml).
pub type mln_ipc_child_event_type_t = u32;
/// The fork handshake is done: `f` is the new record, sends to it work (a child stopped
/// before this event is delivered still gets it; sends to it fail then).
pub const M_IPC_CHILD_STARTED: mln_ipc_child_event_type_t = 1;
/// The process is gone: `f` is its record (readable during the call).
pub const M_IPC_CHILD_EXITED: mln_ipc_child_event_type_t = 2;
/// The restart policy was exceeded: the slot stays empty.
pub const M_IPC_CHILD_GAVE_UP: mln_ipc_child_event_type_t = 3;
/// A rolling restart ended: `f` is NULL, `status` 0 done, -1 aborted.
pub const M_IPC_ROLLING_DONE: mln_ipc_child_event_type_t = 4;
/// A restart could not fork: `f` is NULL, `slot` the slot, `status` the errno (EDEADLK:
/// refused because other threads run, see the Rust API's `allow_threads`), `restart_in_ms`
/// when it is tried again.
pub const M_IPC_CHILD_RESTART_FAILED: mln_ipc_child_event_type_t = 5;

/// Extension (not in Melon): how a child ended (`mln_ipc_child_event_t::how`). A C enum in
/// the header.
pub type mln_ipc_end_t = u32;
/// Exited or was killed without being asked to stop.
pub const M_IPC_END_CRASHED: mln_ipc_end_t = 1;
/// Exited after a graceful stop (or a close asked by the program), before the deadline.
pub const M_IPC_END_STOPPED: mln_ipc_end_t = 2;
/// Ended by SIGTERM at the deadline of a graceful stop.
pub const M_IPC_END_TERMINATED: mln_ipc_end_t = 3;
/// Ended by SIGKILL from the library (after a stop's deadline, after the grace given to a
/// child whose channel closed, a missed fork handshake, an aborted rolling replacement).
pub const M_IPC_END_KILLED: mln_ipc_end_t = 4;

/// Extension (not in Melon): one event of a child's life, given to the handler set with
/// `mln_ipc_child_event_handler_set` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mln_ipc_child_event_t {
    pub r#type: mln_ipc_child_event_type_t,
    /// The child's slot: 0 .. workers-1 for the workers, then the spawned programs in
    /// the order they were started. A replacement keeps its predecessor's slot.
    pub slot: mln_u32_t,
    pub pid: libc::pid_t,
    /// EXITED: how it ended.
    pub how: mln_ipc_end_t,
    /// EXITED: 1 = it exited with `status`, 0 = killed by signal `status`, -1 = unknown
    /// (then `status` is -1: a spawned program forked while SIGCHLD is ignored, or one
    /// reaped by a wait of the program's own).
    pub exited: c_int,
    /// EXITED: the exit status or the signal number. ROLLING_DONE: 0 done, -1 aborted.
    pub status: c_int,
    /// Restarts of this slot so far.
    pub restarts: mln_u32_t,
    /// EXITED: in how many milliseconds its replacement starts (0: at once), -1 if none
    /// will (not supervised, stopped, given up, replaced by a rolling restart).
    pub restart_in_ms: mln_s64_t,
    /// EXITED: frames queued to it and never written.
    pub frames_lost: mln_u64_t,
}

/// Extension (not in Melon): the master's child-event handler, called on the master's
/// loop as `h(ev, f, e, data)`; `f` is the child's record (NULL for ROLLING_DONE), `e`
/// valid during the call only.
pub type mln_ipc_child_event_handler = Option<
    unsafe extern "C" fn(
        ev: *mut mln_event_t,
        f: *mut mln_fork_t,
        e: *const mln_ipc_child_event_t,
        data: *mut c_void,
    ),
>;

/// Extension (not in Melon): a worker's quit handler, called on its loop when its master
/// stops it gracefully (`mln_fork_stop`). Returns 0: the worker exits with status 0 once
/// its queue to the master is written; 1: the program ends the worker itself.
pub type mln_ipc_quit_handler =
    Option<unsafe extern "C" fn(ev: *mut mln_event_t, data: *mut c_void) -> c_int>;

// ---------------------------------------------------------------------------------------
// mln_framework.h (spec §1.11)
// ---------------------------------------------------------------------------------------
/// `global_init`: run once before forking; a negative return aborts initialisation.
pub type mln_framework_init_t = Option<unsafe extern "C" fn() -> c_int>;
/// `main_thread` / `master_process` / `worker_process`: given the process's event loop.
pub type mln_framework_process_t = Option<unsafe extern "C" fn(ev: *mut mln_event_t)>;

/// Arguments of `mln_framework_init` (`struct mln_framework_attr`, 48 bytes).
#[repr(C)]
pub struct mln_framework_attr {
    pub argc: c_int,
    pub argv: *mut *mut c_char,
    pub global_init: mln_framework_init_t,
    pub main_thread: mln_framework_process_t,
    pub master_process: mln_framework_process_t,
    pub worker_process: mln_framework_process_t,
}

// ---------------------------------------------------------------------------------------
// Layout assertions (spec §1).
// ---------------------------------------------------------------------------------------
macro_rules! assert_layout {
    ($t:ty, size $s:expr, align $a:expr $(, $f:ident @ $o:expr)*) => {
        const _: () = assert!(size_of::<$t>() == $s);
        const _: () = assert!(core::mem::align_of::<$t>() == $a);
        $(const _: () = assert!(offset_of!($t, $f) == $o);)*
    };
}

assert_layout!(mln_event_t, size 208, align 8, is_break @ 136);
assert_layout!(mln_tcp_conn_t, size 64, align 8,
    pool @ 0, rcv_head @ 8, rcv_tail @ 16, snd_head @ 24, snd_tail @ 32,
    sent_head @ 40, sent_tail @ 48, sockfd @ 56, nonblock @ 60);
assert_layout!(mln_fork_t, size 144, align 8,
    prev @ 0, next @ 8, args @ 16, conn @ 24, pid @ 88, n_args @ 92, state @ 96,
    msg_len @ 100, msg_type @ 104, error_bytes @ 112, msg_content @ 120,
    msg_buf_size @ 128, etype @ 136, stype @ 140);
assert_layout!(mln_fork_attr, size 32, align 8,
    args @ 0, n_args @ 8, fd @ 12, pid @ 16, etype @ 20, stype @ 24);
assert_layout!(mln_ipc_handler_t, size 32, align 8, handler @ 0, data @ 8, r#type @ 16, next @ 24);
assert_layout!(mln_ipc_cb_t, size 56, align 8,
    next @ 0, prev @ 8, master_handler @ 16, worker_handler @ 24, master_data @ 32,
    worker_data @ 40, r#type @ 48);
assert_layout!(mln_framework_attr, size 48, align 8,
    argc @ 0, argv @ 8, global_init @ 16, main_thread @ 24, master_process @ 32,
    worker_process @ 40);
assert_layout!(mln_ipc_stats_t, size 104, align 8, frames_sent @ 0, restarts @ 64, paced_ns @ 72,
    fds_sent @ 80, fds_received @ 88, fds_lost @ 96);
assert_layout!(mln_ipc_child_event_t, size 48, align 8,
    r#type @ 0, slot @ 4, pid @ 8, how @ 12, exited @ 16, status @ 20, restarts @ 24,
    restart_in_ms @ 32, frames_lost @ 40);
const _: () = assert!(size_of::<ipc_handler>() == 8);
const _: () = assert!(size_of::<mln_size_t>() == 8 && size_of::<libc::pid_t>() == 4);
