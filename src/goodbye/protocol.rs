//! The goodbye wire format and the stream functions that read and write it.
//!
//! The closing side opens a stream for [`GOODBYE_PROTOCOL`] and calls [`send_goodbye`]; the other
//! side answers the inbound stream with [`recv_goodbye`]. On the wire a goodbye is exactly one
//! frame: an unsigned-varint length prefix (minimally encoded, as multiformats requires) followed by
//! a protobuf `Goodbye` message of at most [`MAX_GOODBYE_SIZE`] bytes (see
//! `src/generated/goodbye.proto`). [`encode_goodbye`] and [`decode_goodbye`] apply the same framing
//! rules to byte slices.

use std::{io, time::Duration};

use futures::prelude::*;
use libp2p_swarm::StreamProtocol;
use quick_protobuf::{BytesReader, MessageRead, MessageWrite, Writer};

use crate::DisconnectReason;

use crate::generated::goodbye as proto;

/// The protocol name of the goodbye stream.
pub const GOODBYE_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/connection-manager/goodbye/1.0.0");

/// Largest goodbye frame accepted (bytes, without the length prefix); decoders reject bigger
/// frames before allocating or reading anything past the prefix.
///
/// The largest frame this version writes is 17 bytes; the rest is room for future fields.
pub const MAX_GOODBYE_SIZE: usize = 64;

/// Retry-after values above this are clamped on decode, so a remote cannot keep us away forever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A u64 length takes at most 10 varint bytes; anything longer is not a length.
const MAX_PREFIX_LEN: usize = 10;

/// Bytes [`send_goodbye`] tolerates (and discards) from the remote while waiting for its close.
const MAX_DRAIN: usize = MAX_GOODBYE_SIZE;

/// What a peer tells the remote right before closing a connection to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goodbye {
    /// Why the connection is closed.
    pub reason: DisconnectReason,
    /// How long the remote should wait before dialing again, if the sender has an opinion.
    ///
    /// Sent in whole milliseconds (rounded up); clamped to [`MAX_RETRY_AFTER`] on decode.
    pub retry_after: Option<Duration>,
}

impl Goodbye {
    /// A goodbye for `reason` without a retry-after hint.
    pub fn new(reason: DisconnectReason) -> Self {
        Self {
            reason,
            retry_after: None,
        }
    }

    /// Asks the remote to wait at least `retry_after` before dialing again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}

/// Why sending or receiving a goodbye failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoodbyeError {
    /// Reading from or writing to the stream failed.
    #[error("I/O error on the goodbye stream: {0}")]
    Io(#[from] io::Error),
    /// The length prefix announces a frame bigger than [`MAX_GOODBYE_SIZE`].
    #[error("goodbye frame of {len} bytes exceeds the {max} byte cap")]
    FrameTooLarge {
        /// The announced length (saturated to `usize::MAX`).
        len: usize,
        /// The cap, [`MAX_GOODBYE_SIZE`].
        max: usize,
    },
    /// The length prefix is not a minimally encoded unsigned varint that fits a u64.
    #[error("goodbye length prefix is not a minimal unsigned varint of at most 10 bytes")]
    InvalidLengthPrefix,
    /// The input ended inside the length prefix or inside the message.
    #[error("goodbye frame truncated: the input ended after {got} bytes")]
    Truncated {
        /// Bytes of the frame (prefix included) that were present.
        got: usize,
    },
    /// The frame's content is not a valid protobuf `Goodbye` message.
    #[error("malformed goodbye message: {0}")]
    Malformed(#[source] quick_protobuf::Error),
    /// [`decode_goodbye`] got more bytes than the one frame.
    #[error("{extra} unexpected bytes after the goodbye frame")]
    TrailingBytes {
        /// How many bytes followed the frame.
        extra: usize,
    },
    /// While [`send_goodbye`] waited for the remote to close, the remote sent data instead.
    #[error("the remote sent more than {max} bytes after the goodbye instead of closing")]
    UnexpectedData {
        /// How many bytes are tolerated, and discarded, before giving up.
        max: usize,
    },
}

impl GoodbyeError {
    /// Whether the remote broke the protocol (as opposed to the stream failing or ending).
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            Self::FrameTooLarge { .. }
                | Self::InvalidLengthPrefix
                | Self::Malformed(_)
                | Self::TrailingBytes { .. }
                | Self::UnexpectedData { .. }
        )
    }
}

