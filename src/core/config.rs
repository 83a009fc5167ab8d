//! Configuration of the connection manager.

use std::time::Duration;

use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;

use super::{AutomaticBans, Backoff, HealthScoring, Limits, PeerExchange, Watermarks};

/// The default low watermark: go-libp2p's connection manager's (js-libp2p keeps up to 300
/// connections; a node that needs more says so).
const DEFAULT_LOW_WATERMARK: usize = 160;
/// The default high watermark.
const DEFAULT_HIGH_WATERMARK: usize = 192;

/// Configuration of the connection manager.
///
/// Start from [`Config::new`] (or `Default`), whose documented defaults suit most nodes, and change
/// what you need with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) goodbye_timeout: Duration,
    pub(crate) duplicate_grace: Duration,
    pub(crate) max_established_per_peer: u32,
    pub(crate) keep_alive: bool,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) inactivity_timeout: Option<Duration>,
    pub(crate) health_scoring: HealthScoring,
    pub(crate) degraded_grace: Option<Duration>,
    pub(crate) dial_timeout: Duration,
    pub(crate) prompt_redial_delay: Duration,
    pub(crate) timeout_backoff: Backoff,
    pub(crate) violation_backoff: Backoff,
    pub(crate) closed_backoff: Backoff,
    pub(crate) bootstrap_backoff: Backoff,
    pub(crate) bootstrap_jitter: Duration,
    pub(crate) max_redial_attempts: Option<u32>,
    pub(crate) max_rescue_dials: u32,
    pub(crate) stable_after: Duration,
    pub(crate) new_port_for_redials: bool,
    pub(crate) max_addresses_per_peer: usize,
    pub(crate) bootstrap_peers: Vec<(PeerId, Multiaddr)>,
    pub(crate) limits: Limits,
    pub(crate) exempt_peers: Vec<PeerId>,
    pub(crate) violation_ban: Option<ViolationBan>,
    pub(crate) automatic_bans: AutomaticBans,
    pub(crate) learn_peer_addresses: bool,
    pub(crate) auto_connect_learned_peers: bool,
    pub(crate) max_discovered_peers: usize,
    pub(crate) watermarks: Option<Watermarks>,
    pub(crate) trim_grace: Duration,
    pub(crate) trim_silence: Duration,
    pub(crate) peer_exchange: Option<PeerExchange>,
}

/// When repeated protocol violations turn into a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ViolationBan {
    pub(crate) threshold: u32,
    pub(crate) window: Duration,
    pub(crate) duration: Duration,
}

