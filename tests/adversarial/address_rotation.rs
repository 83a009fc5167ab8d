//! Address rotation over real TCP: an attacker that owns one IPv6 /48 (65,536 /64s, what a
//! small network gets for little money) rotates its source address through it, and one that was
//! banned by a single address moves to the next address of its /64.
//!
//! The attacker's addresses are real: the test routes the documentation /48 below to the
//! loopback interface (`ip -6 route add local 2001:db8:a::/48 dev lo table local`) and lets
//! sockets bind addresses that are only routed there (`net.ipv6.ip_nonlocal_bind`), so every
//! connection reaches the target from its own source address, as the target's kernel reports
//! it. Both need root; where that is impossible the scenarios print SKIPPED with the reason and
//! pass. Both settings are undone when a scenario ends.
//!
//! The attacker opens plain TCP connections and never speaks: what matters here is what the
//! target admits into its handshake and how much per-address state it keeps, all decided from
//! the source address before any handshake work. The target runs the connection manager with
//! its default limits (`Limits::new()`), the pending-inbound limit raised so that it does not
//! hide the per-address ones.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    multiaddr::Protocol,
    noise,
    swarm::{ListenError, SwarmEvent},
    tcp, yamux, Multiaddr, Swarm,
};
use libp2p_connection_manager::{Behaviour, Config, Denial, Limits};
use tokio::{net::TcpStream, sync::watch};

use crate::common::init_tracing;

/// The attacker's /48 (in the documentation range).
const PREFIX: &str = "2001:db8:a::/48";

/// One scenario at a time: they share the route and the sysctl.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An address of the attacker's /48: /64 number `subnet` (its high byte picks the /56), host
/// `host`.
fn attacker_ip(subnet: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xa, subnet, 0, 0, 0, host)
}

/// The route and the sysctl, undone on drop.
struct RoutedPrefix {
    nonlocal_bind_was: String,
}

const NONLOCAL_BIND: &str = "/proc/sys/net/ipv6/ip_nonlocal_bind";

impl RoutedPrefix {
    fn set_up() -> Result<Self, String> {
        let was = std::fs::read_to_string(NONLOCAL_BIND)
            .map_err(|e| format!("cannot read {NONLOCAL_BIND}: {e}"))?;
        ip(&[
            "-6", "route", "replace", "local", PREFIX, "dev", "lo", "table", "local",
        ])?;
        if let Err(e) = std::fs::write(NONLOCAL_BIND, "1") {
            let _ = ip(&[
                "-6", "route", "del", "local", PREFIX, "dev", "lo", "table", "local",
            ]);
            return Err(format!("cannot write {NONLOCAL_BIND} (not root?): {e}"));
        }
        Ok(Self {
            nonlocal_bind_was: was.trim().to_owned(),
        })
    }
}

impl Drop for RoutedPrefix {
    fn drop(&mut self) {
        let _ = std::fs::write(NONLOCAL_BIND, &self.nonlocal_bind_was);
        let _ = ip(&[
            "-6", "route", "del", "local", PREFIX, "dev", "lo", "table", "local",
        ]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// What the target decided, updated after each of its swarm events.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Inbound connections let into their handshake.
    admitted: usize,
    /// Refusals, by kind of `Denial`.
    refused: BTreeMap<String, usize>,
    /// An example refusal of each kind, as the application reads it.
    example: BTreeMap<String, String>,
    /// Entries of the per-IP table, now and at most.
    tracked_ips: usize,
    max_tracked_ips: usize,
    /// Connections the manager counts as pending.
    pending: usize,
}

impl Seen {
    fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }

    fn decided(&self) -> usize {
        self.admitted + self.refused_total()
    }
}

struct Target {
    socket: SocketAddr,
    seen: watch::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    /// A node with the manager only, default limits (pending inbound raised), listening on
    /// `[::1]`; `prepare` runs on its behaviour before it starts (to ban, say).
    async fn spawn(prepare: impl FnOnce(&mut Behaviour)) -> Target {
        let limits = Limits::new().with_max_pending_incoming(Some(4096));
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| {
                Behaviour::new(
                    key.public().to_peer_id(),
                    Config::default().with_limits(limits),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        prepare(swarm.behaviour_mut());
        swarm
            .listen_on("/ip6/::1/tcp/0".parse().unwrap())
            .expect("listen");
        let socket = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break socket_address(&address);
            }
        };
        let (tx, seen) = watch::channel(Seen::default());
        let task = tokio::spawn(run(swarm, tx));
        Target { socket, seen, task }
    }

