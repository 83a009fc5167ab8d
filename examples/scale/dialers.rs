//! The dialer process: one small swarm per dialer, each with its own identity and source
//! address, all in one tokio runtime. Most are bare ping swarms; a share runs the crate's
//! `Behaviour`, so that the goodbyes the listener sends are read and counted.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use libp2p::{
    core::upgrade::Version,
    noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux, Multiaddr, Swarm, SwarmBuilder, Transport as _,
};
use libp2p_connection_manager as manager;
use tokio::{
    sync::{mpsc, watch, Semaphore},
    time::{sleep, timeout, Instant},
};

use crate::{
    plan::Plan,
    probe,
    protocol::{emit, forward_lines, DialerReport},
    transport::BoundTcp,
    IDLE_TIMEOUT, PING_INTERVAL,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A dial that neither succeeds nor fails in this long counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed dials are retried this often, after 100 ms, 200 ms, ... (a retry delay, not a wait
/// for anything).
const DIAL_ATTEMPTS: u32 = 8;

/// A dialer's behaviour.
trait Dialer: NetworkBehaviour + Send + 'static
where
    Self::ToSwarm: Send,
{
    fn build(key: &libp2p::identity::Keypair) -> Self;
    /// The reason of a goodbye the listener sent, if `event` is one.
    fn goodbye(event: &Self::ToSwarm) -> Option<String>;
}

impl Dialer for ping::Behaviour {
    fn build(_: &libp2p::identity::Keypair) -> Self {
        ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL))
    }

    fn goodbye(_: &ping::Event) -> Option<String> {
        None
    }
}

/// The crate with its defaults, except no rescue dials: the harness retries a failed dial
/// itself, and two retries at once could leave two connections.
impl Dialer for manager::Behaviour {
    fn build(key: &libp2p::identity::Keypair) -> Self {
        let config = manager::Config::new()
            .with_ping_interval(PING_INTERVAL)
            .with_max_rescue_dials(0);
        manager::Behaviour::new(key.public().to_peer_id(), config)
    }

    fn goodbye(event: &manager::Event) -> Option<String> {
        match event {
            manager::Event::GoodbyeReceived { reason, .. } => Some(format!("{reason:?}")),
            _ => None,
        }
    }
}

/// What a dialer tells the process.
enum Note {
    Connected,
    Retried,
    Closed { i: usize, goodbye: Option<String> },
    GaveUp { i: usize, error: String },
}

pub fn run(
    address: Multiaddr,
    connections: usize,
    plan: Plan,
    concurrency: usize,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive(address, connections, plan, concurrency))
}

async fn drive(
    address: Multiaddr,
    connections: usize,
    plan: Plan,
    concurrency: usize,
) -> anyhow::Result<()> {
    let (note_sender, mut notes) = mpsc::unbounded_channel();
    let (refill_sender, refill) = watch::channel(0u64);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (command_sender, mut commands) = mpsc::unbounded_channel();
    forward_lines(std::io::stdin(), move |line| {
        command_sender
            .send(line.unwrap_or_else(|| "exit".into()))
            .is_ok()
    });

    let mut started = Instant::now();
    for i in 0..connections {
        let link = Link {
            i,
            address: address.clone(),
            permits: permits.clone(),
            notes: note_sender.clone(),
            refill: refill.clone(),
        };
        if plan.is_managed(i) {
            tokio::spawn(link.run::<manager::Behaviour>());
        } else {
            tokio::spawn(link.run::<ping::Behaviour>());
        }
    }

    let mut connected = 0usize;
    let mut target = Some(connections);
    let mut retries = 0u64;
    loop {
        tokio::select! {
            note = notes.recv() => match note.context("every dialer ended")? {
                Note::Connected => connected += 1,
                Note::Retried => retries += 1,
                Note::Closed { i, goodbye } => {
                    connected -= 1;
                    emit(&DialerReport::Closed { i, goodbye });
                }
                Note::GaveUp { i, error } => emit(&DialerReport::GaveUp { i, error }),
            },
            line = commands.recv() => match line.as_deref().unwrap_or("exit").trim() {
                "refill" => {
                    started = Instant::now();
                    target = Some(connections);
                    refill_sender.send_modify(|generation| *generation += 1);
                }
                "exit" | "" => return Ok(()),
                other => eprintln!("dialers: unknown command {other:?}"),
            },
        }
        if target.is_some_and(|t| connected >= t) {
            target = None;
            emit(&DialerReport::AllConnected {
                connected,
                secs: started.elapsed().as_secs_f64(),
                retries,
                rss: probe::rss_bytes(),
            });
        }
    }
}

