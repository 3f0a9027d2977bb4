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
use super::shared::Inner;
use crate::abi::mln_fork_t;
use crate::process;
use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

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
    /// A chunk of `data` for `n` payloads, each made with `Payload { chunk, .. }`:
    /// exactly `n` of them must be made, or it leaks (a staged chunk gets its count when
    /// it is sealed).
    fn chunk(data: Vec<u8>, n: usize) -> NonNull<Chunk> {
        NonNull::from(Box::leak(Box::new(Chunk {
            refs: AtomicUsize::new(n),
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
            unsafe { recycle(self.chunk) };
        }
    }
}

/// Chunks kept for the next ones the loop opens (their boxes and buffers): a turn of one
/// small frame (a round trip) then allocates nothing, and a stream of large frames does
/// not free and allocate (and fault in) 64 KiB buffers over and over. Each slot is empty
/// or holds a chunk nobody else refers to.
static SPARE: [AtomicPtr<Chunk>; SPARES] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SPARES];
const SPARES: usize = 8;

/// A chunk nobody refers to any more: kept in an empty slot when its buffer is not large,
/// freed otherwise.
///
/// # Safety
/// `chunk` came from `Payload::chunk` and nothing refers to it.
unsafe fn recycle(chunk: NonNull<Chunk>) {
    // SAFETY: per the contract, it is ours.
    let c = unsafe { &mut *chunk.as_ptr() };
    if c.data.capacity() <= CHUNK {
        c.data.clear();
        for slot in &SPARE {
            if slot
                .compare_exchange(
                    std::ptr::null_mut(),
                    chunk.as_ptr(),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
        }
    }
    // SAFETY: per the contract; not kept.
    drop(unsafe { Box::from_raw(chunk.as_ptr()) });
}

/// A chunk for a new turn's frames (its count set when sealed), and the buffer for its
/// bytes: a kept one's when there is one.
fn open_chunk() -> (NonNull<Chunk>, Vec<u8>) {
    for slot in &SPARE {
        if slot.load(Ordering::Relaxed).is_null() {
            continue;
        }
        if let Some(c) = NonNull::new(slot.swap(std::ptr::null_mut(), Ordering::Acquire)) {
            // SAFETY: taken out of its slot: nobody else has it.
            return (c, std::mem::take(unsafe { &mut (*c.as_ptr()).data }));
        }
    }
    (Payload::chunk(Vec::new(), 0), Vec::new())
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

/// A received frame as the inbox keeps it, until a receiver takes it and it becomes a
/// [`Frame`] ([`Entry::take`]): 40 bytes, its payload a range of its chunk, its sender
/// an index and a pid.
pub(super) struct Entry {
    chunk: NonNull<Chunk>,
    fds: Option<Box<Fds>>,
    start: u32,
    len: u32,
    ty: u32,
    /// The sender's index (`NO_SENDER`: the master) and pid.
    index: u32,
    pid: u32,
}

/// `Entry::index` of a frame from the master (in a worker).
const NO_SENDER: u32 = u32::MAX;

// SAFETY: as `Payload` (an entry is one payload's count of its chunk), and `Box<Fds>` is
// Send.
unsafe impl Send for Entry {}

impl Entry {
    /// The frame, from the master (in a worker).
    #[inline]
    pub(super) fn into_frame(self) -> Frame {
        self.into_master().1
    }

    /// The sender and the frame (in the master).
    #[inline]
    pub(super) fn into_master(self) -> (WorkerId, Frame) {
        let e = std::mem::ManuallyDrop::new(self);
        // SAFETY: read once from an entry that is not dropped (`ManuallyDrop`): its count
        // of the chunk and its descriptors move into the frame.
        let fds = unsafe { std::ptr::read(&e.fds) };
        let start = e.start as usize;
        let frame = Frame {
            ty: e.ty,
            payload: Payload {
                chunk: e.chunk,
                start,
                end: start + e.len as usize,
            },
            fds,
        };
        (WorkerId::new(e.index as usize, e.pid), frame)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Its count of the chunk goes, as the frame's would (and its descriptors close).
        drop(Payload {
            chunk: self.chunk,
            start: 0,
            end: 0,
        });
    }
}

struct Stage {
    /// The chunk the frames of this turn go to (its count and bytes set when sealed).
    open: Option<NonNull<Chunk>>,
    /// Its bytes so far, and how many entries view it.
    bytes: Vec<u8>,
    count: usize,
    /// The frames of this turn, in order, for the inbox.
    ready: Vec<Entry>,
    /// The sender last resolved: (record, children generation, its id).
    last: Option<(usize, u64, WorkerId)>,
}

impl Stage {
    /// The open chunk gets its bytes and its count: its entries may be read from now on.
    fn seal(&mut self) {
        let Some(chunk) = self.open.take() else {
            return;
        };
        let data = std::mem::take(&mut self.bytes);
        // SAFETY: made by `stage` for this turn; its entries are still in `ready`, not
        // given to anyone: this thread alone reaches it until `flush` publishes them.
        unsafe {
            let c = &mut *chunk.as_ptr();
            c.data = data;
            *c.refs.get_mut() = std::mem::take(&mut self.count);
        }
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
            open: None,
            bytes: Vec::new(),
            count: 0,
            ready: Vec::new(),
            last: None,
        })
    };
}

/// A frame received by a handler of the core (on the loop's thread, inside a turn): from
/// child record `from` in the master (`None` in a worker: from the master).
pub(super) fn stage(from: Option<*const mln_fork_t>, ty: u32, data: &[u8]) {
    let with_fds = process::fds::count() > 0 || process::fds::truncated();
    STAGE.with_borrow_mut(|st| {
        let (index, pid) = match from {
            None => (NO_SENDER, 0),
            Some(f) => match st.sender(f) {
                Some(id) => (id.index() as u32, id.pid()),
                None => {
                    crate::log::error(format_args!(
                        "master handler for type {ty}: the sender is not a live child; dropped"
                    ));
                    return;
                }
            },
        };
        if st.open.is_some() && st.bytes.len() + data.len() > CHUNK {
            st.seal();
        }
        let chunk = match st.open {
            Some(c) => c,
            None => {
                let (c, bytes) = open_chunk();
                st.bytes = bytes;
                st.open = Some(c);
                c
            }
        };
        let start = st.bytes.len();
        st.bytes.extend_from_slice(data);
        st.count += 1;
        let fds = with_fds.then(|| {
            Box::new(Fds {
                fds: process::fds::take_all(),
                truncated: process::fds::truncated(),
            })
        });
        // Within one chunk: at most max(CHUNK, the largest frame) bytes, and a frame is
        // at most 4 GiB (its length field).
        let (start, len) = (start as u32, data.len() as u32);
        st.ready.reserve(1);
        let at = st.ready.len();
        // SAFETY: `reserve` made room for one more at `at`; every field is written before
        // `set_len` counts it. Field by field, in place: an entry built on the stack and
        // copied stalled on store forwarding (it was most of this function's time).
        unsafe {
            let e = st.ready.as_mut_ptr().add(at);
            std::ptr::addr_of_mut!((*e).chunk).write(chunk);
            std::ptr::addr_of_mut!((*e).fds).write(fds);
            std::ptr::addr_of_mut!((*e).start).write(start);
            std::ptr::addr_of_mut!((*e).len).write(len);
            std::ptr::addr_of_mut!((*e).ty).write(ty);
            std::ptr::addr_of_mut!((*e).index).write(index);
            std::ptr::addr_of_mut!((*e).pid).write(pid);
            st.ready.set_len(at + 1);
        }
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
        st.seal();
        st.ready.clear();
        st.bytes.clear();
        st.last = None;
    });
}