/// Encodes `goodbye` as one frame: unsigned-varint length prefix, then the protobuf message.
pub fn encode_goodbye(goodbye: &Goodbye) -> Vec<u8> {
    let message = proto::Goodbye {
        reason: Some(goodbye.reason.code()),
        retry_after_ms: goodbye.retry_after.map(duration_to_millis),
    };
    let mut frame = Vec::with_capacity(1 + message.get_size());
    // `Writer::write_message` writes the varint length prefix, then the message.
    Writer::new(&mut frame)
        .write_message(&message)
        .expect("writing into a Vec cannot fail");
    frame
}

/// Decodes exactly one frame as written by [`encode_goodbye`]; bytes after it are an error.
///
/// An absent reason reads as [`DisconnectReason::Normal`] (code 0), unknown codes as
/// [`DisconnectReason::Unknown`]; unknown fields are skipped so newer peers can add some.
pub fn decode_goodbye(frame: &[u8]) -> Result<Goodbye, GoodbyeError> {
    let truncated = || GoodbyeError::Truncated { got: frame.len() };
    let mut bytes = frame.iter();
    let mut prefix = PrefixDecoder::default();
    let len = loop {
        let &byte = bytes.next().ok_or_else(truncated)?;
        if let Some(len) = prefix.push(byte)? {
            break frame_len(len)?;
        }
    };
    let (body, trailing) = bytes
        .as_slice()
        .split_at_checked(len)
        .ok_or_else(truncated)?;
    // Body first, so a frame gets the same verdict here as from `recv_goodbye`.
    let goodbye = decode_message(body)?;
    if !trailing.is_empty() {
        return Err(GoodbyeError::TrailingBytes {
            extra: trailing.len(),
        });
    }
    Ok(goodbye)
}

/// Sends `goodbye` on `stream` and waits until the remote has read it.
///
/// Writes the frame, closes the write side, then waits (reading and discarding at most
/// [`MAX_GOODBYE_SIZE`] bytes) until the remote closes its side, which [`recv_goodbye`] does only
/// after reading the frame. So on `Ok` the goodbye is known delivered and the caller may drop the
/// connection. A remote that resets the stream instead yields [`GoodbyeError::Io`]. This never
/// times out by itself: the caller bounds the time.
pub async fn send_goodbye<S>(mut stream: S, goodbye: Goodbye) -> Result<(), GoodbyeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&encode_goodbye(&goodbye)).await?;
    // Closing flushes and tells the remote no more is coming.
    stream.close().await?;

    let mut scratch = [0u8; 16];
    let mut discarded = 0;
    loop {
        match read_some(&mut stream, &mut scratch).await? {
            0 => return Ok(()),
            n => {
                discarded += n;
                // A remote that keeps talking would otherwise hold us here forever.
                if discarded > MAX_DRAIN {
                    return Err(GoodbyeError::UnexpectedData { max: MAX_DRAIN });
                }
            }
        }
    }
}

/// Reads exactly one goodbye frame from `stream`, then closes the stream.
///
/// The prefix is read byte by byte and a length above [`MAX_GOODBYE_SIZE`] is rejected before
/// anything else is read; the message goes into a stack buffer, so nothing is allocated. Bytes
/// after the frame are not read (the sender waits for our close, so waiting for its end would
/// deadlock). Closing is what tells [`send_goodbye`] on the other side that the frame arrived. On
/// error the stream is left to the caller to drop.
pub async fn recv_goodbye<S>(mut stream: S) -> Result<Goodbye, GoodbyeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let goodbye = read_frame(&mut stream).await?;
    stream.close().await?;
    Ok(goodbye)
}

/// Waits, without a deadline, for the first byte of a goodbye on a stream the remote opened
/// and holds: holding the goodbye stream open is how a remote asks for the connection to be
/// kept while idle. Returns the stream with the first byte of the frame, or `None` when the
/// remote ended the stream without a frame (it released its hold: not an error). Bounded by
/// the connection: one such stream per connection.
pub async fn await_goodbye<S>(mut stream: S) -> Result<(S, Option<u8>), GoodbyeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut byte = [0u8; 1];
    match read_some(&mut stream, &mut byte).await? {
        0 => Ok((stream, None)),
        _ => Ok((stream, Some(byte[0]))),
    }
}

