//! The long-lived node's command-line options and the manager configuration they make.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::CommandFactory as _;
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use libp2p_connection_manager as manager;

use crate::Args;

/// The options that select the long-lived node.
pub const NODE_OPTIONS: &[&str] = &[
    "listen",
    "bootstrap",
    "dial",
    "key_file",
    "max_established",
    "max_pending",
    "low_watermark",
    "high_watermark",
    "admin",
    "admin_allow_remote",
    "status_interval",
    "store",
    "fresh_store",
    "store_flush_ms",
    "ban",
    "ping_interval",
    "ping_timeout",
    "inactivity_timeout",
    "stdin_commands",
];

/// The long-lived node's options.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Listen on this address [default: /ip4/127.0.0.1/tcp/0].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Option<Multiaddr>,
    /// A bootstrap peer, `<address>/p2p/<peer id>` (repeatable): dialed at start and whenever
    /// the node has lost every connection.
    #[arg(long, value_name = "MULTIADDR", value_parser = parse_peer_address)]
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Dial this address (repeatable). With /p2p/<peer id> the manager keeps the peer
    /// (redialed when lost); without, it is dialed once.
    #[arg(long, value_name = "MULTIADDR")]
    pub dial: Vec<Multiaddr>,
    /// Keep the identity in this file: an ed25519 keypair, protobuf-encoded. Created (mode
    /// 0600) if missing.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Limit on established connections, inbound and outbound together.
    #[arg(long, value_name = "N")]
    pub max_established: Option<u32>,
    /// Limit on connections in their handshake, for inbound and for outbound each.
    #[arg(long, value_name = "N")]
    pub max_pending: Option<u32>,
    /// Trim connected peers down to this many once they exceed the high watermark.
    #[arg(long, value_name = "N", requires = "high_watermark")]
    pub low_watermark: Option<usize>,
    /// Trim when more peers than this are connected.
    #[arg(long, value_name = "N", requires = "low_watermark")]
    pub high_watermark: Option<usize>,
    /// Serve the admin API, the status page, `/metrics` (feature `metrics`) and `/healthz` on
    /// this address, e.g. 127.0.0.1:5001 (port 0 picks one). `--metrics` is another name.
    #[arg(long, value_name = "ADDR", visible_alias = "metrics")]
    pub admin: Option<SocketAddr>,
    /// Take commands (POST) on the admin API from any address, not only loopback.
    #[arg(long, requires = "admin")]
    pub admin_allow_remote: bool,
    /// Print a status table every SECS seconds; 0 disables it [default: 10].
    #[arg(long, value_name = "SECS")]
    pub status_interval: Option<u64>,
    /// Keep bans, wanted peers, addresses and tags in this file across restarts (a redb
    /// database, created if missing). Needs `--features redb`.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// If the --store file is damaged or of another format, set it aside (renamed to
    /// `<file>.bad-<time>`) and start with an empty store, instead of refusing to start.
    #[arg(long, requires = "store")]
    pub fresh_store: bool,
    /// Hand the changes to the --store file every MS milliseconds [default: 1000].
    #[arg(long, value_name = "MS", requires = "store",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub store_flush_ms: Option<u64>,
    /// Ban this peer until unbanned (repeatable). With --store the ban outlives restarts.
    #[arg(long, value_name = "PEER_ID")]
    pub ban: Vec<PeerId>,
    /// Ping every connection every SECS seconds [default: the manager's, 15].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval: Option<u64>,
    /// A ping fails after SECS seconds [default: the manager's, 20].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_timeout: Option<u64>,
    /// Close a connection (reason `Timeout`) when no ping succeeded for SECS seconds
    /// [default: the manager's, 60].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub inactivity_timeout: Option<u64>,
    /// Read commands from standard input, one a line: `dial <multiaddr>` (as --dial),
    /// `ban <peer id> [secs]` (until unbanned without secs), `disconnect <peer id>`,
    /// `tag <peer id> <tag> <value>`, `address <peer id> <multiaddr>` (remember a dial address),
    /// `flush [label]` (write the changes to the store and wait; prints `peer store flushed
    /// <label>`), `status` (the status table now). Commands on one line, `;` between them, are
    /// applied together: the store gets them in one batch.
    #[arg(long)]
    pub stdin_commands: bool,
}

impl NodeArgs {
    pub fn any_given(&self) -> bool {
        self.listen.is_some()
            || !self.bootstrap.is_empty()
            || !self.dial.is_empty()
            || self.key_file.is_some()
            || self.max_established.is_some()
            || self.max_pending.is_some()
            || self.low_watermark.is_some()
            || self.high_watermark.is_some()
            || self.admin.is_some()
            || self.status_interval.is_some()
            || self.store.is_some()
            || !self.ban.is_empty()
            || self.ping_interval.is_some()
            || self.ping_timeout.is_some()
            || self.inactivity_timeout.is_some()
            || self.stdin_commands
    }
}

/// `<address>/p2p/<peer id>` into the peer and the address without its `/p2p` part.
pub fn parse_peer_address(text: &str) -> Result<(PeerId, Multiaddr), String> {
    let mut address: Multiaddr = text.parse().map_err(|e| format!("{e}"))?;
    match address.pop() {
        Some(Protocol::P2p(peer)) if !address.is_empty() => Ok((peer, address)),
        _ => Err("must be an address ending in /p2p/<peer id>".to_owned()),
    }
}
/// Refuses, like any usage error (exit status 2), what clap cannot check by itself.
pub fn check_node_args(node: &NodeArgs) {
    let mut command = Args::command();
    if let (Some(low), Some(high)) = (node.low_watermark, node.high_watermark) {
        if low > high {
            command
                .error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("--low-watermark {low} is above --high-watermark {high}"),
                )
                .exit();
        }
    }
    if node.store.is_some() && !cfg!(feature = "redb") {
        command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--store needs the example built with the redb feature: \
                 cargo run --example node --features redb -- --store node.redb",
            )
            .exit();
    }
}
/// The manager's configuration from the command line.
pub fn node_config(args: &NodeArgs) -> manager::Config {
    let mut limits = manager::Limits::new();
    if let Some(max) = args.max_established {
        limits = limits.with_max_established_total(Some(max));
    }
    if let Some(max) = args.max_pending {
        limits = limits
            .with_max_pending_inbound(Some(max))
            .with_max_pending_outbound(Some(max));
    }
    let mut config = manager::Config::default().with_limits(limits);
    for (peer, address) in &args.bootstrap {
        config = config.with_bootstrap_peer(*peer, address.clone());
    }
    if let (Some(low), Some(high)) = (args.low_watermark, args.high_watermark) {
        config = config.with_watermarks(low, high);
    }
    if let Some(secs) = args.ping_interval {
        config = config.with_ping_interval(Duration::from_secs(secs));
    }
    if let Some(secs) = args.ping_timeout {
        config = config.with_ping_timeout(Duration::from_secs(secs));
    }
    if let Some(secs) = args.inactivity_timeout {
        config = config.with_inactivity_timeout(Some(Duration::from_secs(secs)));
    }
    config
}

pub fn print_settings(args: &NodeArgs) {
    let limit = |value: Option<u32>| value.map_or_else(|| "default".to_owned(), |n| n.to_string());
    let watermarks = match (args.low_watermark, args.high_watermark) {
        (Some(low), Some(high)) => format!("trim above {high} peers down to {low}"),
        _ => "no trimming".to_owned(),
    };
    println!(
        "limits: established {}, pending {}; {watermarks}; {} bootstrap peer(s)",
        limit(args.max_established),
        limit(args.max_pending),
        args.bootstrap.len()
    );
}
