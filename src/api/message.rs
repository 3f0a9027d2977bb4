//! Typed messages: a Rust type carried as the payload of one frame type.

/// A Rust type carried as the payload of frames of one message type. The wire format does
/// not change: `encode` gives the payload bytes, `decode` reads them back. Register
/// handlers per type with [`Builder::on_master_message`](super::Builder::on_master_message)
/// / [`Builder::on_worker_message`](super::Builder::on_worker_message) and send with
/// [`Master::send_message_to`](super::Master::send_message_to),
/// [`Master::broadcast_message`](super::Master::broadcast_message) and
/// [`Worker::send_message`](super::Worker::send_message).
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
    /// dropped (and logged at warn level).
    fn decode(bytes: &[u8]) -> Option<Self>;
}
