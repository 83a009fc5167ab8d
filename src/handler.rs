//! The per-connection side: the goodbye streams and the keep-alive.
//!
//! Ping runs beside this handler (libp2p-ping's own handler, selected together with this one
//! by [`crate::Behaviour`]). This handler decides nothing: it sends the goodbye it is told to
//! send, reports the goodbye the remote sends, and keeps the connection alive so that closing
//! stays the manager's decision.

use std::{
    collections::VecDeque,
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use futures_timer::Delay;
use libp2p_core::upgrade::ReadyUpgrade;
use libp2p_swarm::{
    handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound},
    ConnectionHandler, ConnectionHandlerEvent, StreamProtocol, StreamUpgradeError,
    SubstreamProtocol,
};

use crate::protocol::{self, Goodbye, GoodbyeError, GOODBYE_PROTOCOL};

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

enum Outgoing {
    /// Waiting for the behaviour to ask.
    Idle,
    /// A stream was requested for this goodbye.
    Requested(Goodbye, Delay),
    /// Negotiated: sending.
    Sending(SendFuture, Delay),
    /// Sent (or given up); nothing more to send on this connection.
    Done,
}

/// The connection manager's handler for one connection.
pub struct Handler {
    keep_alive: bool,
    goodbye_timeout: Duration,
    outgoing: Outgoing,
    /// The remote's goodbye being read. One per connection is enough; more are dropped.
    incoming: Option<(RecvFuture, Delay)>,
    received_goodbye: bool,
    reports: VecDeque<ToBehaviour>,
    stream_requested: bool,
}

impl Handler {
    /// A handler that keeps its connection alive when `keep_alive` is set and gives a goodbye
    /// at most `goodbye_timeout`.
    pub fn new(keep_alive: bool, goodbye_timeout: Duration) -> Self {
        Self {
            keep_alive,
            goodbye_timeout,
            outgoing: Outgoing::Idle,
            incoming: None,
            received_goodbye: false,
            reports: VecDeque::new(),
            stream_requested: false,
        }
    }

    fn finish_outgoing(&mut self, outcome: GoodbyeOutcome) {
        tracing::trace!(?outcome, "goodbye finished");
        self.outgoing = Outgoing::Done;
        self.reports
            .push_back(ToBehaviour::GoodbyeFinished(outcome));
    }

    fn on_dial_upgrade_error(&mut self, error: StreamUpgradeError<Infallible>) {
        if !matches!(self.outgoing, Outgoing::Requested(..)) {
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
        self.keep_alive
    }

    fn on_behaviour_event(&mut self, event: FromBehaviour) {
        match event {
            FromBehaviour::SendGoodbye { goodbye, timeout } => {
                match self.outgoing {
                    Outgoing::Idle => {
                        self.outgoing = Outgoing::Requested(goodbye, Delay::new(timeout));
                    }
                    // One goodbye per connection: a second request is answered at once.
                    Outgoing::Done => self
                        .reports
                        .push_back(ToBehaviour::GoodbyeFinished(GoodbyeOutcome::Delivered)),
                    Outgoing::Requested(..) | Outgoing::Sending(..) => {}
                }
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(report) = self.reports.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
        }

        if let Some((receiving, deadline)) = self.incoming.as_mut() {
            let result = match receiving.poll_unpin(cx) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => match deadline.poll_unpin(cx) {
                    Poll::Ready(()) => {
                        Some(Err(GoodbyeError::Io(std::io::ErrorKind::TimedOut.into())))
                    }
                    Poll::Pending => None,
                },
            };
            if let Some(result) = result {
                self.incoming = None;
                let report = match result {
                    Ok(goodbye) => ToBehaviour::GoodbyeReceived(goodbye),
                    Err(error) => ToBehaviour::InvalidGoodbye(error),
                };
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
            }
        }

        match &mut self.outgoing {
            Outgoing::Requested(_, deadline) => {
                if deadline.poll_unpin(cx).is_ready() {
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
                if self.incoming.is_some() || self.received_goodbye {
                    tracing::debug!("dropping a second goodbye stream from the remote");
                    return;
                }
                self.received_goodbye = true;
                self.incoming = Some((
                    protocol::recv_goodbye(stream).boxed(),
                    Delay::new(self.goodbye_timeout),
                ));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => {
                let outgoing = std::mem::replace(&mut self.outgoing, Outgoing::Done);
                if let Outgoing::Requested(goodbye, deadline) = outgoing {
                    self.outgoing = Outgoing::Sending(
                        protocol::send_goodbye(stream, goodbye).boxed(),
                        deadline,
                    );
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.on_dial_upgrade_error(error)
            }
            _ => {}
        }
    }
}