impl Config {
    /// A configuration with these defaults:
    ///
    /// | setting | default |
    /// |---|---|
    /// | [`with_goodbye_timeout`](Self::with_goodbye_timeout) | 2 s |
    /// | [`with_duplicate_grace`](Self::with_duplicate_grace) | 5 s |
    /// | [`with_max_established_per_peer`](Self::with_max_established_per_peer) | 3 |
    /// | [`with_keep_alive`](Self::with_keep_alive) | `true` |
    /// | [`with_ping_interval`](Self::with_ping_interval) | 15 s |
    /// | [`with_ping_timeout`](Self::with_ping_timeout) | 20 s |
    /// | [`with_inactivity_timeout`](Self::with_inactivity_timeout) | 60 s |
    /// | [`with_health_scoring`](Self::with_health_scoring) | [`HealthScoring::new`] |
    /// | [`with_degraded_grace`](Self::with_degraded_grace) | 120 s |
    /// | [`with_dial_timeout`](Self::with_dial_timeout) | 30 s |
    /// | [`with_prompt_redial_delay`](Self::with_prompt_redial_delay) | 200 ms |
    /// | [`with_timeout_backoff`](Self::with_timeout_backoff) | 1 s, x2, up to 2 min, +-20% |
    /// | [`with_violation_backoff`](Self::with_violation_backoff) | 30 s, x2, up to 30 min, +-20% |
    /// | [`with_closed_backoff`](Self::with_closed_backoff) | 10 s, x2, up to 10 min, +-20% |
    /// | [`with_bootstrap_backoff`](Self::with_bootstrap_backoff) | 1 s, x2, up to 1 min, +-20% |
    /// | [`with_bootstrap_jitter`](Self::with_bootstrap_jitter) | 1 s |
    /// | [`with_max_redial_attempts`](Self::with_max_redial_attempts) | `None` (no limit) |
    /// | [`with_max_rescue_dials`](Self::with_max_rescue_dials) | 2 |
    /// | [`with_stable_after`](Self::with_stable_after) | 10 s |
    /// | [`with_new_port_for_redials`](Self::with_new_port_for_redials) | `true` |
    /// | [`with_max_addresses_per_peer`](Self::with_max_addresses_per_peer) | 8 |
    /// | [`with_bootstrap_peer`](Self::with_bootstrap_peer) | none |
    /// | [`with_limits`](Self::with_limits) | [`Limits::new`] |
    /// | [`with_exempt_peer`](Self::with_exempt_peer) | none |
    /// | [`with_violation_ban`](Self::with_violation_ban) | 3 violations in 10 min: banned 1 h |
    /// | [`with_automatic_bans`](Self::with_automatic_bans) | [`AutomaticBans::new`] |
    /// | [`with_learn_peer_addresses`](Self::with_learn_peer_addresses) | `true` |
    /// | [`with_auto_connect_learned_peers`](Self::with_auto_connect_learned_peers) | `false` |
    /// | [`with_max_discovered_peers`](Self::with_max_discovered_peers) | 1024 |
    /// | [`with_watermarks`](Self::with_watermarks) | low 160, high 192 (go-libp2p's connection manager's defaults; [`without_watermarks`](Self::without_watermarks) turns trimming off) |
    /// | [`with_trim_grace`](Self::with_trim_grace) | 30 s |
    /// | [`with_trim_silence`](Self::with_trim_silence) | 10 s |
    /// | [`with_peer_exchange`](Self::with_peer_exchange) | `None` (off) |
    pub fn new() -> Self {
        Self {
            goodbye_timeout: Duration::from_secs(2),
            duplicate_grace: Duration::from_secs(5),
            max_established_per_peer: 3,
            keep_alive: true,
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(20),
            inactivity_timeout: Some(Duration::from_secs(60)),
            health_scoring: HealthScoring::new(),
            degraded_grace: Some(Duration::from_secs(120)),
            dial_timeout: Duration::from_secs(30),
            prompt_redial_delay: Duration::from_millis(200),
            timeout_backoff: Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(120)),
            violation_backoff: Backoff::new(
                Duration::from_secs(30),
                2.0,
                Duration::from_secs(30 * 60),
            ),
            closed_backoff: Backoff::new(Duration::from_secs(10), 2.0, Duration::from_secs(600)),
            bootstrap_backoff: Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60)),
            bootstrap_jitter: Duration::from_secs(1),
            max_redial_attempts: None,
            max_rescue_dials: 2,
            stable_after: Duration::from_secs(10),
            new_port_for_redials: true,
            max_addresses_per_peer: 8,
            bootstrap_peers: Vec::new(),
            limits: Limits::new(),
            exempt_peers: Vec::new(),
            violation_ban: Some(ViolationBan {
                threshold: 3,
                window: Duration::from_secs(600),
                duration: Duration::from_secs(3600),
            }),
            automatic_bans: AutomaticBans::new(),
            learn_peer_addresses: true,
            auto_connect_learned_peers: false,
            max_discovered_peers: 1024,
            watermarks: Some(Watermarks {
                low: DEFAULT_LOW_WATERMARK,
                high: DEFAULT_HIGH_WATERMARK,
            }),
            trim_grace: Duration::from_secs(30),
            trim_silence: Duration::from_secs(10),
            peer_exchange: None,
        }
    }

    /// How long sending a goodbye may take before the connection is closed anyway.
    pub fn with_goodbye_timeout(mut self, timeout: Duration) -> Self {
        self.goodbye_timeout = timeout;
        self
    }

    /// How long the listening side tolerates a second connection that the same remote dialed
    /// before closing the newer one itself. A remote running this crate closes it at once; the
    /// grace only matters for remotes that do not.
    pub fn with_duplicate_grace(mut self, grace: Duration) -> Self {
        self.duplicate_grace = grace;
        self
    }

    /// Hard cap on established connections to one peer, duplicates included (at least 1:
    /// [`validate`](Self::validate) refuses 0). Bounds what a misbehaving remote can open
    /// while duplicates settle. Named as connection-limits' `with_max_established_per_peer`,
    /// but do not set it to 1: a second connection must be allowed for the tie-break to run.
    pub fn with_max_established_per_peer(mut self, max: u32) -> Self {
        self.max_established_per_peer = max;
        self
    }

    /// Whether the manager keeps the connections it manages alive. With `true` (the default)
    /// closing is the manager's decision (disconnect, limits, health) and idle connections do
    /// not die of the swarm's idle timeout. With `false`, idle closing is left to the swarm.
    pub fn with_keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Interval between pings on every connection.
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long one ping may take before it counts as failed.
    pub fn with_ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Closes a connection with reason `Timeout` when no ping succeeded on it for this long
    /// (`None`: never). Keep it above the ping interval plus the ping timeout. A peer that does
    /// not speak ping (or never answers) never proves liveness: with keep-alive on, it is
    /// closed this long after it connected, so it cannot hold a slot for ever; with keep-alive
    /// off it is exempt (the swarm's idle timeout governs it).
    pub fn with_inactivity_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.inactivity_timeout = timeout;
        self
    }

    /// How RTT, ping reliability and bandwidth become a health score (see [`HealthScoring`]).
    pub fn with_health_scoring(mut self, scoring: HealthScoring) -> Self {
        self.health_scoring = scoring;
        self
    }

    /// Replaces a connection whose health stays Critical for this long: it is closed (goodbye
    /// `NetworkRestructure`) and the peer dialed again at once (`None`: never).
    pub fn with_degraded_grace(mut self, grace: Option<Duration>) -> Self {
        self.degraded_grace = grace;
        self
    }

    /// How long the manager waits for a dial to a known peer to succeed before it reports the
    /// dial as timed out and plans the next attempt.
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The delay of a "prompt" redial (after a duplicate was closed and none remains, after the
    /// remote said goodbye `Normal`, or to rescue a failed dial). Short, but not zero, so that a
    /// connection still completing its handshake can land first. Jittered by +-50%.
    pub fn with_prompt_redial_delay(mut self, delay: Duration) -> Self {
        self.prompt_redial_delay = delay;
        self
    }

    /// Backoff between redials after timeouts and transport failures.
    pub fn with_timeout_backoff(mut self, backoff: Backoff) -> Self {
        self.timeout_backoff = backoff;
        self
    }

    /// Backoff between redials after a protocol violation.
    pub fn with_violation_backoff(mut self, backoff: Backoff) -> Self {
        self.violation_backoff = backoff;
        self
    }

    /// Backoff between redials of a wanted peer that closed our connection cleanly without a
    /// goodbye ([`DisconnectReason::Closed`](crate::DisconnectReason::Closed)): a remote
    /// without this crate hanging up, or its connection manager pruning us. Longer than the
    /// timeout backoff so that a pruning remote is not redialed into its next prune.
    pub fn with_closed_backoff(mut self, backoff: Backoff) -> Self {
        self.closed_backoff = backoff;
        self
    }

    /// Backoff between bootstrap rounds while the node has no connection at all.
    pub fn with_bootstrap_backoff(mut self, backoff: Backoff) -> Self {
        self.bootstrap_backoff = backoff;
        self
    }

    /// The first bootstrap round waits a random delay below this window (zero: it runs at once).
    ///
    /// Nodes restarted together (a deployment, a power cut) would otherwise all dial the
    /// bootstrap peers in the same instant: with the window, a bootstrap peer sees at most about
    /// `nodes / window` dials per second from the first round, and each node dials it again only
    /// in its next round ([`with_bootstrap_backoff`](Self::with_bootstrap_backoff)), not sooner.
    /// The peers the application asks for ([`Behaviour::add_peer`](crate::Behaviour::add_peer))
    /// are dialed at once either way.
    pub fn with_bootstrap_jitter(mut self, window: Duration) -> Self {
        self.bootstrap_jitter = window;
        self
    }

    /// Gives up redialing a wanted peer after this many failed attempts in a row (`None`: never).
    pub fn with_max_redial_attempts(mut self, max: Option<u32>) -> Self {
        self.max_redial_attempts = max;
        self
    }

    /// How many prompt retries the manager makes for a failed dial to a peer it was not asked
    /// to keep (a dial from `Swarm::dial` or another behaviour). These rescue the dials that fail
    /// when two peers dial each other at the same moment (the TCP simultaneous open that breaks
    /// both handshakes). `0` disables the rescue.
    pub fn with_max_rescue_dials(mut self, max: u32) -> Self {
        self.max_rescue_dials = max;
        self
    }

    /// How long a connection must have lived for its loss to restart the redial backoff from
    /// the beginning. A remote that accepts and at once drops our connections (a ban or a
    /// limit on its side) is thus dialed ever more slowly, and counts toward
    /// [`with_max_redial_attempts`](Self::with_max_redial_attempts).
    pub fn with_stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// Whether the manager's own dials (redials, rescues, bootstrap) use a fresh local port
    /// instead of the listening port. The default, `true`, avoids the TCP simultaneous open in
    /// which two dials between the same two ports both fail.
    pub fn with_new_port_for_redials(mut self, new_port: bool) -> Self {
        self.new_port_for_redials = new_port;
        self
    }

    /// How many dial addresses the manager remembers per peer (at least 1).
    pub fn with_max_addresses_per_peer(mut self, max: usize) -> Self {
        self.max_addresses_per_peer = max.max(1);
        self
    }

    /// Adds a bootstrap peer: dialed soon after the node starts (within
    /// [`with_bootstrap_jitter`](Self::with_bootstrap_jitter)) unless another connection came
    /// first, and again (with [`with_bootstrap_backoff`](Self::with_bootstrap_backoff))
    /// whenever the node has lost every connection. After a failure the next round comes soon;
    /// after the last remote pushed the node away (trimmed it, refused it for resources,
    /// banned it, hung up on it) each round waits one step of the backoff longer.
    pub fn with_bootstrap_peer(mut self, peer: PeerId, address: Multiaddr) -> Self {
        self.bootstrap_peers.push((peer, address));
        self
    }

    /// The connection limits (see [`Limits`]); they can be changed at run time with
    /// [`Behaviour::set_limits`](crate::Behaviour::set_limits).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// A peer that bypasses the limits (never the bans).
    pub fn with_exempt_peer(mut self, peer: PeerId) -> Self {
        self.exempt_peers.push(peer);
        self
    }

    /// Bans a peer for `duration` once it committed `threshold` protocol violations (for
    /// example malformed frames; one per connection at most) within `window`. `threshold` 0
    /// disables the escalation, for networks too (see
    /// [`with_automatic_bans`](Self::with_automatic_bans)).
    pub fn with_violation_ban(
        mut self,
        threshold: u32,
        window: Duration,
        duration: Duration,
    ) -> Self {
        self.violation_ban = (threshold > 0).then_some(ViolationBan {
            threshold,
            window,
            duration,
        });
        self
    }

    /// How many automatic (violation) bans are held, and when violations from one network ban
    /// it (see [`AutomaticBans`]). Only the application's bans are written to a peer store.
    pub fn with_automatic_bans(mut self, bans: AutomaticBans) -> Self {
        self.automatic_bans = bans;
        self
    }

    /// Whether addresses other behaviours report for a peer (`NewExternalAddrOfPeer`, e.g. from
    /// identify or Kademlia) are learned as dial addresses of peers the manager tracks.
    pub fn with_learn_peer_addresses(mut self, learn: bool) -> Self {
        self.learn_peer_addresses = learn;
        self
    }

    /// Whether a peer first heard of through `NewExternalAddrOfPeer` is added as discovered
    /// (wanted and dialed). Off by default: a Kademlia node hears of many peers.
    pub fn with_auto_connect_learned_peers(mut self, auto_connect: bool) -> Self {
        self.auto_connect_learned_peers = auto_connect;
        self
    }

    /// How many peers discovery (or auto-connect) may add; more are only remembered as
    /// addresses of peers already tracked.
    pub fn with_max_discovered_peers(mut self, max: usize) -> Self {
        self.max_discovered_peers = max;
        self
    }

    /// Trims connections when more than `high` peers are connected, down to `low` (default 160
    /// and 192, as go-libp2p's connection manager). Who goes first, and who is never trimmed,
    /// is in the README's "Trimming" table: young connections and peers the application dialed,
    /// protected or allow-listed are never trimmed, a share chosen for diversity is kept, and
    /// the rest goes from the biggest network group first. `low` above `high` is refused by
    /// [`validate`](Self::validate).
    pub fn with_watermarks(mut self, low: usize, high: usize) -> Self {
        self.watermarks = Some(Watermarks { low, high });
        self
    }

    /// No trimming at all: connections are bounded only by the limits.
    pub fn without_watermarks(mut self) -> Self {
        self.watermarks = None;
        self
    }

    /// Connections younger than this are never trimmed.
    pub fn with_trim_grace(mut self, grace: Duration) -> Self {
        self.trim_grace = grace;
        self
    }

    /// The least time between two trims, so the count does not saw-tooth under a burst of new
    /// connections; a trim that falls due sooner waits until the silence ends.
    /// [`Behaviour::force_trim`](crate::Behaviour::force_trim) ignores it.
    pub fn with_trim_silence(mut self, silence: Duration) -> Self {
        self.trim_silence = silence;
        self
    }

    /// Turns on peer exchange: when a connection is kept, and (rate limited) when the set of
    /// connected peers changes, each side tells the other the peers it is connected to, with
    /// addresses the other can plausibly reach (never banned peers). Received peers are
    /// hearsay, not discovery: vetted, budgeted, and never above what the node saw itself or
    /// what the application asked for (see [`PeerExchange`]). A list whose protobuf is broken
    /// is a protocol violation; what does not parse or fit is dropped without holding it
    /// against the sender.
    pub fn with_peer_exchange(mut self, exchange: Option<PeerExchange>) -> Self {
        self.peer_exchange = exchange;
        self
    }

    /// The goodbye timeout.
    pub fn goodbye_timeout(&self) -> Duration {
        self.goodbye_timeout
    }

    /// The automatic-ban settings.
    pub fn automatic_bans(&self) -> &AutomaticBans {
        &self.automatic_bans
    }

    /// The per-peer connection cap.
    pub fn max_established_per_peer(&self) -> u32 {
        self.max_established_per_peer
    }
}

