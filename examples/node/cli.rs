//! The long-lived node's flags and environment variables, laid over the `--config` file.

use std::{net::SocketAddr, path::PathBuf};

use libp2p::{Multiaddr, PeerId};

use crate::config::{BanEntry, NodeConfig, Rate, Security};

/// The long-lived node's options. Any of them (or its environment variable) selects the node
/// instead of the demo; each overrides the `--config` file's value (lists add to it, except
/// `--listen`, which replaces).
#[derive(clap::Args, Debug, Default)]
pub struct NodeArgs {
    /// Read settings from this TOML file (`--print-config` shows its format).
    #[arg(long, value_name = "PATH", env = "LIBP2P_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Listen on this address (repeatable): `/ip4/0.0.0.0/tcp/4001`,
    /// `/ip4/0.0.0.0/udp/4001/quic-v1`, `/ip4/0.0.0.0/tcp/4002/ws`
    /// [default: /ip4/127.0.0.1/tcp/0].
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "LIBP2P_NODE_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<Multiaddr>,
    /// Security on TCP and WebSocket [default: noise]; QUIC always uses TLS.
    #[arg(long, value_enum)]
    pub security: Option<Security>,
    /// Announce this address as the node's own (repeatable), e.g. a forwarded port.
    #[arg(long, value_name = "MULTIADDR")]
    pub external_address: Vec<Multiaddr>,
    /// A bootstrap peer, `<address>/p2p/<peer id>` (repeatable): dialed at start and whenever
    /// the node has lost every connection.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "LIBP2P_NODE_BOOTSTRAP",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<Multiaddr>,
    /// Dial this address (repeatable). With /p2p/<peer id> the manager keeps the peer
    /// (redialed when lost); without, it is dialed once.
    #[arg(long, value_name = "MULTIADDR")]
    pub dial: Vec<Multiaddr>,
    /// Keep the identity in this file: an ed25519 keypair, protobuf-encoded. Created (mode
    /// 0600) if missing.
    #[arg(long, value_name = "PATH", env = "LIBP2P_NODE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Serve the admin API, the status page, `/metrics` (feature `metrics`) and `/healthz` on
    /// this address, e.g. 127.0.0.1:5001 (port 0 picks one). `--metrics` is another name.
    /// `node ctl` reads the same LIBP2P_NODE_ADMIN.
    #[arg(long, value_name = "ADDR", visible_alias = "metrics", env = "LIBP2P_NODE_ADMIN",
          value_parser = parse_admin_address)]
    pub admin: Option<SocketAddr>,
    /// Take commands (POST) on the admin API from any address, not only loopback.
    #[arg(long)]
    pub admin_allow_remote: bool,
    /// Print a status table every SECS seconds; 0 disables it [default: 10].
    #[arg(long, value_name = "SECS", env = "LIBP2P_NODE_STATUS_INTERVAL")]
    pub status_interval: Option<u64>,
    /// Print events (and the startup lines) as JSON objects, one a line, for log collectors.
    #[arg(long)]
    pub json: bool,
    /// Limit on established connections, inbound and outbound together.
    #[arg(long, value_name = "N")]
    pub max_established: Option<u32>,
    /// Limit on established inbound connections.
    #[arg(long, value_name = "N")]
    pub max_established_incoming: Option<u32>,
    /// Limit on established outbound connections.
    #[arg(long, value_name = "N")]
    pub max_established_outgoing: Option<u32>,
    /// Limit on connections in their handshake, for inbound and for outbound each.
    #[arg(long, value_name = "N")]
    pub max_pending: Option<u32>,
    /// Connections to one peer at most (the duplicate during a tie-break counts).
    #[arg(long, value_name = "N")]
    pub max_established_per_peer: Option<u32>,
    /// Inbound connections from one IP address at most.
    #[arg(long, value_name = "N")]
    pub max_incoming_per_ip: Option<u32>,
    /// Inbound connection rate per IP address: a bucket of BURST, one more every MS.
    #[arg(long, value_name = "BURST/MS", value_parser = parse_rate)]
    pub incoming_rate_per_ip: Option<Rate>,
    /// Trim connected peers down to this many once they exceed the high watermark.
    #[arg(long, value_name = "N", requires = "high_watermark")]
    pub low_watermark: Option<usize>,
    /// Trim when more peers than this are connected.
    #[arg(long, value_name = "N", requires = "low_watermark")]
    pub high_watermark: Option<usize>,
    /// Exempt this peer from limits and trimming (repeatable).
    #[arg(long, value_name = "PEER_ID")]
    pub allow: Vec<PeerId>,
    /// Ban a peer id, IP address or network at start (repeatable), until unbanned or, with
    /// `=SECS`, for that long. With --store the ban outlives restarts.
    #[arg(long, value_name = "TARGET[=SECS]", value_parser = parse_ban)]
    pub ban: Vec<BanEntry>,
    /// Exchange peer lists with peers that run the manager.
    #[arg(long)]
    pub peer_exchange: bool,
    /// Dial the peers that exchanged lists and other behaviours name.
    #[arg(long)]
    pub auto_connect: bool,
    /// Keep bans, wanted peers, addresses and tags in this file across restarts (a redb
    /// database, created if missing). Needs `--features redb`.
    #[arg(long, value_name = "PATH", env = "LIBP2P_NODE_STORE")]
    pub store: Option<PathBuf>,
    /// If the --store file is damaged or of another format, set it aside (renamed to
    /// `<file>.bad-<time>`) and start with an empty store, instead of refusing to start.
    #[arg(long)]
    pub fresh_store: bool,
    /// Hand the changes to the --store file every MS milliseconds [default: 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub store_flush_ms: Option<u64>,
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
    /// `ban <peer id|network> [secs]` (until unbanned without secs), `unban <peer id|network>`,
    /// `disconnect <peer id>`, `protect <peer id> [tag]`, `unprotect <peer id> [tag]`, `trim`,
    /// `tag <peer id> <tag> <value>`, `address <peer id> <multiaddr>` (remember a dial address),
    /// `flush [label]` (write the changes to the store and wait; prints `peer store flushed
    /// <label>`), `status` (the status table now). Commands on one line, `;` between them, are
    /// applied together: the store gets them in one batch. The admin API takes the same.
    #[arg(long)]
    pub stdin_commands: bool,
}