/// Reads the rest of a goodbye frame whose first byte [`await_goodbye`] returned, then closes
/// the stream, like [`recv_goodbye`].
pub async fn recv_goodbye_after<S>(mut stream: S, first: u8) -> Result<Goodbye, GoodbyeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let goodbye = read_frame_from(&mut stream, Some(first)).await?;
    stream.close().await?;
    Ok(goodbye)
}

async fn read_frame<S>(stream: &mut S) -> Result<Goodbye, GoodbyeError>
where
    S: AsyncRead + Unpin,
{
    read_frame_from(stream, None).await
}

async fn read_frame_from<S>(stream: &mut S, first: Option<u8>) -> Result<Goodbye, GoodbyeError>
where
    S: AsyncRead + Unpin,
{
    let mut got = 0;
    let mut prefix = PrefixDecoder::default();
    let mut first = first;
    let len = loop {
        let mut byte = [0u8; 1];
        if let Some(given) = first.take() {
            byte[0] = given;
        } else if read_some(stream, &mut byte).await? == 0 {
            return Err(GoodbyeError::Truncated { got });
        }
        got += 1;
        if let Some(len) = prefix.push(byte[0])? {
            break frame_len(len)?;
        }
    };

    let mut buf = [0u8; MAX_GOODBYE_SIZE];
    let body = buf.get_mut(..len).ok_or(GoodbyeError::FrameTooLarge {
        len,
        max: MAX_GOODBYE_SIZE,
    })?;
    let mut filled = 0;
    while let Some(rest) = body.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match read_some(stream, rest).await? {
            0 => return Err(GoodbyeError::Truncated { got: got + filled }),
            n => filled += n,
        }
    }
    decode_message(body)
}

/// `read`, retrying on `Interrupted` like `read_exact` does.
async fn read_some<S>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    loop {
        match stream.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Incremental unsigned-varint decoder for the length prefix, so the slice and the stream paths
/// follow the same rules.
#[derive(Default)]
struct PrefixDecoder {
    value: u64,
    read: usize,
}

impl PrefixDecoder {
    /// Feeds the next byte; `Ok(Some(len))` once the prefix is complete.
    fn push(&mut self, byte: u8) -> Result<Option<u64>, GoodbyeError> {
        // The 10th byte may only carry bit 63; more would overflow a u64 (and this also stops
        // the decoder from ever being fed an 11th byte).
        if self.read == MAX_PREFIX_LEN - 1 && byte > 1 {
            return Err(GoodbyeError::InvalidLengthPrefix);
        }
        self.value |= u64::from(byte & 0x7f) << (7 * self.read);
        self.read += 1;
        if byte & 0x80 != 0 {
            return Ok(None);
        }
        // Multiformats varints are minimal: a final zero group after the first byte is padding.
        if byte == 0 && self.read > 1 {
            return Err(GoodbyeError::InvalidLengthPrefix);
        }
        Ok(Some(self.value))
    }
}

/// Checks an announced frame length against [`MAX_GOODBYE_SIZE`].
fn frame_len(len: u64) -> Result<usize, GoodbyeError> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_GOODBYE_SIZE {
        return Err(GoodbyeError::FrameTooLarge {
            len,
            max: MAX_GOODBYE_SIZE,
        });
    }
    Ok(len)
}

/// Decodes the protobuf message inside a frame.
fn decode_message(body: &[u8]) -> Result<Goodbye, GoodbyeError> {
    let mut reader = BytesReader::from_bytes(body);
    let message =
        proto::Goodbye::from_reader(&mut reader, body).map_err(GoodbyeError::Malformed)?;
    Ok(Goodbye {
        reason: DisconnectReason::from_code(message.reason.unwrap_or(0)),
        retry_after: message
            .retry_after_ms
            .map(|ms| Duration::from_millis(ms).min(MAX_RETRY_AFTER)),
    })
}