    async fn wait_for(&mut self, what: &str, condition: impl Fn(&Seen) -> bool) -> Seen {
        let reached = tokio::time::timeout(Duration::from_secs(20), self.seen.wait_for(condition))
            .await
            .ok()
            .and_then(|r| r.ok().map(|seen| seen.clone()));
        reached.unwrap_or_else(|| panic!("{what}: not within 20 s; last {:?}", self.seen.borrow()))
    }
}

async fn run(mut swarm: Swarm<Behaviour>, tx: watch::Sender<Seen>) {
    let mut seen = Seen::default();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::IncomingConnection { .. } => seen.admitted += 1,
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                ..
            } => {
                let (kind, text) = match cause.downcast_ref::<Denial>() {
                    Some(denial) => {
                        let debug = format!("{denial:?}");
                        let kind = debug
                            .split([' ', '{', '('])
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        (kind, denial.to_string())
                    }
                    None => ("untyped".to_owned(), cause.to_string()),
                };
                *seen.refused.entry(kind.clone()).or_default() += 1;
                seen.example.entry(kind).or_insert(text);
            }
            _ => {}
        }
        let manager = swarm.behaviour();
        seen.tracked_ips = manager.stats().tracked_ips;
        seen.max_tracked_ips = seen.max_tracked_ips.max(seen.tracked_ips);
        seen.pending = manager.stats().pending_connections;
        let _ = tx.send(seen.clone());
    }
}

fn socket_address(address: &Multiaddr) -> SocketAddr {
    let mut parts = address.iter();
    match (parts.next(), parts.next()) {
        (Some(Protocol::Ip6(ip)), Some(Protocol::Tcp(port))) => SocketAddr::from((ip, port)),
        other => panic!("not a TCP/IPv6 address: {other:?}"),
    }
}

/// A TCP connection from `source` to `target` that sends nothing.
async fn connect_from(source: Ipv6Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v6()?;
    socket.bind(SocketAddr::new(IpAddr::V6(source), 0))?;
    socket.connect(target).await
}

