//! The node's configuration: a TOML file (`--config`), overridden by flags and environment
//! variables (`cli.rs`), turned into the manager's [`manager::Config`].
//!
//! Unset values keep the library's defaults, which the node prints at start beside what was
//! set (`effective manager config: ...`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use libp2p_connection_manager::{self as manager, BanTarget, PeerExchange, RateLimit};
use serde::{Deserialize, Serialize};

use crate::commands::parse_ban_target;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{feature} needs the example built with the {feature} feature: cargo run --example node --features {feature}")]
    Feature { feature: &'static str },
    #[error(transparent)]
    Manager(#[from] manager::ConfigError),
}

/// Security on TCP (and WebSocket): noise or TLS. QUIC always uses TLS 1.3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Noise,
    Tls,
}

/// Everything the node can be told, as the TOML file spells it. Every section and key is
/// optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub limits: LimitsSection,
    pub trim: TrimSection,
    pub liveness: LivenessSection,
    pub peers: PeersSection,
    pub exchange: ExchangeSection,
    pub store: StoreSection,
}

/// `[node]`: identity, transports, addresses, the admin API, output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Listen addresses: `/ip4/.../tcp/N`, `/ip4/.../udp/N/quic-v1`, `/ip4/.../tcp/N/ws`.
    pub listen: Vec<Multiaddr>,
    /// Security on TCP and WebSocket.
    pub security: Security,
    /// Addresses announced to peers as this node's own (behind NAT, port forwarding).
    pub external_addresses: Vec<Multiaddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    pub admin_allow_remote: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_interval_secs: Option<u64>,
    /// Event lines as JSON objects on stdout.
    pub json: bool,
}

/// `[limits]`: connection limits. Unset: the library's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_established: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_established_incoming: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_established_outgoing: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_incoming: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_outgoing: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_established_per_peer: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_incoming_per_ip: Option<u32>,
    /// Inbound connections per IP: a bucket of `burst`, one more every `refill_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming_rate_per_ip: Option<Rate>,
    /// Whether loopback addresses escape the per-IP limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loopback_exempt: Option<bool>,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    pub refill_ms: u64,
}

/// `[trim]`: the watermarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrimSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_watermark: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
}

/// `[liveness]`: pings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_interval_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout_secs: Option<u64>,
}

/// `[peers]`: whom to dial, allow and ban.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersSection {
    /// `<address>/p2p/<peer id>`: dialed at start and whenever every connection is lost.
    pub bootstrap: Vec<Multiaddr>,
    /// Dialed at start; kept with `/p2p/<peer id>`, once without.
    pub dial: Vec<Multiaddr>,
    /// Peers exempt from limits and trimming.
    pub allow: Vec<PeerId>,
    /// Bans placed at start.
    pub bans: Vec<BanEntry>,
    /// Dial peers whose addresses other behaviours report (identify, kad).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_connect: Option<bool>,
}

/// A ban placed at start: a peer id, IP address or network; until unbanned without `seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanEntry {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
}

/// `[exchange]`: peer exchange between nodes that run the manager.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeSection {
    pub enabled: bool,
    /// Dial the peers the lists name.
    pub auto_connect: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers: Option<usize>,
}

/// `[store]`: the peer store (feature `redb`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Set a damaged store aside instead of refusing to start.
    pub fresh: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_ms: Option<u64>,
}

