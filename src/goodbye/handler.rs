//! The per-connection side: the goodbye streams and the keep-alive.
//!
//! Ping runs beside this handler (libp2p-ping's own handler, selected together with this one
//! by [`crate::Behaviour`]). This handler decides nothing: it sends the goodbye it is told to
//! send, reports the goodbye the remote sends, and keeps the connection alive while the
//! manager says so.
//!
//! Keeping a connection alive takes both ends: each swarm closes a connection it finds idle.
//! So while the manager wants a connection kept, this handler also opens the goodbye stream
//! early and holds it open without writing; the remote's swarm sees an active stream and keeps
//! the connection too. The goodbye, if one comes, is written on that held stream; releasing
//! the hold closes the stream without a frame. A remote without this crate refuses the
//! protocol, and its own idle policy applies, as without the manager.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{future::BoxFuture, AsyncRead, AsyncWriteExt, FutureExt};
use futures_timer::Delay;
use libp2p_core::upgrade::ReadyUpgrade;
use libp2p_swarm::{
    handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound},
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};

use super::protocol::{self, Goodbye, GoodbyeError, GOODBYE_PROTOCOL};

/// A command from the behaviour to the handler.
#[derive(Debug, Clone)]
pub enum FromBehaviour {
    /// Send this goodbye, taking at most `timeout`, then report
    /// [`ToBehaviour::GoodbyeFinished`].
    SendGoodbye {
        /// The goodbye.
        goodbye: Goodbye,
        /// How long sending it may take.
        timeout: Duration,
    },
    /// Keep the connection open while idle (`true`), or let the swarm's idle timeout close it.
    KeepAlive(bool),
}

/// A report from the handler to the behaviour.
#[derive(Debug)]
pub enum ToBehaviour {
    /// The remote said goodbye.
    GoodbyeReceived(Goodbye),
    /// The remote sent a goodbye stream we could not read.
    InvalidGoodbye(GoodbyeError),
    /// Our goodbye is done: delivered, refused, or out of time. The connection may close.
    GoodbyeFinished(GoodbyeOutcome),
}

/// How sending a goodbye ended.
#[derive(Debug)]
pub enum GoodbyeOutcome {
    /// The remote read it and closed the stream.
    Delivered,
    /// The remote does not speak the goodbye protocol.
    Unsupported,
    /// It did not complete within the goodbye timeout.
    TimedOut,
    /// The stream failed.
    Failed(GoodbyeError),
}

type SendFuture = BoxFuture<'static, Result<(), GoodbyeError>>;
type RecvFuture = BoxFuture<'static, Result<Goodbye, GoodbyeError>>;
type AwaitFuture = BoxFuture<'static, Result<(Stream, Option<u8>), GoodbyeError>>;
type ReleaseFuture = BoxFuture<'static, ()>;

/// Our side of the goodbye stream.
enum Outgoing {
    /// No stream.
    Idle,
    /// A stream was requested: to hold the connection open, or for a goodbye (with its
    /// deadline).
    Requested(Option<(Goodbye, Delay)>),
    /// Held open, unwritten, so that the remote keeps the connection alive. Polled for reading
    /// only to see the remote end it.
    Held(Stream),
    /// Sending the goodbye.
    Sending(SendFuture, Delay),
    /// Sent (or given up); nothing more to send on this connection.
    Done,
}

/// The remote's side of the goodbye stream.
enum Incoming {
    /// No stream.
    Idle,
    /// The remote holds the stream open (it wants the connection kept); its goodbye may come
    /// on it later. No deadline: one per connection.
    Held(AwaitFuture),
    /// A goodbye frame has started: the rest must come within the goodbye timeout.
    Reading(RecvFuture, Delay),
}

/// The connection manager's handler for one connection.
pub struct Handler {
    keep_alive: bool,
    goodbye_timeout: Duration,
    outgoing: Outgoing,
    incoming: Incoming,
    /// The remote's goodbye arrived: any further goodbye stream is dropped.
    received_goodbye: bool,
    /// The remote refused the goodbye protocol: no stream is held, no goodbye is tried.
    unsupported: bool,
    reports: VecDeque<ToBehaviour>,
    stream_requested: bool,
    /// A held stream being closed without a frame.
    releasing: Option<ReleaseFuture>,
    /// Until it fires, the connection is kept alive whatever the manager says: the remote may
    /// want it and needs a round trip to hold the goodbye stream (with an idle timeout of zero
    /// the swarm would otherwise close it before the hold arrives).
    opening: Option<Delay>,
}

