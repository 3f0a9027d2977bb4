//! Received frames: [`Frame`] and its [`Payload`], and how the driver collects them during
//! a turn of the loop.
//!
//! The core's handlers (one per declared type, installed raw: no context is built per
//! frame) copy each payload into the turn's buffer, a *chunk*; when the turn ends (or the
//! chunk holds [`CHUNK`] bytes) the chunk is sealed into one shared allocation and each
//! frame's [`Payload`] is a view of its bytes. So a frame costs no allocation of its own:
//! one per chunk, freed when its last frame is dropped. The frames enter the shared inbox
//! together, one lock and one wake per turn ([`flush`]).

use super::super::{identity, Message, WorkerId};
use super::shared::{Dest, Inner};
use crate::abi::mln_fork_t;
use crate::process;
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most payload bytes one chunk collects before it is sealed (a larger payload gets a
/// chunk of its own): what a kept [`Payload`] can hold alive besides its own bytes.
const CHUNK: usize = 64 * 1024;

/// The bytes of a chunk and how many [`Payload`]s view them: the payloads of one chunk
/// are made together, so the count starts at their number (no atomic operation per frame
/// on the receiving side, one when each is dropped), as an `Arc` does otherwise.
struct Chunk {
    refs: AtomicUsize,
    data: Vec<u8>,
}

/// A received payload: a cheap view (`Clone` shares it) of the bytes the loop received,
/// read as a `&[u8]` (`Deref`, `AsRef`). Frames received in one turn of the loop share one
/// buffer, freed once the last of them is dropped: to keep a small payload for long
/// without keeping that buffer (at most 64 KiB), copy it (`to_vec()`).
pub struct Payload {
    chunk: NonNull<Chunk>,
    start: usize,
    end: usize,
}

// SAFETY: a payload only reads its chunk's bytes, which nobody changes once the chunk is
// shared, and its count is atomic (as `Arc<Vec<u8>>`, which is Send and Sync).
unsafe impl Send for Payload {}
// SAFETY: as above.
unsafe impl Sync for Payload {}

impl Payload {
    /// A chunk of `data` for `n` payloads (at least one), each made with
    /// `Payload { chunk, .. }`: exactly `n` of them must be made, or it leaks.
    fn chunk(data: Vec<u8>, n: usize) -> NonNull<Chunk> {
        NonNull::from(Box::leak(Box::new(Chunk {
            refs: AtomicUsize::new(n.max(1)),
            data,
        })))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the chunk lives while this payload counts in `refs`; its bytes do not
        // change any more; `start..end` is within them (set by `share`).
        unsafe { self.chunk.as_ref().data.get_unchecked(self.start..self.end) }
    }

    /// The bytes as a `Vec` (without a copy when this is the whole of an unshared buffer).
    pub fn into_vec(self) -> Vec<u8> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: as in `as_slice`.
        let chunk = unsafe { me.chunk.as_ref() };
        if me.start == 0 && me.end == chunk.data.len() && chunk.refs.load(Ordering::Acquire) == 1 {
            // SAFETY: the only payload of this chunk (`me` is not dropped): it is ours.
            let b = unsafe { Box::from_raw(me.chunk.as_ptr()) };
            return b.data;
        }
        let v = me.as_slice().to_vec();
        drop(std::mem::ManuallyDrop::into_inner(me));
        v
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        // SAFETY: as in `as_slice`. Relaxed: as `Arc::clone` (we hold a count already).
        unsafe { self.chunk.as_ref() }
            .refs
            .fetch_add(1, Ordering::Relaxed);
        Payload { ..*self }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        // SAFETY: as in `as_slice`.
        let refs = unsafe { &self.chunk.as_ref().refs };
        // As `Arc`'s drop: Release, and Acquire before freeing.
        if refs.fetch_sub(1, Ordering::Release) == 1 {
            std::sync::atomic::fence(Ordering::Acquire);
            // SAFETY: the last payload of this chunk: nobody else refers to it.
            drop(unsafe { Box::from_raw(self.chunk.as_ptr()) });
        }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::from(Vec::new())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        let end = v.len();
        Payload {
            chunk: Payload::chunk(v, 1),
            start: 0,
            end,
        }
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Payload::from(b.to_vec())
    }
}

