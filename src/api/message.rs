//! Typed messages: a Rust type carried as the payload of one frame type.

/// A Rust type carried as the payload of frames of one message type. The wire format does
/// not change: `encode` gives the payload bytes, `decode` reads them back. Register
/// handlers per type with [`Builder::on_master_message`](super::Builder::on_master_message)
/// / [`Builder::on_worker_message`](super::Builder::on_worker_message) and send with
/// [`Master::send_message_to`](super::Master::send_message_to),
/// [`Master::broadcast_message`](super::Master::broadcast_message) and
/// [`Worker::send_message`](super::Worker::send_message).
///
/// With the crate's `serde` feature, a type with serde's `Serialize` and `Deserialize` needs
/// no hand-written `encode` / `decode`: give it a type id with `SerdeMessage` and it is a
/// `Message` (encoded with postcard).
///
/// ```
/// use mln_ipc::api::Message;
///
/// struct Square(u32);
/// impl Message for Square {
///     const TYPE: u32 = 3000;
///     fn encode(&self) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn decode(bytes: &[u8]) -> Option<Self> {
///         Some(Square(u32::from_le_bytes(bytes.try_into().ok()?)))
///     }
/// }
/// assert_eq!(Square::decode(&Square(7).encode()).map(|s| s.0), Some(7));
/// ```
pub trait Message: Sized {
    /// The frame type. Types 0..=1024 are reserved for Melon.
    const TYPE: u32;
    /// The payload bytes for `self`.
    fn encode(&self) -> Vec<u8>;
    /// The value carried by `bytes`, or `None` when they do not decode; such a frame is
    /// dropped, logged at warn level and counted ([`Stats::undecoded`](super::Stats::undecoded)).
    fn decode(bytes: &[u8]) -> Option<Self>;

    /// [`Message::encode`], or why `self` cannot be encoded. The typed sends
    /// ([`Master::send_message_to`](super::Master::send_message_to), ...) call this one and
    /// refuse the send with [`Error::Encode`](super::Error::Encode) on `Err` (nothing is
    /// queued). The default never fails: `Ok(self.encode())`.
    fn try_encode(&self) -> Result<Vec<u8>, String> {
        Ok(self.encode())
    }

    /// [`Message::decode`], or why `bytes` do not decode: the typed handlers call this one
    /// and log the text with the dropped frame. The default calls `decode`.
    fn try_decode(bytes: &[u8]) -> Result<Self, String> {
        Self::decode(bytes).ok_or_else(|| String::from("refused by decode"))
    }
}
