//! Bans: what a ban does, when it ends, and what happens then.
//!
//! [`table`] stores them (peers and networks, application and automatic bans, the caps); this
//! file enforces them (goodbye `Banned`, refusals), schedules their end in one place
//! ([`Manager::sync_ban_expiry`]) for bans placed, restored or automatic, and revives the
//! wanted peers a ban stranded once it ends. Automatic bans come from `violations`.

mod table;

pub(crate) use table::{in_force, AutomaticBan, Bans};
pub use table::{Ban, BanTarget};

use super::*;

impl Manager {
    /// Bans `peer` for `duration` (`None`: until unbanned). Its connections get goodbye
    /// `Banned` and close; it is no longer wanted; dials to it and connections from it are
    /// refused, whatever address they use.
    pub fn ban_peer(&mut self, now: Instant, peer: PeerId, duration: Option<Duration>) {
        if peer == self.local {
            return;
        }
        self.insert_ban(now, BanTarget::Peer(peer), duration);
        self.enforce_peer_ban(now, peer, duration, true);
    }

    /// What a ban of `peer` does besides refusing it: it is no longer wanted, its connections
    /// get goodbye `Banned` (with `retry_after`) and close. `journal`: whether the peer's record
    /// is journaled even if it was not wanted (an automatic ban writes only what it changed).
    pub(super) fn enforce_peer_ban(
        &mut self,
        now: Instant,
        peer: PeerId,
        retry_after: Option<Duration>,
        journal: bool,
    ) {
        let was_wanted = self.intent(&peer).is_wanted();
        if self.peers.contains_key(&peer) {
            self.set_intent(peer, Intent::Parked);
        }
        if journal || was_wanted {
            self.note_peer(peer);
        }
        self.cancel_redial(peer);
        let open: Vec<ConnectionId> = self
            .peers
            .get(&peer)
            .map(|r| r.open().map(|c| c.id).collect())
            .unwrap_or_default();
        // The remote learns how long the ban lasts, and may come back then.
        for connection in open {
            self.start_close(now, peer, connection, DisconnectReason::Banned, retry_after);
        }
        self.forget_if_idle(peer);
    }

    /// Bans every address in `network` for `duration` (`None`: until unbanned). Connections
    /// from or to those addresses get goodbye `Banned` and close; new ones are refused before
    /// their handshake.
    ///
    /// A single IPv6 address stands for its /64 ([`BanTarget::host_scope`]): one host usually
    /// owns the whole /64, and banning the /128 alone is evaded by moving to the next address.
    pub fn ban_network(&mut self, now: Instant, network: IpNet, duration: Option<Duration>) {
        let network = BanTarget::host_scope(network);
        self.insert_ban(now, BanTarget::Network(network), duration);
        self.enforce_network_ban(now, network);
    }

    /// What a ban of `network` does besides refusing it: connections from or to it get
    /// goodbye `Banned` and close.
    pub(super) fn enforce_network_ban(&mut self, now: Instant, network: IpNet) {
        let inside: Vec<(PeerId, ConnectionId)> = self
            .peers
            .iter()
            .flat_map(|(peer, record)| record.open().map(move |c| (*peer, c)))
            .filter(|(_, c)| ip_of(&c.remote_addr).is_some_and(|ip| network.contains(&ip)))
            .map(|(peer, c)| (peer, c.id))
            .collect();
        for (peer, connection) in inside {
            self.cancel_redial(peer);
            self.start_close(now, peer, connection, DisconnectReason::Banned, None);
        }
    }

    /// Lifts a ban. Returns whether there was one.
    pub fn unban(&mut self, now: Instant, target: BanTarget) -> bool {
        let target = match target {
            BanTarget::Network(network) => BanTarget::Network(BanTarget::host_scope(network)),
            peer => peer,
        };
        let automatic = self.bans.is_automatic(target);
        if self.bans.remove(target).is_none() {
            return false;
        }
        self.timers.cancel(Timer::BanExpiry(target));
        // Automatic bans were never written.
        if !automatic {
            self.note_ban(target);
        }
        tracing::debug!(%target, "unbanned");
        self.push_event(Event::Unbanned {
            target,
            expired: false,
        });
        self.revive_stranded(now);
        true
    }

    /// After a ban ends, wanted peers whose dials it refused are dialed again (spread out).
    pub(super) fn revive_stranded(&mut self, now: Instant) {
        let stranded: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer, r)| {
                r.intent.is_wanted()
                    && !r.is_connected()
                    && r.pending_outbound == 0
                    && !self.timers.is_set(Timer::Redial(**peer))
                    && r.waiting.is_none()
                    && self.bans.peer(peer, now).is_none()
            })
            .map(|(peer, _)| *peer)
            .collect();
        let step = self.config.prompt_redial_delay;
        for (position, peer) in stranded.into_iter().enumerate() {
            let spread = step.saturating_mul(u32::try_from(position).unwrap_or(u32::MAX));
            self.plan_redial(now, peer, RedialPlan::Prompt, None, spread);
            // The plan may have given up on it (max_redial_attempts).
            self.forget_if_idle(peer);
        }
    }

    /// Every ban in force at `now`, with its expiry.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        let mut bans = self.bans.list();
        bans.retain(|ban| ban.until.is_none_or(|until| now < until));
        bans
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_peer_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.bans.peer(peer, now).is_some()
    }

    /// Whether `ip` falls in a network banned at `now`.
    pub fn is_ip_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.bans.ip(ip, now).is_some()
    }

    pub(super) fn check_peer_ban(&self, peer: PeerId, now: Instant) -> Result<(), Denial> {
        match self.bans.peer(&peer, now) {
            Some(until) => Err(Denial::PeerBanned {
                peer,
                remaining: until.map(|at| at.saturating_duration_since(now)),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn check_ip_ban(&self, ip: IpAddr, now: Instant) -> Result<(), Denial> {
        match self.bans.ip(ip, now) {
            Some((network, until)) => Err(Denial::IpBanned {
                ip,
                network,
                remaining: until.map(|at| at.saturating_duration_since(now)),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn on_ban_expired(&mut self, now: Instant, target: BanTarget) {
        match self.bans.get(target) {
            Some(Some(until)) if until <= now => {}
            _ => return,
        }
        let automatic = self.bans.is_automatic(target);
        self.bans.remove(target);
        if !automatic {
            self.note_ban(target);
        }
        tracing::debug!(%target, "ban expired");
        self.push_event(Event::Unbanned {
            target,
            expired: true,
        });
        self.revive_stranded(now);
    }

    /// Sets (or cancels) the expiry timer of `target` to match its ban: the one place a ban's
    /// end is scheduled, for bans placed by the application, restored, or automatic.
    pub(super) fn sync_ban_expiry(&mut self, target: BanTarget) {
        match self.bans.get(target) {
            Some(Some(until)) => self.timers.set(Timer::BanExpiry(target), until),
            _ => {
                self.timers.cancel(Timer::BanExpiry(target));
            }
        }
    }

    fn insert_ban(&mut self, now: Instant, target: BanTarget, duration: Option<Duration>) {
        // A ban too long to represent is a permanent one.
        let until = duration.and_then(|d| now.checked_add(d));
        self.bans.insert(target, until);
        self.sync_ban_expiry(target);
        self.note_ban(target.normalized());
        tracing::debug!(%target, ?duration, "banned");
        self.push_event(Event::Banned { target, until });
    }
}