impl From<Payload> for Vec<u8> {
    fn from(p: Payload) -> Self {
        p.into_vec()
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Payload {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Payload {}

impl Hash for Payload {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

macro_rules! eq_bytes {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Payload {
            fn eq(&self, other: &$t) -> bool {
                self.as_slice() == &other[..]
            }
        }
        impl PartialEq<Payload> for $t {
            fn eq(&self, other: &Payload) -> bool {
                &self[..] == other.as_slice()
            }
        }
    )*};
}
eq_bytes!([u8], &[u8], Vec<u8>);

impl<const N: usize> PartialEq<[u8; N]> for Payload {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Payload {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == *other
    }
}

/// One received frame: its type, its payload, and the descriptors that came with it.
#[derive(Debug, Default)]
pub struct Frame {
    /// The frame type.
    pub ty: u32,
    /// The payload bytes.
    pub payload: Payload,
    /// The descriptors, when some came (or were dropped by the kernel).
    fds: Option<Box<Fds>>,
}

#[derive(Debug)]
struct Fds {
    fds: Vec<OwnedFd>,
    truncated: bool,
}

impl Frame {
    /// A frame without descriptors.
    pub(super) fn new(ty: u32, payload: impl Into<Payload>) -> Frame {
        Frame {
            ty,
            payload: payload.into(),
            fds: None,
        }
    }

    /// The typed message this frame carries: `None` if its type is not `M::TYPE` or its
    /// payload does not decode.
    pub fn decode<M: Message>(&self) -> Option<M> {
        if self.ty == M::TYPE {
            M::decode(&self.payload)
        } else {
            None
        }
    }

    /// The descriptors sent with this frame (`send_with_fds`), in the sender's order, now
    /// the caller's, as the synchronous API's `take_fds()`: empty when none came or they
    /// were taken. Those not taken are closed when the frame is dropped.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.fds
            .as_mut()
            .map(|f| std::mem::take(&mut f.fds))
            .unwrap_or_default()
    }

    /// The descriptors sent with this frame not taken yet.
    pub fn fds(&self) -> &[OwnedFd] {
        self.fds.as_ref().map_or(&[], |f| &f.fds)
    }

    /// Whether some descriptors sent with this frame were dropped by the kernel (this
    /// process was at its descriptor limit), as the synchronous API's `fds_truncated()`.
    pub fn fds_truncated(&self) -> bool {
        self.fds.as_ref().is_some_and(|f| f.truncated)
    }
}

/// A frame received in this turn, its payload in the open chunk.
struct Staged {
    from: Dest,
    ty: u32,
    start: usize,
    end: usize,
}

/// The descriptors of open frame `at` (the few frames that have some).
struct StagedFds {
    at: usize,
    fds: Box<Fds>,
}

struct Stage {
    /// Frames whose payload is in `chunk`.
    open: Vec<Staged>,
    /// Their descriptors, by index in `open`, in order.
    open_fds: VecDeque<StagedFds>,
    chunk: Vec<u8>,
    /// Frames of sealed chunks, in order, for the inbox.
    ready: VecDeque<(Dest, Frame)>,
    /// The sender last resolved: (record, children generation, its id).
    last: Option<(usize, u64, WorkerId)>,
}

impl Stage {
    /// The open chunk's frames get their shared buffer.
    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let used = self.chunk.len();
        // The next chunk starts with room for about as much as this one took.
        let data = std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(used.next_power_of_two().min(CHUNK)),
        );
        // One payload per open frame.
        let chunk = Payload::chunk(data, self.open.len());
        let fds = &mut self.open_fds;
        self.ready
            .extend(self.open.drain(..).enumerate().map(|(i, s)| {
                let fds = match fds.front() {
                    Some(d) if d.at == i => fds.pop_front().map(|d| d.fds),
                    _ => None,
                };
                let payload = Payload {
                    chunk,
                    start: s.start,
                    end: s.end,
                };
                (
                    s.from,
                    Frame {
                        ty: s.ty,
                        payload,
                        fds,
                    },
                )
            }));
    }

    /// The identity of the sender's record `f`, cached while the children do not change.
    fn sender(&mut self, f: *const mln_fork_t) -> Option<WorkerId> {
        let gen = process::children_generation();
        match self.last {
            Some((at, g, id)) if at == f as usize && g == gen => Some(id),
            _ => {
                let id = identity::id_of(f)?;
                self.last = Some((f as usize, gen, id));
                Some(id)
            }
        }
    }
}

thread_local! {
    /// The frames of the current turn (the loop thread's).
    static STAGE: RefCell<Stage> = const {
        RefCell::new(Stage {
            open: Vec::new(),
            open_fds: VecDeque::new(),
            chunk: Vec::new(),
            ready: VecDeque::new(),
            last: None,
        })
    };
}

/// A frame received by a handler of the core (on the loop's thread, inside a turn): from
/// child record `from` in the master (`None` in a worker: from the master).
pub(super) fn stage(from: Option<*const mln_fork_t>, ty: u32, data: &[u8]) {
    let with_fds = process::fds::count() > 0 || process::fds::truncated();
    STAGE.with_borrow_mut(|st| {
        let from = match from {
            None => None,
            Some(f) => match st.sender(f) {
                Some(id) => Some(id),
                None => {
                    crate::log::error(format_args!(
                        "master handler for type {ty}: the sender is not a live child; dropped"
                    ));
                    return;
                }
            },
        };
        if !st.chunk.is_empty() && st.chunk.len() + data.len() > CHUNK {
            st.seal();
        }
        let start = st.chunk.len();
        st.chunk.extend_from_slice(data);
        if with_fds {
            st.open_fds.push_back(StagedFds {
                at: st.open.len(),
                fds: Box::new(Fds {
                    fds: process::fds::take_all(),
                    truncated: process::fds::truncated(),
                }),
            });
        }
        st.open.push(Staged {
            from,
            ty,
            start,
            end: start + data.len(),
        });
    });
}

/// Moves the frames of this turn into the inbox of `inner`, in order (after each turn,
/// and before a quit or the close, which end the stream only after the frames before
/// them): one lock and one wake.
pub(super) fn flush(inner: &Inner) {
    let ready = STAGE.with_borrow_mut(|st| {
        st.seal();
        if st.ready.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut st.ready))
        }
    });
    if let Some(mut frames) = ready {
        inner.lock().push_frames(&mut frames);
        // What comes back (empty) keeps its capacity for the next turn.
        STAGE.with_borrow_mut(|st| {
            if st.ready.is_empty() {
                st.ready = frames;
            }
        });
    }
}

/// Forgets what was staged (in a worker forked by a restart inside the master's turn:
/// those frames are the master's).
pub(super) fn forget() {
    STAGE.with_borrow_mut(|st| {
        st.open.clear();
        st.open_fds.clear();
        st.chunk.clear();
        st.ready.clear();
        st.last = None;
    });
}
