//! A fault-injecting transport wrapper.
//!
//! [`fault_transport`] wraps a transport whose connections are plain byte streams (TCP, below
//! noise and yamux) and lets a test break those streams in-process, while they run, through a
//! [`FaultControl`]: a silent partition ([`Fault::Blackhole`]), added latency
//! ([`Fault::Delay`]) or an abrupt close ([`Fault::Cut`]). No root, no firewall rules, and a
//! fault wakes every stream it touches, so tests can wait on events instead of sleeping.
//!
//! ```no_run
//! use libp2p::{core::upgrade::Version, identity::Keypair, noise, tcp, yamux, Transport};
//! use libp2p_connection_manager::testing::{fault_transport, Fault};
//!
//! let key = Keypair::generate_ed25519();
//! let (tcp, faults) = fault_transport(tcp::tokio::Transport::new(tcp::Config::default()));
//! let transport = tcp
//!     .upgrade(Version::V1)
//!     .authenticate(noise::Config::new(&key).unwrap())
//!     .multiplex(yamux::Config::default())
//!     .boxed();
//! // ... build a swarm on `transport` and connect ...
//! faults.set(Fault::Blackhole); // every connection of this transport goes silent
//! faults.heal(); // and comes back, nothing lost
//! ```

use std::{
    collections::{HashMap, VecDeque},
    fmt, io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{ready, AsyncRead, AsyncWrite, Future};
use futures_timer::Delay;
use libp2p_core::{ConnectedPoint, Transport};
use web_time::Instant;

use crate::core::ip_of;

/// The most bytes a blackholed stream accepts from its writer before writes return `Pending`.
pub const MAX_HELD_WRITES: usize = 256 * 1024;

/// The most bytes a delayed stream reads ahead of its reader.
pub const MAX_HELD_READS: usize = 256 * 1024;

/// The largest chunk read from the socket at once while delaying.
const READ_CHUNK: usize = 16 * 1024;

/// What happens to the bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Bytes flow normally.
    #[default]
    None,
    /// A silent partition: bytes stop flowing in both directions but the socket stays open.
    ///
    /// Reads return `Pending` (what arrives waits in the socket). Writes are accepted into a
    /// buffer of [`MAX_HELD_WRITES`] bytes per stream, then return `Pending`, and flushes
    /// succeed, like TCP queueing into its send buffer across a partition. Once healed, the
    /// held bytes are delivered in order: nothing is lost or corrupted, so noise and yamux
    /// sessions survive. A stream dropped (closed by its connection) while blackholed keeps its
    /// socket open, silent, until the fault lifts; then its held bytes are sent and the socket
    /// closed. Connecting is not blocked: a new connection is blackholed once established,
    /// so its handshake stalls.
    Blackhole,
    /// Every chunk read is handed to the reader this much after it arrived; writes are
    /// unaffected and data stays in order. Set on both ends, it adds twice this to a round trip.
    Delay(Duration),
    /// An abrupt close: the next read or write fails with `ConnectionReset` and the socket is
    /// closed. It sticks to the streams it hit: healing does not revive them, only new
    /// connections made after the heal are healthy.
    Cut,
}

/// Wraps `inner` so that [`Fault`]s can be injected into its byte streams; the returned
/// control sets the faults of its connections.
///
/// Wrap the raw transport, below the security and multiplexing upgrades (e.g.
/// `libp2p::tcp::tokio::Transport`). Both dialed and accepted connections are wrapped, keyed by
/// the remote IP (of the dialed address, or of the send-back address of an accepted one);
/// listening, dialing and address events are the inner transport's. This is libp2p's own
/// [`Transport::map`] over the connection's stream.
pub fn fault_transport<T>(
    inner: T,
) -> (
    impl Transport<
        Output = FaultyStream<T::Output>,
        Error = T::Error,
        Dial: Send + 'static,
        ListenerUpgrade: Send + 'static,
    >,
    FaultControl,
)
where
    T: Transport,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let control = FaultControl::default();
    let shared = control.shared.clone();
    let transport = inner.map(move |stream, endpoint: ConnectedPoint| {
        FaultyStream::new(stream, shared, ip_of(endpoint.get_remote_address()))
    });
    (transport, control)
}

/// A cloneable handle on the faults of a [`fault_transport`]'s connections.
///
/// A fault set for a remote IP ([`set_for`](Self::set_for)) takes precedence over the one set
/// for all connections ([`set`](Self::set)). Every change wakes the streams it may affect.
#[derive(Clone, Default)]
pub struct FaultControl {
    shared: Arc<Mutex<Shared>>,
}