impl Handler {
    /// A handler that keeps its connection alive while idle when `keep_alive` is set (until the
    /// behaviour says otherwise) and gives a goodbye at most `goodbye_timeout`. For the first
    /// `goodbye_timeout` it keeps the connection alive regardless, so that a remote that wants
    /// it has the time to hold the goodbye stream.
    pub fn new(keep_alive: bool, goodbye_timeout: Duration) -> Self {
        Self {
            keep_alive,
            goodbye_timeout,
            outgoing: if keep_alive {
                Outgoing::Requested(None)
            } else {
                Outgoing::Idle
            },
            incoming: Incoming::Idle,
            received_goodbye: false,
            unsupported: false,
            reports: VecDeque::new(),
            stream_requested: false,
            releasing: None,
            opening: Some(Delay::new(goodbye_timeout)),
        }
    }

    fn finish_outgoing(&mut self, outcome: GoodbyeOutcome) {
        tracing::trace!(?outcome, "goodbye finished");
        self.outgoing = Outgoing::Done;
        self.reports
            .push_back(ToBehaviour::GoodbyeFinished(outcome));
    }

    fn set_keep_alive(&mut self, keep: bool) {
        self.keep_alive = keep;
        match std::mem::replace(&mut self.outgoing, Outgoing::Idle) {
            Outgoing::Idle if keep && !self.unsupported => {
                self.outgoing = Outgoing::Requested(None);
                self.stream_requested = false;
            }
            Outgoing::Held(stream) if !keep => self.release(stream),
            other => self.outgoing = other,
        }
    }

    /// Ends a held stream without a frame: the remote stops keeping the connection for us.
    fn release(&mut self, mut stream: Stream) {
        let closing: ReleaseFuture = async move {
            let _ = stream.close().await;
        }
        .boxed();
        self.releasing = Some(closing);
    }

    fn send_goodbye(&mut self, goodbye: Goodbye, timeout: Duration) {
        let deadline = Delay::new(timeout);
        self.outgoing = match std::mem::replace(&mut self.outgoing, Outgoing::Idle) {
            _ if self.unsupported => {
                self.finish_outgoing(GoodbyeOutcome::Unsupported);
                return;
            }
            Outgoing::Idle => {
                self.stream_requested = false;
                Outgoing::Requested(Some((goodbye, deadline)))
            }
            Outgoing::Requested(_) => Outgoing::Requested(Some((goodbye, deadline))),
            Outgoing::Held(stream) => {
                Outgoing::Sending(protocol::send_goodbye(stream, goodbye).boxed(), deadline)
            }
            // One goodbye per connection: a second request is answered at once.
            Outgoing::Done => {
                self.reports
                    .push_back(ToBehaviour::GoodbyeFinished(GoodbyeOutcome::Delivered));
                Outgoing::Done
            }
            sending @ Outgoing::Sending(..) => sending,
        };
    }

    fn on_dial_upgrade_error(&mut self, error: StreamUpgradeError<Infallible>) {
        let Outgoing::Requested(goodbye) = std::mem::replace(&mut self.outgoing, Outgoing::Idle)
        else {
            return;
        };
        if matches!(error, StreamUpgradeError::NegotiationFailed) {
            self.unsupported = true;
        }
        if goodbye.is_none() {
            // Only the hold failed: the remote's own idle policy applies.
            return;
        }
        let outcome = match error {
            StreamUpgradeError::NegotiationFailed => GoodbyeOutcome::Unsupported,
            StreamUpgradeError::Timeout => GoodbyeOutcome::TimedOut,
            StreamUpgradeError::Io(e) => GoodbyeOutcome::Failed(GoodbyeError::Io(e)),
            StreamUpgradeError::Apply(never) => match never {},
        };
        self.finish_outgoing(outcome);
    }

