//! melon-ipc: Melon's IPC module (`mln_ipc` / `mln_fork`) rebuilt in Rust.
//!
//! C programs link `libmln_ipc.a` / `libmln_ipc.so` in place of Melon's IPC code and
//! compile unchanged against `include/`. Layers, inner to outer: [`wire`] (frame codec) and
//! [`registry`] (handler tables) are pure; `channel` owns one socketpair end; `process`
//! forks, supervises and dispatches; `reactor` is the seam to the event loop; `capi` is the
//! `extern "C"` face.
#![allow(clippy::missing_safety_doc)]

#[cfg(not(any(feature = "standalone", feature = "melon")))]
compile_error!("enable one build: feature `standalone` (default) or `melon`");

pub mod abi;
pub mod capi;
mod channel;
pub mod log;
#[cfg(not(feature = "standalone"))]
mod melon;
mod process;
pub mod reactor;
pub mod registry;
mod sys;
pub mod wire;