impl FaultControl {
    /// Applies `fault` to every connection, current and future, except those to remote IPs
    /// with a fault of their own.
    pub fn set(&self, fault: Fault) {
        self.change(|shared| shared.all = fault);
    }

    /// Applies `fault` to every connection, current and future, with the remote `ip`: the IP
    /// of the dialed address for outbound connections, of the send-back address for inbound
    /// ones. Bind test nodes to distinct loopback addresses (`127.0.0.2`, ...) to partition
    /// one peer from another. `Fault::None` here exempts `ip` from the fault set with
    /// [`set`](Self::set).
    pub fn set_for(&self, ip: IpAddr, fault: Fault) {
        self.change(|shared| {
            shared.per_ip.insert(ip, fault);
        });
    }

    /// Lifts every fault: back to [`Fault::None`] for all connections. Blackholed bytes are
    /// delivered; cut streams stay dead.
    pub fn heal(&self) {
        self.change(|shared| {
            shared.all = Fault::None;
            shared.per_ip.clear();
        });
    }

    /// The fault that applies to a new connection with the remote `ip`.
    pub fn fault_for(&self, ip: Option<IpAddr>) -> Fault {
        lock(&self.shared).fault_for(ip)
    }

    /// The wrapped streams alive now (dropped ones kept open by a blackhole not included).
    pub fn connections(&self) -> usize {
        lock(&self.shared).streams.len()
    }

    /// Wraps any byte stream with the remote `ip` in the faults of this control, as the
    /// transport does with its connections.
    pub fn wrap<S>(&self, stream: S, ip: Option<IpAddr>) -> FaultyStream<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        FaultyStream::new(stream, self.shared.clone(), ip)
    }

    fn change(&self, change: impl FnOnce(&mut Shared)) {
        let (wakers, released) = {
            let mut shared = lock(&self.shared);
            change(&mut shared);
            shared.apply()
        };
        // Outside the lock: a woken task or a flushed socket may come back to it.
        for (parked, flush) in released {
            (parked.release)(flush);
        }
        for waker in wakers {
            waker.wake();
        }
    }
}

impl fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = lock(&self.shared);
        f.debug_struct("FaultControl")
            .field("all", &shared.all)
            .field("per_ip", &shared.per_ip)
            .field("connections", &shared.streams.len())
            .field("parked", &shared.parked.len())
            .finish()
    }
}

/// The state shared by a control, its transport and their streams.
#[derive(Default)]
struct Shared {
    all: Fault,
    per_ip: HashMap<IpAddr, Fault>,
    streams: HashMap<u64, Entry>,
    next_id: u64,
    /// Sockets of streams dropped while blackholed, kept open until the fault lifts.
    parked: Vec<Parked>,
}

/// A live stream as the shared state sees it.
struct Entry {
    remote: Option<IpAddr>,
    /// Hit by `Cut`: dead for good.
    cut: bool,
    read: Option<Waker>,
    write: Option<Waker>,
}

struct Parked {
    remote: Option<IpAddr>,
    /// Sends the held bytes and closes the socket (`true`), or just drops it (`false`).
    release: Box<dyn FnOnce(bool) + Send>,
}

impl Shared {
    fn fault_for(&self, ip: Option<IpAddr>) -> Fault {
        ip.and_then(|ip| self.per_ip.get(&ip))
            .copied()
            .unwrap_or(self.all)
    }

    fn fault_of(&self, entry: &Entry) -> Fault {
        if entry.cut {
            Fault::Cut
        } else {
            self.fault_for(entry.remote)
        }
    }

    /// After a change of faults: marks the streams now cut (so a quick heal cannot save
    /// them), takes every waker and the parked sockets no longer blackholed (with whether to
    /// flush them).
    #[allow(clippy::type_complexity)]
    fn apply(&mut self) -> (Vec<Waker>, Vec<(Parked, bool)>) {
        let mut wakers = Vec::new();
        let faults: Vec<(u64, Fault)> = self
            .streams
            .iter()
            .map(|(id, entry)| (*id, self.fault_of(entry)))
            .collect();
        for (id, fault) in faults {
            if let Some(entry) = self.streams.get_mut(&id) {
                entry.cut |= fault == Fault::Cut;
                wakers.extend(entry.read.take());
                wakers.extend(entry.write.take());
            }
        }
        let mut released = Vec::new();
        for parked in std::mem::take(&mut self.parked) {
            match self.fault_for(parked.remote) {
                Fault::Blackhole => self.parked.push(parked),
                Fault::Cut => released.push((parked, false)),
                Fault::None | Fault::Delay(_) => released.push((parked, true)),
            }
        }
        (wakers, released)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The state stays consistent across a panic elsewhere (each change is one assignment).
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection cut by FaultControl",
    )
}