/// One dialer and what it needs.
struct Link {
    i: usize,
    address: Multiaddr,
    permits: Arc<Semaphore>,
    notes: mpsc::UnboundedSender<Note>,
    refill: watch::Receiver<u64>,
}

impl Link {
    async fn run<B: Dialer>(mut self)
    where
        B::ToSwarm: Send,
    {
        let i = self.i;
        let mut swarm = match dialer_swarm::<B>(i) {
            Ok(swarm) => swarm,
            Err(error) => {
                let error = format!("{error:#}");
                let _ = self.notes.send(Note::GaveUp { i, error });
                return;
            }
        };
        loop {
            if let Err(error) = self.connect(&mut swarm).await {
                let error = format!("{error:#}");
                let _ = self.notes.send(Note::GaveUp { i, error });
                return;
            }
            if self.notes.send(Note::Connected).is_err() {
                return;
            }
            let goodbye = hold(&mut swarm).await;
            // A refill asked for after this close must be seen as new.
            self.refill.mark_unchanged();
            if self.notes.send(Note::Closed { i, goodbye }).is_err() {
                return;
            }
            // Wait for the next refill, still polling the swarm (the crate has timers).
            loop {
                tokio::select! {
                    changed = self.refill.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    _ = swarm.select_next_some() => {}
                }
            }
        }
    }

    /// Dials the listener until a connection is established (at most `concurrency` dials in
    /// flight over all dialers).
    async fn connect<B: Dialer>(&self, swarm: &mut Swarm<B>) -> anyhow::Result<()>
    where
        B::ToSwarm: Send,
    {
        let mut last_error = String::new();
        for attempt in 1..=DIAL_ATTEMPTS {
            if attempt > 1 {
                let _ = self.notes.send(Note::Retried);
                sleep(Duration::from_millis(100) * attempt).await;
            }
            let _permit = self.permits.acquire().await?;
            swarm.dial(self.address.clone())?;
            let outcome = timeout(DIAL_TIMEOUT, async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { .. } => return Ok(()),
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            return Err(error.to_string())
                        }
                        _ => {}
                    }
                }
            })
            .await;
            match outcome {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = format!("no outcome within {DIAL_TIMEOUT:?}"),
            }
        }
        anyhow::bail!("{DIAL_ATTEMPTS} dials failed, the last: {last_error}")
    }
}

/// Polls the swarm until its connection closes; returns the goodbye read before, if any.
async fn hold<B: Dialer>(swarm: &mut Swarm<B>) -> Option<String>
where
    B::ToSwarm: Send,
{
    let mut goodbye = None;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => return goodbye,
            SwarmEvent::Behaviour(event) => {
                if let Some(reason) = B::goodbye(&event) {
                    goodbye = Some(reason);
                }
            }
            _ => {}
        }
    }
}

fn dialer_swarm<B: Dialer>(i: usize) -> anyhow::Result<Swarm<B>>
where
    B::ToSwarm: Send,
{
    let source = Plan::source_ip(i);
    Ok(SwarmBuilder::with_existing_identity(Plan::keypair(i))
        .with_tokio()
        .with_other_transport(|key| -> Result<_, BoxError> {
            Ok(BoundTcp::new(source)
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })?
        .with_behaviour(|key| B::build(key))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
}
