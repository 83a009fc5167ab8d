//! Counting the bytes each peer's connections move, for the bandwidth part of the health score.
//!
//! Opt in by wrapping the upgraded transport (the one whose output is `(PeerId, muxer)`) and
//! handing the meter to the behaviour:
//!
//! ```ignore
//! let meter = BandwidthMeter::default();
//! let transport = counting_transport(upgraded_transport, meter.clone());
//! let manager = Behaviour::new(local_peer_id, config).with_bandwidth_meter(meter);
//! ```
//!
//! Bytes are counted per peer (with one connection per peer, that is per connection), at the
//! muxer, so they are the application's bytes: no TCP, noise or yamux framing overhead.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{ready, Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    Transport,
};
use libp2p_identity::PeerId;

/// Byte counts per peer, shared between [`counting_transport`] and the behaviour.
#[derive(Debug, Clone, Default)]
pub struct BandwidthMeter {
    peers: Arc<Mutex<HashMap<PeerId, Arc<PeerBytes>>>>,
}

#[derive(Debug, Default)]
struct PeerBytes {
    inbound: AtomicU64,
    outbound: AtomicU64,
    /// Live connections counting into this entry; the entry goes with the last one.
    connections: AtomicUsize,
}

impl BandwidthMeter {
    /// Bytes received from and sent to `peer` over its live connections so far.
    pub fn bytes(&self, peer: &PeerId) -> Option<(u64, u64)> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.get(peer).map(|bytes| {
            (
                bytes.inbound.load(Ordering::Relaxed),
                bytes.outbound.load(Ordering::Relaxed),
            )
        })
    }

    /// Peers with live counted connections.
    pub fn peers(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn attach(&self, peer: PeerId) -> Counter {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = peers.entry(peer).or_default().clone();
        bytes.connections.fetch_add(1, Ordering::Relaxed);
        Counter {
            peer,
            bytes,
            meter: self.clone(),
        }
    }

    fn detach(&self, peer: &PeerId) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bytes) = peers.get(peer) {
            if bytes.connections.fetch_sub(1, Ordering::Relaxed) <= 1 {
                peers.remove(peer);
            }
        }
    }
}

/// One connection's handle on its peer's counts; detaches when the connection is gone.
#[derive(Debug)]
struct Counter {
    peer: PeerId,
    bytes: Arc<PeerBytes>,
    meter: BandwidthMeter,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.meter.detach(&self.peer);
    }
}

/// Wraps `inner` (an upgraded transport, whose output is `(PeerId, muxer)`) so that every
/// connection it makes counts its bytes into `meter`.
///
/// This is libp2p's own [`Transport::map`] over the connection's muxer: listening, dialing
/// and events are the inner transport's.
pub fn counting_transport<T, M>(
    inner: T,
    meter: BandwidthMeter,
) -> impl Transport<
    Output = (PeerId, CountingMuxer<M>),
    Error = T::Error,
    Dial: Send + 'static,
    ListenerUpgrade: Send + 'static,
>
where
    T: Transport<Output = (PeerId, M)>,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    M: StreamMuxer + Unpin + Send + 'static,
    M::Substream: Unpin,
{
    inner.map(move |(peer, muxer), _| {
        let counter = Arc::new(meter.attach(peer));
        (
            peer,
            CountingMuxer {
                inner: muxer,
                counter,
            },
        )
    })
}

/// A muxer whose streams count their bytes.
#[derive(Debug)]
pub struct CountingMuxer<M> {
    inner: M,
    counter: Arc<Counter>,
}

impl<M> StreamMuxer for CountingMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = CountingStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let stream = ready!(Pin::new(&mut self.inner).poll_inbound(cx))?;
        Poll::Ready(Ok(CountingStream {
            inner: stream,
            counter: self.counter.clone(),
        }))
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let stream = ready!(Pin::new(&mut self.inner).poll_outbound(cx))?;
        Poll::Ready(Ok(CountingStream {
            inner: stream,
            counter: self.counter.clone(),
        }))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// A stream that counts the bytes read from and written to it.
#[derive(Debug)]
pub struct CountingStream<S> {
    inner: S,
    counter: Arc<Counter>,
}

fn count(total: &AtomicU64, bytes: usize) {
    total.fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        count(&self.counter.bytes.inbound, read);
        Poll::Ready(Ok(read))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        count(&self.counter.bytes.outbound, written);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Turns the meter's running totals into rates, one peer at a time.
#[derive(Debug)]
pub(crate) struct BandwidthSampler {
    meter: BandwidthMeter,
    last: HashMap<PeerId, (web_time::Instant, u64)>,
}

/// Shortest span a rate is computed over, so a burst does not read as a huge rate.
const MIN_SAMPLE_SPAN: std::time::Duration = std::time::Duration::from_secs(1);

impl BandwidthSampler {
    pub(crate) fn new(meter: BandwidthMeter) -> Self {
        Self {
            meter,
            last: HashMap::new(),
        }
    }

    /// Bytes per second moved with `peer` since the previous sample, if one is due.
    pub(crate) fn sample(&mut self, peer: PeerId, now: web_time::Instant) -> Option<f64> {
        let (inbound, outbound) = self.meter.bytes(&peer)?;
        let total = inbound.saturating_add(outbound);
        let Some((then, before)) = self.last.get(&peer).copied() else {
            self.last.insert(peer, (now, total));
            return None;
        };
        let span = now.saturating_duration_since(then);
        if span < MIN_SAMPLE_SPAN {
            return None;
        }
        self.last.insert(peer, (now, total));
        Some(total.saturating_sub(before) as f64 / span.as_secs_f64())
    }

    /// `peer` has no connection left.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.last.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn streams_count_the_bytes_of_their_peer_until_the_last_one_goes() {
        futures::executor::block_on(async {
            let meter = BandwidthMeter::default();
            let peer = PeerId::random();
            let counter = Arc::new(meter.attach(peer));
            let mut stream = CountingStream {
                inner: futures::io::Cursor::new(vec![7u8; 10]),
                counter: counter.clone(),
            };
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.expect("read");
            stream.write_all(&[1, 2, 3]).await.expect("write");
            assert_eq!(meter.bytes(&peer), Some((4, 3)));
            drop(stream);
            assert_eq!(meter.peers(), 1, "the connection (muxer) still holds it");
            drop(counter);
            assert_eq!(meter.peers(), 0);
            assert_eq!(meter.bytes(&peer), None);
        });
    }

    #[test]
    fn the_sampler_turns_totals_into_rates_over_at_least_a_second() {
        let meter = BandwidthMeter::default();
        let peer = PeerId::random();
        let counter = meter.attach(peer);
        let mut sampler = BandwidthSampler::new(meter.clone());
        let t0 = web_time::Instant::now();
        assert_eq!(
            sampler.sample(peer, t0),
            None,
            "the first sample only starts the clock"
        );
        counter.bytes.inbound.fetch_add(3_000, Ordering::Relaxed);
        assert_eq!(sampler.sample(peer, t0 + Duration::from_millis(500)), None);
        counter.bytes.outbound.fetch_add(1_000, Ordering::Relaxed);
        assert_eq!(
            sampler.sample(peer, t0 + Duration::from_secs(2)),
            Some(2_000.0)
        );
        sampler.forget(&peer);
        assert_eq!(sampler.sample(peer, t0 + Duration::from_secs(3)), None);
    }
}