/// A byte stream of a [`fault_transport`], subject to the faults of its [`FaultControl`].
pub struct FaultyStream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` once cut (the socket is closed at once) or handed over to be parked.
    inner: Option<S>,
    id: u64,
    shared: Arc<Mutex<Shared>>,
    /// Bytes accepted while blackholed, sent before anything else once the fault lifts.
    held_writes: Vec<u8>,
    /// Bytes read from the socket but not yet handed to the reader, each with when it is due.
    held_reads: VecDeque<Held>,
    held_read_bytes: usize,
    /// The timer for the first held read, with its deadline.
    timer: Option<(Instant, Delay)>,
    /// The socket reported its end (or an error): do not read it again.
    inner_done: bool,
}

struct Held {
    due: Instant,
    incoming: Incoming,
}

enum Incoming {
    Data(Vec<u8>),
    Eof,
    Error(io::Error),
}

enum Side {
    Read,
    Write,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> FaultyStream<S> {
    fn new(inner: S, shared: Arc<Mutex<Shared>>, remote: Option<IpAddr>) -> Self {
        let id = {
            let mut state = lock(&shared);
            let id = state.next_id;
            state.next_id += 1;
            state.streams.insert(
                id,
                Entry {
                    remote,
                    cut: false,
                    read: None,
                    write: None,
                },
            );
            id
        };
        Self {
            inner: Some(inner),
            id,
            shared,
            held_writes: Vec::new(),
            held_reads: VecDeque::new(),
            held_read_bytes: 0,
            timer: None,
            inner_done: false,
        }
    }

    /// The fault for this stream now; registers the waker of `side` so that a change of fault
    /// reaches it. Closes the socket when cut.
    fn enter(&mut self, cx: &Context<'_>, side: Side) -> Fault {
        let fault = {
            let mut shared = lock(&self.shared);
            let fault = match shared.streams.get(&self.id) {
                Some(entry) => shared.fault_of(entry),
                None => Fault::Cut,
            };
            if let Some(entry) = shared.streams.get_mut(&self.id) {
                entry.cut |= fault == Fault::Cut;
                let slot = match side {
                    Side::Read => &mut entry.read,
                    Side::Write => &mut entry.write,
                };
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            }
            fault
        };
        if fault == Fault::Cut || self.inner.is_none() {
            self.inner = None;
            self.held_reads.clear();
            self.held_read_bytes = 0;
            self.held_writes = Vec::new();
            self.timer = None;
            return Fault::Cut;
        }
        fault
    }

    /// Reads from the socket what it has now (up to [`MAX_HELD_READS`]), each chunk due `delay`
    /// from now.
    fn read_ahead(&mut self, cx: &mut Context<'_>, delay: Duration) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        while !self.inner_done && self.held_read_bytes < MAX_HELD_READS {
            let mut chunk = vec![0; READ_CHUNK.min(MAX_HELD_READS - self.held_read_bytes)];
            let incoming = match Pin::new(&mut *inner).poll_read(cx, &mut chunk) {
                Poll::Pending => return,
                Poll::Ready(Ok(0)) => Incoming::Eof,
                Poll::Ready(Ok(n)) => {
                    chunk.truncate(n);
                    self.held_read_bytes += n;
                    Incoming::Data(chunk)
                }
                Poll::Ready(Err(error)) => Incoming::Error(error),
            };
            self.inner_done = !matches!(incoming, Incoming::Data(_));
            self.held_reads.push_back(Held {
                due: Instant::now() + delay,
                incoming,
            });
        }
    }

    /// Hands the first held chunk (or what fits of it) to the reader.
    fn pop_held(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let held = self.held_reads.pop_front()?;
        self.timer = None;
        Some(match held.incoming {
            Incoming::Data(mut data) => {
                let n = buf.len().min(data.len());
                buf[..n].copy_from_slice(&data[..n]);
                self.held_read_bytes -= n;
                if n < data.len() {
                    data.drain(..n);
                    self.held_reads.push_front(Held {
                        due: held.due,
                        incoming: Incoming::Data(data),
                    });
                }
                Ok(n)
            }
            Incoming::Eof => Ok(0),
            Incoming::Error(error) => Err(error),
        })
    }

    fn poll_read_delayed(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        delay: Duration,
    ) -> Poll<io::Result<usize>> {
        // Reading ahead stamps each chunk with its arrival; it also registers the waker for
        // the next one.
        self.read_ahead(cx, delay);
        loop {
            let Some(due) = self.held_reads.front().map(|held| held.due) else {
                return if self.inner_done {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            let now = Instant::now();
            if due <= now {
                return match self.pop_held(buf) {
                    Some(result) => Poll::Ready(result),
                    None => Poll::Pending,
                };
            }
            let timer = match &mut self.timer {
                Some((deadline, timer)) if *deadline == due => timer,
                timer => &mut timer.insert((due, Delay::new(due - now))).1,
            };
            ready!(Pin::new(timer).poll(cx));
            self.timer = None;
        }
    }

    /// Sends the bytes held during a blackhole, in order, before anything new.
    fn drain_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(reset()));
        };
        while !self.held_writes.is_empty() {
            match ready!(Pin::new(&mut *inner).poll_write(cx, &self.held_writes))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => {
                    self.held_writes.drain(..n);
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Held writes must not wait for the writer to come back: a handshake that wrote its
    /// message before the blackhole now waits for the answer, only reading. So the reader
    /// sends them too, without waiting for the socket to take them.
    fn drain_writes_from_reader(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.held_writes.is_empty() {
            return Ok(());
        }
        if self.drain_writes(cx)?.is_ready() {
            // The socket keeps one waker per direction and ours replaced the writer's: tell
            // the writer the way is clear.
            let writer = lock(&self.shared)
                .streams
                .get_mut(&self.id)
                .and_then(|entry| entry.write.take());
            if let Some(writer) = writer {
                writer.wake();
            }
        }
        // Pending: woken when the socket can take more; reading goes on meanwhile.
        Ok(())
    }

    fn inner(&mut self) -> io::Result<Pin<&mut S>> {
        self.inner.as_mut().map(Pin::new).ok_or_else(reset)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for FaultyStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let fault = this.enter(cx, Side::Read);
        if matches!(fault, Fault::None | Fault::Delay(_)) {
            this.drain_writes_from_reader(cx)?;
        }
        match fault {
            Fault::Cut => Poll::Ready(Err(reset())),
            // The waker is registered: the heal wakes it. The socket is not read meanwhile.
            Fault::Blackhole => Poll::Pending,
            Fault::Delay(delay) => this.poll_read_delayed(cx, buf, delay),
            // What was held under an earlier fault comes first, at once.
            Fault::None => match this.pop_held(buf) {
                Some(result) => Poll::Ready(result),
                None => this.inner()?.poll_read(cx, buf),
            },
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for FaultyStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.enter(cx, Side::Write) {
            Fault::Cut => Poll::Ready(Err(reset())),
            Fault::Blackhole => {
                let n = buf.len().min(MAX_HELD_WRITES - this.held_writes.len());
                if n == 0 && !buf.is_empty() {
                    // Full: backpressure until the heal wakes us.
                    return Poll::Pending;
                }
                this.held_writes.extend_from_slice(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            Fault::None | Fault::Delay(_) => {
                ready!(this.drain_writes(cx))?;
                this.inner()?.poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.enter(cx, Side::Write) {
            Fault::Cut => Poll::Ready(Err(reset())),
            // Like TCP: the bytes are in the send buffer, which is all a flush promises.
            Fault::Blackhole => Poll::Ready(Ok(())),
            Fault::None | Fault::Delay(_) => {
                ready!(this.drain_writes(cx))?;
                this.inner()?.poll_flush(cx)
            }
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.enter(cx, Side::Write) {
            Fault::Cut => Poll::Ready(Err(reset())),
            // Like TCP: the close is queued behind the held bytes; the socket is parked on drop
            // and closed after them once the fault lifts.
            Fault::Blackhole => Poll::Ready(Ok(())),
            Fault::None | Fault::Delay(_) => {
                ready!(this.drain_writes(cx))?;
                this.inner()?.poll_close(cx)
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for FaultyStream<S> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        let Some(entry) = shared.streams.remove(&self.id) else {
            return;
        };
        // A partition does not close sockets: the remote must not learn of the drop before
        // the heal.
        if shared.fault_of(&entry) == Fault::Blackhole {
            if let Some(inner) = self.inner.take() {
                let held = std::mem::take(&mut self.held_writes);
                shared.parked.push(Parked {
                    remote: entry.remote,
                    release: Box::new(move |flush| {
                        if flush {
                            send_and_close(inner, held);
                        }
                    }),
                });
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> fmt::Debug for FaultyStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStream")
            .field("id", &self.id)
            .field("cut", &self.inner.is_none())
            .field("held_writes", &self.held_writes.len())
            .field("held_reads", &self.held_read_bytes)
            .finish()
    }
}

/// Best effort, without a task to come back to: writes what the socket takes now, closes it
/// and drops it.
fn send_and_close<S: AsyncWrite + Unpin>(mut stream: S, held: Vec<u8>) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut sent = 0;
    while sent < held.len() {
        match Pin::new(&mut stream).poll_write(&mut cx, &held[sent..]) {
            Poll::Ready(Ok(n)) if n > 0 => sent += n,
            _ => break,
        }
    }
    let _ = Pin::new(&mut stream).poll_flush(&mut cx);
    let _ = Pin::new(&mut stream).poll_close(&mut cx);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
    use libp2p::tcp::tokio::TcpStream;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    /// A waker that records whether it was woken.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl futures::task::ArcWake for Woken {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Woken {
        fn was_woken(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Polls `future` once with a recording waker.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> (Poll<F::Output>, Arc<Woken>) {
        let woken = Arc::new(Woken::default());
        let waker = futures::task::waker(woken.clone());
        let poll = Pin::new(future).poll(&mut Context::from_waker(&waker));
        (poll, woken)
    }

    /// Two ends of a loopback TCP connection; the first wrapped in `control`'s faults.
    async fn pair(control: &FaultControl) -> (FaultyStream<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let ours = control.wrap(TcpStream(connected.unwrap()), Some(addr.ip()));
        (ours, TcpStream(accepted.unwrap().0))
    }

    async fn read_exactly(stream: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        buf
    }

    #[tokio::test]
    async fn blackhole_holds_both_directions_then_delivers_in_order() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        ours.write_all(b"before ").await.unwrap();
        assert_eq!(read_exactly(&mut theirs, 7).await, b"before ");

        control.set(Fault::Blackhole);
        ours.write_all(b"during").await.unwrap();
        ours.flush().await.unwrap();
        theirs.write_all(b"incoming").await.unwrap();
        // Nothing crosses: our read stays pending, and so does theirs.
        let mut buf = [0; 8];
        assert!(ours.read(&mut buf).now_or_never().is_none());
        assert!(
            tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut buf))
                .await
                .is_err()
        );

        // A reader parked on the blackhole is woken by the heal.
        let mut buf = [0; 8];
        let mut read = ours.read_exact(&mut buf);
        let (poll, woken) = poll_once(&mut read);
        assert!(poll.is_pending());
        control.heal();
        assert!(woken.was_woken());
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("read after heal")
            .unwrap();
        assert_eq!(&buf, b"incoming");
        // The held write goes out first, before anything written after the heal.
        ours.write_all(b" after").await.unwrap();
        assert_eq!(read_exactly(&mut theirs, 12).await, b"during after");
    }

    #[tokio::test]
    async fn held_writes_go_out_when_only_the_reader_comes_back() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        control.set(Fault::Blackhole);
        // A handshake: send a message, then only wait for the answer.
        ours.write_all(b"hello").await.unwrap();
        ours.flush().await.unwrap();
        let mut answer = [0; 3];
        let mut read = ours.read_exact(&mut answer);
        let (poll, _) = poll_once(&mut read);
        assert!(poll.is_pending());
        control.heal();
        let remote = async {
            assert_eq!(read_exactly(&mut theirs, 5).await, b"hello");
            theirs.write_all(b"hi!").await.unwrap();
        };
        let (read, ()) = tokio::join!(tokio::time::timeout(DEADLINE, read), remote);
        read.expect("answer after heal").unwrap();
        assert_eq!(&answer, b"hi!");
    }

    #[tokio::test]
    async fn blackhole_write_buffer_is_bounded() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        control.set(Fault::Blackhole);
        let data: Vec<u8> = (0..MAX_HELD_WRITES + 1000).map(|i| i as u8).collect();
        let mut written = 0;
        while let Some(n) = ours.write(&data[written..]).now_or_never() {
            written += n.unwrap();
        }
        assert_eq!(written, MAX_HELD_WRITES);

        // A writer parked on the full buffer is woken by the heal.
        let mut write = ours.write_all(&data[written..]);
        let (poll, woken) = poll_once(&mut write);
        assert!(poll.is_pending());
        control.heal();
        assert!(woken.was_woken());
        let (received, written) = tokio::join!(
            read_exactly(&mut theirs, MAX_HELD_WRITES + 1000),
            tokio::time::timeout(DEADLINE, write)
        );
        written.expect("write after heal").unwrap();
        assert!(received == data, "bytes reordered or lost");
    }

    #[tokio::test]
    async fn dropped_while_blackholed_stays_open_until_heal() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        control.set(Fault::Blackhole);
        ours.write_all(b"last words").await.unwrap();
        ours.close().await.unwrap();
        drop(ours);
        assert_eq!(control.connections(), 0);
        let mut buf = [0; 16];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), theirs.read(&mut buf))
                .await
                .is_err(),
            "the remote must not see the close during the partition"
        );
        control.heal();
        assert_eq!(read_exactly(&mut theirs, 10).await, b"last words");
        let eof = tokio::time::timeout(DEADLINE, theirs.read(&mut buf)).await;
        assert!(matches!(eof, Ok(Ok(0))), "closed after the heal: {eof:?}");
    }

    #[tokio::test]
    async fn cut_errors_and_stays_dead() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        let mut buf = [0; 4];
        let mut read = ours.read(&mut buf);
        let (poll, woken) = poll_once(&mut read);
        assert!(poll.is_pending());
        assert_eq!(control.connections(), 1);
        control.set(Fault::Cut);
        assert!(woken.was_woken());
        control.heal();
        assert_eq!(
            read.await.unwrap_err().kind(),
            io::ErrorKind::ConnectionReset,
            "a stream cut stays cut, though healed since"
        );
        let err = ours.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        // The socket is closed: the remote sees its end.
        let mut buf = [0; 4];
        let eof = tokio::time::timeout(DEADLINE, theirs.read(&mut buf)).await;
        assert!(matches!(eof, Ok(Ok(0)) | Ok(Err(_))), "{eof:?}");
        drop(ours);
        assert_eq!(control.connections(), 0);
    }

    #[tokio::test]
    async fn delay_delays_reads_in_order_not_writes() {
        let delay = Duration::from_millis(200);
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        control.set(Fault::Delay(delay));

        let start = std::time::Instant::now();
        theirs.write_all(b"one").await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0; 8];
            while got.len() < 6 {
                let n = ours.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if got.len() == 3 {
                    assert!(start.elapsed() >= delay, "early: {:?}", start.elapsed());
                }
            }
            (got, ours)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        theirs.write_all(b"two").await.unwrap();
        let (got, mut ours) = tokio::time::timeout(DEADLINE, reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"onetwo");
        assert!(start.elapsed() >= delay + Duration::from_millis(50));

        // Writes go out at once.
        let start = std::time::Instant::now();
        ours.write_all(b"out").await.unwrap();
        assert_eq!(read_exactly(&mut theirs, 3).await, b"out");
        assert!(
            start.elapsed() < delay,
            "write delayed: {:?}",
            start.elapsed()
        );

        // What is held when the fault lifts is handed over at once, still in order.
        theirs.write_all(b"three").await.unwrap();
        let mut buf = [0; 5];
        let mut read = ours.read_exact(&mut buf);
        let (poll, _) = poll_once(&mut read);
        assert!(poll.is_pending());
        let start = std::time::Instant::now();
        control.heal();
        tokio::time::timeout(DEADLINE, read).await.unwrap().unwrap();
        assert_eq!(&buf, b"three");
        assert!(
            start.elapsed() < delay,
            "held after heal: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn per_ip_fault_overrides_the_global_one() {
        let control = FaultControl::default();
        let (mut ours, mut theirs) = pair(&control).await;
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        control.set_for(elsewhere, Fault::Cut);
        assert_eq!(control.fault_for(Some(elsewhere)), Fault::Cut);
        assert_eq!(control.fault_for(Some(here)), Fault::None);
        theirs.write_all(b"ok").await.unwrap();
        assert_eq!(read_exactly(&mut ours, 2).await, b"ok");

        control.set(Fault::Blackhole);
        control.set_for(here, Fault::None);
        theirs.write_all(b"ok").await.unwrap();
        assert_eq!(read_exactly(&mut ours, 2).await, b"ok");
        assert_eq!(control.fault_for(None), Fault::Blackhole);
    }
}