fn refusals(seen: &Seen, before: &Seen) -> String {
    let mut parts = Vec::new();
    for (kind, count) in &seen.refused {
        let earlier = before.refused.get(kind).copied().unwrap_or(0);
        if *count > earlier {
            parts.push(format!("{} {kind}", count - earlier));
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_source_addresses_through_one_48_is_held_to_the_48s_limits() {
    let _one = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let _routed = match RoutedPrefix::set_up() {
        Ok(routed) => routed,
        Err(why) => {
            println!("SKIPPED: the /48 rotation needs {PREFIX} routed to lo: {why}");
            return;
        }
    };
    let mut target = Target::spawn(|_| {}).await;

    // Held: one connection from each of 512 /64s (32 in each of 16 /56s), all at once.
    const HELD_56S: u16 = 16;
    const HELD_64S_EACH: u16 = 32;
    let sources: Vec<Ipv6Addr> = (0..HELD_56S)
        .flat_map(|s56| (0..HELD_64S_EACH).map(move |s64| attacker_ip((s56 << 8) | s64, 1)))
        .collect();
    let attempts = sources.iter().map(|s| connect_from(*s, target.socket));
    let held: Vec<TcpStream> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let opened = held.len();
    assert!(
        opened * 10 >= sources.len() * 9,
        "only {opened} connections opened"
    );
    let seen = target
        .wait_for("every held connection decided", |s| s.decided() >= opened)
        .await;
    println!(
        "/48 rotation, held open: attacker spent {} source addresses ({} /64s in {HELD_56S} /56s \
         of {PREFIX}), 0 PeerIds, {opened} TCP connections; got {} admitted into a handshake, \
         refused: {}; target's per-IP table: {} entries",
        sources.len(),
        sources.len(),
        seen.admitted,
        refusals(&seen, &Seen::default()),
        seen.tracked_ips
    );
    for example in seen.example.values() {
        println!("  e.g. {example}");
    }
    assert!(
        seen.admitted <= 64,
        "{} connections from one /48 held at once",
        seen.admitted
    );
    assert!(seen.max_tracked_ips <= 1 + HELD_56S as usize + 64);

    // Churn: the held connections go, then one short connection from each fresh /64, one
    // after the other, for two seconds: only the rate can refuse them.
    drop(held);
    let before = target
        .wait_for("the held connections released", |s| s.pending == 0)
        .await;
    let started = tokio::time::Instant::now();
    let mut subnet = 0x1000u16;
    let mut attempts = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(stream) = connect_from(attacker_ip(subnet, 1), target.socket).await {
            attempts += 1;
            drop(stream);
        }
        subnet = subnet.wrapping_add(1);
        let decided = before.decided() + attempts;
        target
            .wait_for("each churn connection decided", |s| s.decided() >= decided)
            .await;
    }
    let elapsed = started.elapsed();
    let seen = target.seen.borrow().clone();
    let admitted = seen.admitted - before.admitted;
    println!(
        "/48 rotation, churn: attacker spent {attempts} fresh /64s and {attempts} TCP connections \
         in {elapsed:.1?}; got {admitted} admitted, refused: {}; per-IP table at most {} entries",
        refusals(&seen, &before),
        seen.max_tracked_ips
    );
    // The /48's bucket (burst 80, then 40 a second), whatever the phase above left in it.
    let allowed = 80 + (40.0 * elapsed.as_secs_f64()).ceil() as usize;
    assert!(
        admitted <= allowed,
        "{admitted} admitted in {elapsed:?} from one /48 (at most {allowed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_of_one_ipv6_address_is_not_evaded_inside_its_64() {
    let _one = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let _routed = match RoutedPrefix::set_up() {
        Ok(routed) => routed,
        Err(why) => {
            println!("SKIPPED: the ban evasion needs {PREFIX} routed to lo: {why}");
            return;
        }
    };
    let banned = attacker_ip(0x77, 1);
    // The application bans the one address it saw misbehave, as the README shows.
    let mut target = Target::spawn(|behaviour| {
        behaviour.ban_network(IpAddr::V6(banned), Some(Duration::from_secs(3600)))
    })
    .await;
    const NEIGHBOURS: u16 = 50;
    let mut held = Vec::new();
    let mut opened = 0;
    for host in 2..2 + NEIGHBOURS {
        if let Ok(stream) = connect_from(attacker_ip(0x77, host), target.socket).await {
            opened += 1;
            held.push(stream);
        }
    }
    let seen = target
        .wait_for("every connection decided", |s| s.decided() >= opened)
        .await;
    println!(
        "ban evasion inside a /64: the target banned {banned}; attacker spent {NEIGHBOURS} other \
         addresses of its /64, 0 PeerIds, {opened} TCP connections; got {} admitted, refused: {}",
        seen.admitted,
        refusals(&seen, &Seen::default()),
    );
    for example in seen.example.values() {
        println!("  e.g. {example}");
    }
    assert_eq!(seen.admitted, 0, "the ban was evaded inside its /64");
    // Next door, another /64 of the same /48 is not banned.
    let neighbour = connect_from(attacker_ip(0x78, 1), target.socket)
        .await
        .expect("connect");
    let seen = target
        .wait_for("the next /64 decided", |s| s.decided() > opened)
        .await;
    assert_eq!(seen.admitted, 1, "another /64 is not banned");
    drop((held, neighbour));
}