/// Whole milliseconds, rounded up so a hint is never shortened to "retry now".
fn duration_to_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use futures::{channel::mpsc, executor::block_on, task::noop_waker_ref};
    use proptest::prelude::*;

    use super::*;

    const REASONS: [DisconnectReason; 10] = [
        DisconnectReason::Normal,
        DisconnectReason::Timeout,
        DisconnectReason::ProtocolViolation,
        DisconnectReason::ResourceConstraint,
        DisconnectReason::Banned,
        DisconnectReason::NetworkRestructure,
        DisconnectReason::Duplicate,
        DisconnectReason::Closed,
        DisconnectReason::Unknown(8),
        DisconnectReason::Unknown(u32::MAX),
    ];

    /// One end of an in-memory duplex pipe whose write side can be closed on its own.
    struct PipeEnd {
        tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
        rx: mpsc::UnboundedReceiver<Vec<u8>>,
        pending: Vec<u8>,
    }

    fn pipe() -> (PipeEnd, PipeEnd) {
        let (a_tx, b_rx) = mpsc::unbounded();
        let (b_tx, a_rx) = mpsc::unbounded();
        let end = |tx, rx| PipeEnd {
            tx: Some(tx),
            rx,
            pending: Vec::new(),
        };
        (end(a_tx, a_rx), end(b_tx, b_rx))
    }

    impl AsyncRead for PipeEnd {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            while this.pending.is_empty() {
                match futures::ready!(this.rx.poll_next_unpin(cx)) {
                    Some(chunk) => this.pending = chunk,
                    None => return Poll::Ready(Ok(0)),
                }
            }
            let n = buf.len().min(this.pending.len());
            buf[..n].copy_from_slice(&this.pending[..n]);
            this.pending.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for PipeEnd {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let sent = match &self.tx {
                Some(tx) => tx.unbounded_send(buf.to_vec()).is_ok(),
                None => false,
            };
            Poll::Ready(if sent {
                Ok(buf.len())
            } else {
                Err(io::ErrorKind::BrokenPipe.into())
            })
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().tx = None;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut frame = vec![u8::try_from(body.len()).unwrap()];
        frame.extend_from_slice(body);
        frame
    }

    /// Feeds `bytes` to `recv_goodbye` as everything the remote ever sends.
    fn recv_from_bytes(bytes: &[u8]) -> Result<Goodbye, GoodbyeError> {
        let (mut remote, local) = pipe();
        block_on(async {
            remote.write_all(bytes).await.unwrap();
            remote.close().await.unwrap();
            recv_goodbye(local).await
        })
    }

    #[test]
    fn a_held_stream_released_without_a_frame_is_no_goodbye_and_no_error() {
        let (mut remote, local) = pipe();
        let released = block_on(async {
            remote.close().await.unwrap();
            await_goodbye(local).await
        })
        .unwrap();
        assert!(released.1.is_none());
    }

    #[test]
    fn a_goodbye_on_a_held_stream_reads_as_one_sent_at_once() {
        let goodbye =
            Goodbye::new(DisconnectReason::Banned).with_retry_after(Duration::from_secs(5));
        let (mut remote, local) = pipe();
        let received = block_on(async {
            remote.write_all(&encode_goodbye(&goodbye)).await.unwrap();
            remote.close().await.unwrap();
            let (stream, first) = await_goodbye(local).await?;
            recv_goodbye_after(stream, first.expect("a frame started")).await
        })
        .unwrap();
        assert_eq!(received, goodbye);
    }

    #[test]
    fn round_trips_every_reason_with_and_without_retry_after() {
        let retry_afters = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_millis(1)),
            Some(Duration::from_millis(1500)),
            Some(MAX_RETRY_AFTER),
        ];
        for reason in REASONS {
            for retry_after in retry_afters {
                let goodbye = Goodbye {
                    reason,
                    retry_after,
                };
                let frame = encode_goodbye(&goodbye);
                assert_eq!(decode_goodbye(&frame).unwrap(), goodbye);
                assert_eq!(recv_from_bytes(&frame).unwrap(), goodbye);
            }
        }
    }

    #[test]
    fn constructors_set_the_fields() {
        let goodbye = Goodbye::new(DisconnectReason::Banned);
        assert_eq!(goodbye.retry_after, None);
        let goodbye = goodbye.with_retry_after(Duration::from_secs(2));
        assert_eq!(goodbye.reason, DisconnectReason::Banned);
        assert_eq!(goodbye.retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn wire_format_is_stable() {
        let goodbye =
            Goodbye::new(DisconnectReason::Banned).with_retry_after(Duration::from_secs(2));
        // len 5 | field 1 varint: 4 | field 2 varint: 2000
        assert_eq!(encode_goodbye(&goodbye), [5, 0x08, 4, 0x10, 0xd0, 0x0f]);
    }

    #[test]
    fn largest_goodbye_fits_the_cap() {
        let goodbye =
            Goodbye::new(DisconnectReason::Unknown(u32::MAX)).with_retry_after(Duration::MAX);
        let frame = encode_goodbye(&goodbye);
        assert!(frame.len() - 1 <= MAX_GOODBYE_SIZE);
        assert_eq!(
            decode_goodbye(&frame).unwrap().retry_after,
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn unknown_code_decodes_to_unknown() {
        // field 1 = 999
        let frame = frame(&[0x08, 0xe7, 0x07]);
        assert_eq!(
            decode_goodbye(&frame).unwrap().reason,
            DisconnectReason::Unknown(999)
        );
    }

    #[test]
    fn absent_reason_reads_as_normal() {
        assert_eq!(
            decode_goodbye(&[0]).unwrap(),
            Goodbye::new(DisconnectReason::Normal)
        );
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // field 1 = 3, field 3 varint = 1, field 4 bytes = "hi"
        let frame = frame(&[0x08, 3, 0x18, 1, 0x22, 2, b'h', b'i']);
        assert_eq!(
            decode_goodbye(&frame).unwrap(),
            Goodbye::new(DisconnectReason::ResourceConstraint)
        );
    }

    #[test]
    fn oversized_length_prefix_is_rejected_before_allocating() {
        // 65 bytes announced, none present: the length alone must be enough to reject.
        assert!(matches!(
            decode_goodbye(&[65]),
            Err(GoodbyeError::FrameTooLarge { len: 65, max: 64 })
        ));
        // u64::MAX announced: allocating it would abort the test.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            decode_goodbye(&huge),
            Err(GoodbyeError::FrameTooLarge { max: 64, .. })
        ));
    }

    #[test]
    fn invalid_length_prefixes_are_rejected() {
        let overflowing = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        let too_long = [0x80; 11];
        let not_minimal = [0x80, 0x00];
        for prefix in [&overflowing[..], &too_long, &not_minimal] {
            assert!(matches!(
                decode_goodbye(prefix),
                Err(GoodbyeError::InvalidLengthPrefix)
            ));
        }
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let full = encode_goodbye(&Goodbye::new(DisconnectReason::Timeout));
        let cases: [&[u8]; 3] = [&[], &[0x85], &full[..full.len() - 1]];
        for bytes in cases {
            assert!(matches!(
                decode_goodbye(bytes),
                Err(GoodbyeError::Truncated { got }) if got == bytes.len()
            ));
        }
    }

    #[test]
    fn garbage_protobuf_is_malformed() {
        let bodies: [&[u8]; 4] = [
            &[0x0f],             // wire type 7
            &[0x0b],             // deprecated group
            &[0x08],             // field without its value
            &[0x22, 0x05, b'x'], // bytes field longer than the frame
        ];
        for body in bodies {
            assert!(matches!(
                decode_goodbye(&frame(body)),
                Err(GoodbyeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut frame = encode_goodbye(&Goodbye::new(DisconnectReason::Duplicate));
        frame.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            decode_goodbye(&frame),
            Err(GoodbyeError::TrailingBytes { extra: 3 })
        ));
    }

    #[test]
    fn retry_after_is_clamped_on_decode() {
        let far = Goodbye::new(DisconnectReason::ResourceConstraint)
            .with_retry_after(MAX_RETRY_AFTER * 10);
        let decoded = decode_goodbye(&encode_goodbye(&far)).unwrap();
        assert_eq!(decoded.retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_milliseconds() {
        let goodbye =
            Goodbye::new(DisconnectReason::Normal).with_retry_after(Duration::from_nanos(1));
        let decoded = decode_goodbye(&encode_goodbye(&goodbye)).unwrap();
        assert_eq!(decoded.retry_after, Some(Duration::from_millis(1)));
    }

    #[test]
    fn errors_say_what_happened() {
        let error = GoodbyeError::FrameTooLarge { len: 900, max: 64 };
        assert_eq!(
            error.to_string(),
            "goodbye frame of 900 bytes exceeds the 64 byte cap"
        );
        fn send_sync_static<T: Send + Sync + 'static>() {}
        send_sync_static::<GoodbyeError>();
    }

    #[test]
    fn send_and_recv_over_a_pipe() {
        let (a, b) = pipe();
        let goodbye = Goodbye::new(DisconnectReason::NetworkRestructure)
            .with_retry_after(Duration::from_secs(30));
        let (sent, received) = block_on(future::join(send_goodbye(a, goodbye), recv_goodbye(b)));
        sent.unwrap();
        assert_eq!(received.unwrap(), goodbye);
    }

    #[test]
    fn send_waits_until_the_remote_closes() {
        let (a, mut b) = pipe();
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut send = send_goodbye(a, Goodbye::new(DisconnectReason::Normal)).boxed();
        assert!(send.poll_unpin(&mut cx).is_pending());

        // The remote has the frame but has not closed yet: still not delivered as far as we know.
        let mut frame = [0u8; 3];
        block_on(b.read_exact(&mut frame)).unwrap();
        assert_eq!(
            decode_goodbye(&frame).unwrap().reason,
            DisconnectReason::Normal
        );
        assert!(send.poll_unpin(&mut cx).is_pending());

        block_on(b.close()).unwrap();
        assert!(matches!(send.poll_unpin(&mut cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn send_gives_up_on_a_remote_that_keeps_talking() {
        let (a, mut b) = pipe();
        block_on(b.write_all(&[0; 1000])).unwrap();
        let result = block_on(send_goodbye(a, Goodbye::new(DisconnectReason::Normal)));
        assert!(matches!(result, Err(GoodbyeError::UnexpectedData { .. })));
        drop(b);
    }

    #[test]
    fn send_to_a_vanished_remote_is_an_io_error() {
        let (a, b) = pipe();
        drop(b);
        let result = block_on(send_goodbye(a, Goodbye::new(DisconnectReason::Normal)));
        assert!(matches!(result, Err(GoodbyeError::Io(_))));
    }

    #[test]
    fn recv_rejects_an_oversized_frame_without_reading_it() {
        let (mut remote, local) = pipe();
        // 960 bytes announced; the remote stays open and sends nothing more, so a receiver that
        // tried to read the body would be pending instead of ready.
        block_on(remote.write_all(&[0xc0, 0x07])).unwrap();
        let result = recv_goodbye(local)
            .now_or_never()
            .expect("rejected without waiting");
        assert!(matches!(
            result,
            Err(GoodbyeError::FrameTooLarge { len: 960, max: 64 })
        ));
    }

    #[test]
    fn recv_reports_a_frame_cut_short() {
        assert!(matches!(
            recv_from_bytes(&[5, 0x08]),
            Err(GoodbyeError::Truncated { got: 2 })
        ));
        assert!(matches!(
            recv_from_bytes(&[]),
            Err(GoodbyeError::Truncated { got: 0 })
        ));
    }

    #[test]
    fn recv_closes_the_stream() {
        let (mut remote, local) = pipe();
        let frame = encode_goodbye(&Goodbye::new(DisconnectReason::Banned));
        block_on(remote.write_all(&frame)).unwrap();
        block_on(recv_goodbye(local)).unwrap();
        let mut rest = Vec::new();
        assert_eq!(block_on(remote.read_to_end(&mut rest)).unwrap(), 0);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_goodbye(&bytes);
        }

        #[test]
        fn decode_never_panics_on_well_framed_garbage(
            body in proptest::collection::vec(any::<u8>(), 0..=MAX_GOODBYE_SIZE),
        ) {
            let _ = decode_goodbye(&frame(&body));
        }

        #[test]
        fn recv_follows_the_same_rules_as_decode(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            match (decode_goodbye(&bytes), recv_from_bytes(&bytes)) {
                (Ok(sync), Ok(stream)) => prop_assert_eq!(sync, stream),
                // The stream path never reads past the frame.
                (Err(GoodbyeError::TrailingBytes { .. }), Ok(_)) => {}
                (sync, stream) => prop_assert_eq!(format!("{sync:?}"), format!("{stream:?}")),
            }
        }

        #[test]
        fn any_goodbye_round_trips(code: u32, ms in proptest::option::of(0..=3_600_000u64)) {
            let goodbye = Goodbye {
                reason: DisconnectReason::from_code(code),
                retry_after: ms.map(Duration::from_millis),
            };
            prop_assert_eq!(decode_goodbye(&encode_goodbye(&goodbye)).unwrap(), goodbye);
        }
    }
}
