//! Typed messages through serde (feature `serde`): a `Serialize + DeserializeOwned` type
//! with a type id is a [`Message`], encoded with postcard.

use super::Message;
use crate::log;
use postcard::ser_flavors::Size;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A serde type carried as the payload of frames of one message type: implement this
/// (one constant) instead of [`Message`], and every typed method takes the type as it is:
/// [`Builder::on_master_message`](super::Builder::on_master_message),
/// [`Builder::on_worker_message`](super::Builder::on_worker_message),
/// [`Master::send_message_to`](super::Master::send_message_to),
/// [`Master::broadcast_message`](super::Master::broadcast_message),
/// [`Worker::send_message`](super::Worker::send_message). Needs the crate's `serde` feature;
/// bring your own `serde` with its `derive` feature.
///
/// The payload is the value in [postcard](https://docs.rs/postcard)'s format: compact
/// (integers as varints, no field names, an enum's variant as its index), fast, and a wire
/// format that is documented and stable since postcard 1.0. Both ends must agree on the
/// type: fields are read in order and nothing describes them, so a changed struct is a new
/// type id (or an enum of versions). A value is at most
/// [`Builder::max_message`](super::Builder::max_message) minus 4 bytes, as any payload.
///
/// Receiving: a frame of the type whose payload is not exactly one value of the type (it
/// ends early, holds an invalid variant, UTF-8 or `bool`, or has bytes left over after the
/// value) is dropped, logged at warn level with postcard's reason, and counted in
/// [`Stats::undecoded`](super::Stats::undecoded); nothing panics and the next frame is
/// handled as usual. A length inside the payload (a `Vec`'s, a `String`'s) beyond what the
/// bytes left could hold reserves nothing ahead (and serde caps any reservation at 1 MiB),
/// so a forged length costs no memory.
///
/// `Job::TYPE` names the id when only one of the two traits is in scope; with both (a
/// module that also implements `Message` by hand), write `<Job as Message>::TYPE`, or keep
/// the id in a constant of its own.
///
/// Sending: a value whose `Serialize` fails, or that postcard cannot write (a sequence or
/// map of unknown length, as `#[serde(flatten)]` produces), is refused with
/// [`Error::Encode`](super::Error::Encode) and nothing is queued. Calling
/// [`Message::encode`] yourself on such a value gives an empty payload and logs why
/// ([`Message::try_encode`] says it instead).
///
/// ```
/// use mln_ipc::api::{Message, SerdeMessage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum Job {
///     Resize { path: String, width: u32 },
///     Delete(Vec<String>),
///     Stop,
/// }
/// impl SerdeMessage for Job {
///     const TYPE: u32 = 3001;
/// }
///
/// let job = Job::Resize { path: "a.png".into(), width: 640 };
/// let bytes = job.encode();
/// assert_eq!(bytes.len(), 1 + 1 + 5 + 2); // variant, length, "a.png", 640 as a varint
/// assert_eq!(Job::decode(&bytes), Some(job));
/// assert_eq!(Job::decode(&[2]), Some(Job::Stop));
/// assert!(Job::try_decode(&[7]).is_err()); // no variant 7
/// assert!(Job::try_decode(&[2, 0]).is_err()); // a byte after the value
/// ```
///
/// In a program (the worker answers each job with the number of paths it was given):
///
/// ```
/// use mln_ipc::api::{Builder, Master, SerdeMessage, Worker, WorkerId};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job {
///     paths: Vec<String>,
///     priority: Option<u8>,
/// }
/// impl SerdeMessage for Job {
///     const TYPE: u32 = 3001;
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct Done {
///     count: usize,
/// }
/// impl SerdeMessage for Done {
///     const TYPE: u32 = 3002;
/// }
///
/// let summary = Builder::new()
///     .workers(1)
///     .on_master_start(|m: &mut Master| {
///         let job = Job { paths: vec!["a".into(), "b".into()], priority: None };
///         m.broadcast_message(&job).expect("broadcast");
///     })
///     .on_worker_message(|w: &mut Worker, job: Job| {
///         let _ = w.send_message(&Done { count: job.paths.len() });
///     })
///     .on_master_message(|m: &mut Master, _from: WorkerId, done: Done| {
///         assert_eq!(done.count, 2);
///         m.stop();
///     })
///     .run()
///     .expect("run");
/// assert!(summary.is_clean());
/// ```
pub trait SerdeMessage: Serialize + DeserializeOwned {
    /// The frame type. Types 0..=1024 are reserved for Melon.
    const TYPE: u32;
}

impl<T: SerdeMessage> Message for T {
    const TYPE: u32 = <T as SerdeMessage>::TYPE;

    fn encode(&self) -> Vec<u8> {
        self.try_encode().unwrap_or_else(|why| {
            log::warn(format_args!(
                "type {}: the value does not encode ({why}); encode() gives no bytes",
                <T as SerdeMessage>::TYPE
            ));
            Vec::new()
        })
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Self::try_decode(bytes).ok()
    }

    /// Measured first, then written into a buffer of that size: one allocation, none
    /// wasted. (`to_allocvec` grows its buffer from empty: encode + decode of a small
    /// struct took about 105 ns that way, 77 ns this way; `bench_codec` in api_serde.rs.)
    fn try_encode(&self) -> Result<Vec<u8>, String> {
        let len = postcard::serialize_with_flavor(self, Size::default()).map_err(why)?;
        let mut buf = vec![0; len];
        let used = postcard::to_slice(self, &mut buf).map_err(why)?.len();
        // A `Serialize` that writes less the second time: what it wrote, nothing more.
        buf.truncate(used);
        Ok(buf)
    }

    /// One value, and nothing after it: a frame carries exactly one message, so bytes
    /// left over mean the sender wrote something else (another type, another version).
    fn try_decode(bytes: &[u8]) -> Result<Self, String> {
        match postcard::take_from_bytes(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(format!("{} bytes left after the value", rest.len())),
            Err(e) => Err(why(e)),
        }
    }
}

fn why(e: postcard::Error) -> String {
    e.to_string()
}