/// A configuration the manager refuses to run with (see [`Config::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration is longer than [`Config::MAX_DURATION`]: delays are computed in floating
    /// point with jitter, and such values cannot be represented once jittered.
    #[error("{setting} is {value:?}, longer than the largest allowed duration ({max:?})")]
    DurationTooLong {
        /// The setting, by the name of its `with_*` method.
        setting: &'static str,
        /// The value it was given.
        value: Duration,
        /// [`Config::MAX_DURATION`].
        max: Duration,
    },
    /// The low watermark is above the high one: trimming down to `low` would leave more than
    /// `high` connected.
    #[error("low watermark {low} is above the high watermark {high}")]
    WatermarksInverted {
        /// The low watermark.
        low: usize,
        /// The high watermark.
        high: usize,
    },
    /// A setting is zero where that cannot work (the per-peer cap, the ping interval, see
    /// also [`PeerExchange`]).
    #[error("{setting} must not be zero")]
    Zero {
        /// The setting, by the name of its `with_*` method.
        setting: &'static str,
    },
    /// The inactivity timeout ends before the first ping could have succeeded (ping interval
    /// plus ping timeout): every connection would be closed as `Timeout` before it could prove
    /// that it is alive.
    #[error(
        "inactivity timeout {inactivity:?} is shorter than ping interval {ping_interval:?} \
         plus ping timeout {ping_timeout:?}"
    )]
    InactivityBeforeFirstPing {
        /// [`Config::with_inactivity_timeout`].
        inactivity: Duration,
        /// [`Config::with_ping_interval`].
        ping_interval: Duration,
        /// [`Config::with_ping_timeout`].
        ping_timeout: Duration,
    },
}