/// `HOST:PORT`, also written `http://HOST:PORT/` (as `node ctl` takes it).
fn parse_admin_address(text: &str) -> Result<SocketAddr, String> {
    let bare = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    bare.parse().map_err(|e| format!("{text}: {e}"))
}

/// `BURST/MS`.
fn parse_rate(text: &str) -> Result<Rate, String> {
    let (burst, ms) = text
        .split_once('/')
        .ok_or("expected BURST/MS, e.g. 10/1000")?;
    Ok(Rate {
        burst: burst.parse().map_err(|e| format!("burst {burst}: {e}"))?,
        refill_ms: ms.parse().map_err(|e| format!("milliseconds {ms}: {e}"))?,
    })
}

/// `TARGET` or `TARGET=SECS`; the target is checked with the rest of the config.
fn parse_ban(text: &str) -> Result<BanEntry, String> {
    let (target, seconds) = match text.split_once('=') {
        Some((target, secs)) => (
            target,
            Some(secs.parse().map_err(|e| format!("{secs}: {e}"))?),
        ),
        None => (text, None),
    };
    Ok(BanEntry {
        target: target.to_owned(),
        seconds,
    })
}

impl NodeArgs {
    /// `base` (the `--config` file's settings) with the flags laid over it.
    pub fn apply_to(self, mut base: NodeConfig) -> NodeConfig {
        fn over<T>(slot: &mut Option<T>, value: Option<T>) {
            if value.is_some() {
                *slot = value;
            }
        }
        let node = &mut base.node;
        if !self.listen.is_empty() {
            node.listen = self.listen;
        }
        if let Some(security) = self.security {
            node.security = security;
        }
        node.external_addresses.extend(self.external_address);
        over(&mut node.key_file, self.key_file);
        over(&mut node.admin, self.admin);
        node.admin_allow_remote |= self.admin_allow_remote;
        over(&mut node.status_interval_secs, self.status_interval);
        node.json |= self.json;
        let limits = &mut base.limits;
        over(&mut limits.max_established, self.max_established);
        over(
            &mut limits.max_established_incoming,
            self.max_established_incoming,
        );
        over(
            &mut limits.max_established_outgoing,
            self.max_established_outgoing,
        );
        over(&mut limits.max_pending_incoming, self.max_pending);
        over(&mut limits.max_pending_outgoing, self.max_pending);
        over(
            &mut limits.max_established_per_peer,
            self.max_established_per_peer,
        );
        over(&mut limits.max_incoming_per_ip, self.max_incoming_per_ip);
        over(&mut limits.incoming_rate_per_ip, self.incoming_rate_per_ip);
        over(&mut base.trim.low_watermark, self.low_watermark);
        over(&mut base.trim.high_watermark, self.high_watermark);
        let peers = &mut base.peers;
        peers.bootstrap.extend(self.bootstrap);
        peers.dial.extend(self.dial);
        peers.allow.extend(self.allow);
        peers.bans.extend(self.ban);
        if self.auto_connect {
            peers.auto_connect = Some(true);
            base.exchange.auto_connect = true;
        }
        base.exchange.enabled |= self.peer_exchange;
        over(&mut base.store.path, self.store);
        base.store.fresh |= self.fresh_store;
        over(&mut base.store.flush_ms, self.store_flush_ms);
        let live = &mut base.liveness;
        over(&mut live.ping_interval_secs, self.ping_interval);
        over(&mut live.ping_timeout_secs, self.ping_timeout);
        over(&mut live.inactivity_timeout_secs, self.inactivity_timeout);
        if base.node.listen.is_empty() {
            base.node.listen.push(
                Multiaddr::from(std::net::Ipv4Addr::LOCALHOST)
                    .with(libp2p::multiaddr::Protocol::Tcp(0)),
            );
        }
        base
    }
}