impl NodeConfig {
    /// Reads a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The configuration as TOML, as a `--config` file would hold it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|error| format!("# cannot print: {error}\n"))
    }

    /// The bootstrap peers, each split into its peer id and address.
    pub fn bootstrap_peers(&self) -> Result<Vec<(PeerId, Multiaddr)>, ConfigError> {
        self.peers
            .bootstrap
            .iter()
            .map(|address| {
                split_peer_address(address).ok_or_else(|| ConfigError::Invalid {
                    field: "bootstrap",
                    reason: format!("{address} must end in /p2p/<peer id>"),
                })
            })
            .collect()
    }

    /// The bans placed at start.
    pub fn start_bans(&self) -> Result<Vec<(BanTarget, Option<Duration>)>, ConfigError> {
        self.peers
            .bans
            .iter()
            .map(|ban| {
                let target = parse_ban_target(&ban.target).map_err(|e| ConfigError::Invalid {
                    field: "ban",
                    reason: e.to_string(),
                })?;
                Ok((target, ban.seconds.map(Duration::from_secs)))
            })
            .collect()
    }

    /// Refuses what the library cannot check: features the build lacks.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.store.path.is_some() && !cfg!(feature = "redb") {
            return Err(ConfigError::Feature { feature: "redb" });
        }
        self.bootstrap_peers()?;
        self.start_bans()?;
        Ok(())
    }

    /// The manager's configuration; the library validates it (`Behaviour::try_new`).
    pub fn manager_config(&self) -> Result<manager::Config, ConfigError> {
        let l = &self.limits;
        let defaults = manager::Limits::new();
        let set = |value: Option<u32>, default: Option<u32>| value.or(default);
        let mut limits = manager::Limits::new()
            .with_max_established(set(l.max_established, defaults.max_established()))
            .with_max_established_incoming(set(
                l.max_established_incoming,
                defaults.max_established_incoming(),
            ))
            .with_max_established_outgoing(set(
                l.max_established_outgoing,
                defaults.max_established_outgoing(),
            ))
            .with_max_pending_incoming(set(l.max_pending_incoming, defaults.max_pending_incoming()))
            .with_max_pending_outgoing(set(
                l.max_pending_outgoing,
                defaults.max_pending_outgoing(),
            ));
        if let Some(max) = l.max_incoming_per_ip {
            limits = limits.with_max_incoming_per_ip(Some(max));
        }
        if let Some(rate) = l.incoming_rate_per_ip {
            let rate = RateLimit::new(rate.burst, Duration::from_millis(rate.refill_ms));
            limits = limits.with_incoming_rate_per_ip(Some(rate));
        }
        if let Some(exempt) = l.loopback_exempt {
            limits = limits.with_loopback_exempt(exempt);
        }
        let mut config = manager::Config::default().with_limits(limits);
        if let Some(max) = l.max_established_per_peer {
            config = config.with_max_established_per_peer(max);
        }
        for (peer, address) in self.bootstrap_peers()? {
            config = config.with_bootstrap_peer(peer, address);
        }
        for peer in &self.peers.allow {
            config = config.with_exempt_peer(*peer);
        }
        if let Some(auto) = self.peers.auto_connect {
            config = config.with_auto_connect_learned_peers(auto);
        }
        match (self.trim.low_watermark, self.trim.high_watermark) {
            (Some(low), Some(high)) => config = config.with_watermarks(low, high),
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid {
                    field: "watermarks",
                    reason: "set both the low and the high watermark, or neither".into(),
                })
            }
        }
        if let Some(secs) = self.trim.grace_secs {
            config = config.with_trim_grace(Duration::from_secs(secs));
        }
        let live = &self.liveness;
        if let Some(secs) = live.ping_interval_secs {
            config = config.with_ping_interval(Duration::from_secs(secs));
        }
        if let Some(secs) = live.ping_timeout_secs {
            config = config.with_ping_timeout(Duration::from_secs(secs));
        }
        if let Some(secs) = live.inactivity_timeout_secs {
            config = config.with_inactivity_timeout(Some(Duration::from_secs(secs)));
        }
        if self.exchange.enabled {
            let mut exchange = PeerExchange::new().with_auto_connect(self.exchange.auto_connect);
            if let Some(secs) = self.exchange.interval_secs {
                exchange = exchange.with_interval(Duration::from_secs(secs));
            }
            if let Some(max) = self.exchange.max_peers {
                exchange = exchange.with_max_peers(max);
            }
            config = config.with_peer_exchange(Some(exchange));
        }
        config.validate()?;
        Ok(config)
    }
}

/// `<address>/p2p/<peer id>` into the peer and the address without its `/p2p` part.
pub fn split_peer_address(address: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut address = address.clone();
    match address.pop() {
        Some(Protocol::P2p(peer)) if !address.is_empty() => Some((peer, address)),
        _ => None,
    }
}
