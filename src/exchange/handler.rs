//! The per-connection side of peer exchange: send the lists the manager hands over, report the
//! lists the remote sends. One list in flight each way; anything more is dropped, so a remote
//! cannot pile up streams.

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

use super::protocol::{self as exchange, ExchangeError, PeerList, PEERS_PROTOCOL};

/// How long one list may take to send or to arrive.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A command from the behaviour.
#[derive(Debug, Clone)]
pub enum ExchangeIn {
    /// Send this list (replacing one not yet sent).
    Send(PeerList),
}

/// A report to the behaviour.
#[derive(Debug)]
pub enum ExchangeOut {
    /// The remote sent a list.
    Received(PeerList),
    /// The remote sent something that is not a valid list.
    Invalid(ExchangeError),
}

type Task<T> = (BoxFuture<'static, Result<T, ExchangeError>>, Delay);

/// The peer-exchange handler of one connection.
pub struct ExchangeHandler {
    /// The next list to send, waiting for a stream.
    queued: Option<PeerList>,
    stream_requested: bool,
    sending: Option<Task<()>>,
    receiving: Option<Task<PeerList>>,
    reports: VecDeque<ExchangeOut>,
    unsupported: bool,
}

impl ExchangeHandler {
    /// A handler with nothing to send yet.
    pub fn new() -> Self {
        Self {
            queued: None,
            stream_requested: false,
            sending: None,
            receiving: None,
            reports: VecDeque::new(),
            unsupported: false,
        }
    }
}

impl Default for ExchangeHandler {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls a bounded task: its result, or a timeout error once its deadline passed.
fn poll_task<T>(task: &mut Task<T>, cx: &mut Context<'_>) -> Poll<Result<T, ExchangeError>> {
    if let Poll::Ready(result) = task.0.poll_unpin(cx) {
        return Poll::Ready(result);
    }
    match task.1.poll_unpin(cx) {
        Poll::Ready(()) => Poll::Ready(Err(ExchangeError::Io(std::io::ErrorKind::TimedOut.into()))),
        Poll::Pending => Poll::Pending,
    }
}

impl ConnectionHandler for ExchangeHandler {
    type FromBehaviour = ExchangeIn;
    type ToBehaviour = ExchangeOut;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PEERS_PROTOCOL), ())
    }

    fn on_behaviour_event(&mut self, event: ExchangeIn) {
        match event {
            ExchangeIn::Send(peers) if !self.unsupported => self.queued = Some(peers),
            ExchangeIn::Send(_) => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(task) = self.receiving.as_mut() {
            if let Poll::Ready(result) = poll_task(task, cx) {
                self.receiving = None;
                self.reports.push_back(match result {
                    Ok(peers) => ExchangeOut::Received(peers),
                    Err(error) => ExchangeOut::Invalid(error),
                });
            }
        }
        if let Some(task) = self.sending.as_mut() {
            if let Poll::Ready(result) = poll_task(task, cx) {
                self.sending = None;
                if let Err(error) = result {
                    tracing::debug!(%error, "sending a peer list failed");
                }
            }
        }
        if let Some(report) = self.reports.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report));
        }
        if self.queued.is_some() && self.sending.is_none() && !self.stream_requested {
            self.stream_requested = true;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PEERS_PROTOCOL), ())
                    .with_timeout(EXCHANGE_TIMEOUT),
            });
        }
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                if self.receiving.is_some() {
                    tracing::debug!("dropping a second peer-list stream");
                    return;
                }
                self.receiving = Some((
                    exchange::recv_peers(stream).boxed(),
                    Delay::new(EXCHANGE_TIMEOUT),
                ));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.stream_requested = false;
                if let Some(peers) = self.queued.take() {
                    self.sending = Some((
                        async move { exchange::send_peers(stream, &peers).await }.boxed(),
                        Delay::new(EXCHANGE_TIMEOUT),
                    ));
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.stream_requested = false;
                match error {
                    StreamUpgradeError::NegotiationFailed => {
                        // The remote does not exchange peers: stop offering.
                        self.unsupported = true;
                        self.queued = None;
                    }
                    StreamUpgradeError::Apply(never) => {
                        let _: Infallible = never;
                    }
                    StreamUpgradeError::Timeout | StreamUpgradeError::Io(_) => {}
                }
            }
            _ => {}
        }
    }
}