impl Config {
    /// The longest duration any setting may have: a century. Longer means "never" in
    /// practice; use the `None` of a setting that has one.
    pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

    /// Checks the configuration: every duration at most [`MAX_DURATION`](Self::MAX_DURATION)
    /// (backoffs included, initial and maximum). [`Behaviour::try_new`](crate::Behaviour::try_new)
    /// and `Manager::try_new` refuse a configuration that
    /// fails it; `new` takes it anyway and never panics (longer delays saturate), but a delay
    /// beyond a century is not what anyone meant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(Watermarks { low, high }) = self.watermarks {
            if low > high {
                return Err(ConfigError::WatermarksInverted { low, high });
            }
        }
        if self.max_established_per_peer == 0 {
            return Err(ConfigError::Zero {
                setting: "with_max_established_per_peer",
            });
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::Zero {
                setting: "with_ping_interval",
            });
        }
        if let Some(inactivity) = self.inactivity_timeout {
            let first_ping = self.ping_interval.saturating_add(self.ping_timeout);
            if inactivity < first_ping {
                return Err(ConfigError::InactivityBeforeFirstPing {
                    inactivity,
                    ping_interval: self.ping_interval,
                    ping_timeout: self.ping_timeout,
                });
            }
        }
        let mut durations = vec![
            ("with_goodbye_timeout", Some(self.goodbye_timeout)),
            ("with_duplicate_grace", Some(self.duplicate_grace)),
            ("with_ping_interval", Some(self.ping_interval)),
            ("with_ping_timeout", Some(self.ping_timeout)),
            ("with_inactivity_timeout", self.inactivity_timeout),
            ("with_degraded_grace", self.degraded_grace),
            ("with_dial_timeout", Some(self.dial_timeout)),
            ("with_prompt_redial_delay", Some(self.prompt_redial_delay)),
            ("with_stable_after", Some(self.stable_after)),
            ("with_trim_grace", Some(self.trim_grace)),
            ("with_trim_silence", Some(self.trim_silence)),
            ("with_bootstrap_jitter", Some(self.bootstrap_jitter)),
        ];
        for (setting, backoff) in [
            ("with_timeout_backoff", &self.timeout_backoff),
            ("with_violation_backoff", &self.violation_backoff),
            ("with_closed_backoff", &self.closed_backoff),
            ("with_bootstrap_backoff", &self.bootstrap_backoff),
        ] {
            durations.push((setting, Some(backoff.initial())));
            durations.push((setting, Some(backoff.max())));
        }
        if let Some(ban) = self.violation_ban {
            durations.push(("with_violation_ban", Some(ban.window)));
            durations.push(("with_violation_ban", Some(ban.duration)));
        }
        if let Some(exchange) = self.peer_exchange {
            exchange.validate()?;
            durations.push(("PeerExchange::with_interval", Some(exchange.interval)));
        }
        for (setting, value) in durations {
            if let Some(value) = value.filter(|v| *v > Self::MAX_DURATION) {
                return Err(ConfigError::DurationTooLong {
                    setting,
                    value,
                    max: Self::MAX_DURATION,
                });
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_with_a_typed_error() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(
            Config::default()
                .with_max_established_per_peer(0)
                .validate(),
            Err(ConfigError::Zero {
                setting: "with_max_established_per_peer"
            })
        );
        assert_eq!(
            Config::default()
                .with_ping_interval(Duration::ZERO)
                .validate(),
            Err(ConfigError::Zero {
                setting: "with_ping_interval"
            })
        );
        let (interval, timeout) = (Duration::from_secs(15), Duration::from_secs(10));
        let config = Config::default()
            .with_ping_interval(interval)
            .with_ping_timeout(timeout)
            .with_inactivity_timeout(Some(Duration::from_secs(20)));
        assert_eq!(
            config.validate(),
            Err(ConfigError::InactivityBeforeFirstPing {
                inactivity: Duration::from_secs(20),
                ping_interval: interval,
                ping_timeout: timeout,
            })
        );
        assert!(config
            .with_inactivity_timeout(Some(Duration::from_secs(25)))
            .validate()
            .is_ok());
        assert_eq!(
            Config::default().with_watermarks(10, 5).validate(),
            Err(ConfigError::WatermarksInverted { low: 10, high: 5 })
        );
    }
}
