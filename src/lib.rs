//! melon-ipc: Melon's IPC module (`mln_ipc` / `mln_fork`) rebuilt in Rust.
//!
//! C programs link `libmln_ipc.a` / `libmln_ipc.so` in place of Melon's IPC code and
//! compile unchanged against `include/`.
//!
//! # Module map (inner to outer; ARCHITECTURE.md has the path of one message)
//! * [`abi`]: Melon's `#[repr(C)]` types and constants, with layout assertions.
//! * [`wire`] (frame codec) and [`registry`] (registrations and handler tables): pure.
//! * `channel`: one socketpair end (chunked send queue, pinned receive buffer).
//! * `sigsafe`: sends from signal handlers, the wake-up eventfd.
//! * `process`: global state, fork/spawn, send state machine, receive and dispatch,
//!   supervision.
//! * [`reactor`]: the event-loop seam; `standalone` (our epoll loop) and `melon` backends.
//! * `melon` (melon build): imports from libmelon, Melon connections and data symbols.
//! * [`capi`]: the `extern "C"` face (Melon's names); [`api`]: the safe Rust face.
//!
//! # From Rust
//! [`api::Builder`] registers closures as handlers per message type, forks supervised
//! workers and runs each process's event loop; handlers get a [`api::Master`] or
//! [`api::Worker`] context to send, broadcast, set timers and stop; in the master `run`
//! returns an [`api::RunSummary`] once stopped. See [`api`] for the
//! threading, fork-safety and ownership rules. A complete program (it forks three workers,
//! plays ping-pong with each and finishes by itself):
//!
//! ```
//! use mln_ipc::api::{Builder, Master, Worker, WorkerId};
//!
//! const PING: u32 = 2000;
//! const PONG: u32 = 2001;
//! const ROUNDS: u32 = 10;
//!
//! fn main() -> Result<(), mln_ipc::api::Error> {
//!     let mut finished = 0;
//!     Builder::new()
//!         .workers(3)
//!         // In the master, once the workers are forked: one ball per worker.
//!         .on_master_start(|m: &mut Master| {
//!             assert!(m.broadcast(PING, 1u32.to_le_bytes()).expect("broadcast").all_sent());
//!         })
//!         // In each worker: return the ball, one higher.
//!         .on_worker(PING, |w: &mut Worker, payload: &[u8]| {
//!             let n = u32::from_le_bytes(payload.try_into().expect("4 bytes"));
//!             w.send(PONG, (n + 1).to_le_bytes()).expect("send");
//!         })
//!         // In the master: keep playing until ROUNDS, then stop once all are done.
//!         .on_master(PONG, move |m: &mut Master, from: WorkerId, payload: &[u8]| {
//!             let n = u32::from_le_bytes(payload.try_into().expect("4 bytes"));
//!             if n < ROUNDS {
//!                 m.send_to(from, PING, n.to_le_bytes()).expect("send");
//!             } else {
//!                 finished += 1;
//!                 if finished == 3 {
//!                     m.stop();
//!                 }
//!             }
//!         })
//!         .run()?; // in the master, once stopped: a summary of the stop
//!     Ok(())
//! }
//! ```
#![allow(clippy::missing_safety_doc)]

#[cfg(not(any(feature = "standalone", feature = "melon")))]
compile_error!("enable one build: feature `standalone` (default) or `melon`");

pub mod abi;
#[cfg(feature = "standalone")]
pub mod api;
pub mod capi;
mod channel;
pub mod log;
#[cfg(not(feature = "standalone"))]
mod melon;
mod process;
pub mod reactor;
pub mod registry;
mod sigsafe;
mod sys;
pub mod wire;

/// The Rust programs of README.md, compiled and run as doc tests (so the README stays true).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