    /// Reads the remote's goodbye stream; `Some` when there is something to report.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Option<ToBehaviour> {
        match &mut self.incoming {
            Incoming::Idle => None,
            Incoming::Held(waiting) => match waiting.poll_unpin(cx) {
                Poll::Pending => None,
                Poll::Ready(Ok((stream, Some(first)))) => {
                    self.incoming = Incoming::Reading(
                        protocol::recv_goodbye_after(stream, first).boxed(),
                        Delay::new(self.goodbye_timeout),
                    );
                    self.poll_incoming(cx)
                }
                // Released without a frame: the remote no longer holds the connection.
                Poll::Ready(Ok((_, None))) => {
                    self.incoming = Incoming::Idle;
                    None
                }
                Poll::Ready(Err(error)) => {
                    self.incoming = Incoming::Idle;
                    Some(ToBehaviour::InvalidGoodbye(error))
                }
            },
            Incoming::Reading(receiving, deadline) => {
                let result = match receiving.poll_unpin(cx) {
                    Poll::Ready(result) => result,
                    Poll::Pending => match deadline.poll_unpin(cx) {
                        Poll::Ready(()) => {
                            Err(GoodbyeError::Io(std::io::ErrorKind::TimedOut.into()))
                        }
                        Poll::Pending => return None,
                    },
                };
                self.incoming = Incoming::Idle;
                Some(match result {
                    Ok(goodbye) => {
                        self.received_goodbye = true;
                        ToBehaviour::GoodbyeReceived(goodbye)
                    }
                    Err(error) => ToBehaviour::InvalidGoodbye(error),
                })
            }
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(GOODBYE_PROTOCOL), ())
            .with_timeout(self.goodbye_timeout)
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive || self.opening.is_some() || !matches!(self.incoming, Incoming::Idle)
    }

    fn on_behaviour_event(&mut self, event: FromBehaviour) {
        match event {
            FromBehaviour::KeepAlive(keep) => self.set_keep_alive(keep),
            FromBehaviour::SendGoodbye { goodbye, timeout } => self.send_goodbye(goodbye, timeout),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(report) = self.reports.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
        }
        if let Some(report) = self.poll_incoming(cx) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
        }
        if self
            .opening
            .as_mut()
            .is_some_and(|o| o.poll_unpin(cx).is_ready())
        {
            self.opening = None;
        }
        if let Some(releasing) = self.releasing.as_mut() {
            if releasing.poll_unpin(cx).is_ready() {
                self.releasing = None;
            }
        }

        match &mut self.outgoing {
            Outgoing::Requested(goodbye) => {
                let overdue = goodbye
                    .as_mut()
                    .is_some_and(|(_, deadline)| deadline.poll_unpin(cx).is_ready());
                if overdue {
                    self.finish_outgoing(GoodbyeOutcome::TimedOut);
                } else if !self.stream_requested {
                    self.stream_requested = true;
                    let protocol = SubstreamProtocol::new(ReadyUpgrade::new(GOODBYE_PROTOCOL), ())
                        .with_timeout(self.goodbye_timeout);
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol,
                    });
                }
            }
            Outgoing::Held(stream) => {
                let mut byte = [0u8; 1];
                // It should send nothing: whatever it sends, or however the stream ends, the
                // remote ended our hold and decides for itself again.
                if Pin::new(stream).poll_read(cx, &mut byte).is_ready() {
                    self.outgoing = Outgoing::Idle;
                }
            }
            Outgoing::Sending(sending, deadline) => match sending.poll_unpin(cx) {
                Poll::Ready(Ok(())) => self.finish_outgoing(GoodbyeOutcome::Delivered),
                Poll::Ready(Err(e)) => self.finish_outgoing(GoodbyeOutcome::Failed(e)),
                Poll::Pending => {
                    if deadline.poll_unpin(cx).is_ready() {
                        self.finish_outgoing(GoodbyeOutcome::TimedOut);
                    }
                }
            },
            Outgoing::Idle | Outgoing::Done => {}
        }

        match self.reports.pop_front() {
            Some(report) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report)),
            None => Poll::Pending,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) => {
                if !matches!(self.incoming, Incoming::Idle) || self.received_goodbye {
                    tracing::debug!("dropping a second goodbye stream from the remote");
                    return;
                }
                self.incoming = Incoming::Held(protocol::await_goodbye(stream).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => {
                self.stream_requested = false;
                match std::mem::replace(&mut self.outgoing, Outgoing::Idle) {
                    Outgoing::Requested(Some((goodbye, deadline))) => {
                        self.outgoing = Outgoing::Sending(
                            protocol::send_goodbye(stream, goodbye).boxed(),
                            deadline,
                        );
                    }
                    Outgoing::Requested(None) if self.keep_alive => {
                        self.outgoing = Outgoing::Held(stream);
                    }
                    Outgoing::Requested(None) => self.release(stream),
                    other => {
                        // Not asked for (any more): end it.
                        self.outgoing = other;
                        self.release(stream);
                    }
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.stream_requested = false;
                self.on_dial_upgrade_error(error)
            }
            _ => {}
        }
    }
}
