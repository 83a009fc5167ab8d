//! Trimming: above the high watermark, close connections down to the low watermark, keeping the
//! peers that matter.

use super::{
    eviction::{self, Asked, Candidate, NetGroup},
    *,
};
use crate::core::hashing::{Map, Set};

/// Watermarks and pacing of trimming (off unless [`Config::with_watermarks`] is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermarks {
    pub(crate) low: usize,
    pub(crate) high: usize,
}

/// What the application says about peers, for trimming: protection tags, and valued tags.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    protected: Map<PeerId, Set<String>>,
    values: Map<PeerId, Map<String, i64>>,
}

impl Tags {
    fn is_protected(&self, peer: &PeerId) -> bool {
        self.protected.contains_key(peer)
    }

    /// The protection tags of `peer`, sorted.
    pub(super) fn protected_tags(&self, peer: &PeerId) -> Vec<String> {
        let mut tags: Vec<String> = self
            .protected
            .get(peer)
            .map(|tags| tags.iter().cloned().collect())
            .unwrap_or_default();
        tags.sort_unstable();
        tags
    }

    /// The valued tags of `peer`, sorted by name.
    pub(super) fn valued_tags(&self, peer: &PeerId) -> Vec<(String, i64)> {
        let mut tags: Vec<(String, i64)> = self
            .values
            .get(peer)
            .map(|tags| tags.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        tags.sort_unstable();
        tags
    }

    fn value(&self, peer: &PeerId) -> i64 {
        self.values.get(peer).map_or(0, |tags| {
            tags.values().fold(0i64, |sum, v| sum.saturating_add(*v))
        })
    }
}

impl Manager {
    /// Protects `peer` from trimming under `tag` (a peer may hold several tags; it is protected
    /// while it holds any).
    pub fn protect(&mut self, peer: PeerId, tag: impl Into<String>) {
        self.tags
            .protected
            .entry(peer)
            .or_default()
            .insert(tag.into());
        self.note_peer(peer);
        self.sync_keep_alive(peer);
    }

    /// Removes one protection tag. Returns whether the peer is still protected by another.
    pub fn unprotect(&mut self, peer: &PeerId, tag: &str) -> bool {
        let Some(tags) = self.tags.protected.get_mut(peer) else {
            return false;
        };
        tags.remove(tag);
        let still = !tags.is_empty();
        self.note_peer(*peer);
        if !still {
            self.tags.protected.remove(peer);
            self.sync_keep_alive(*peer);
            return false;
        }
        true
    }

    /// Whether `peer` is protected from trimming.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        self.tags.is_protected(peer)
    }

    /// Gives `peer` a value under `tag` (replacing the tag's previous value). Trimming closes
    /// peers with the lowest total value first.
    pub fn tag_peer(&mut self, peer: PeerId, tag: impl Into<String>, value: i64) {
        self.tags
            .values
            .entry(peer)
            .or_default()
            .insert(tag.into(), value);
        self.note_peer(peer);
    }

    /// Removes a valued tag.
    pub fn untag_peer(&mut self, peer: &PeerId, tag: &str) {
        if let Some(tags) = self.tags.values.get_mut(peer) {
            tags.remove(tag);
            if tags.is_empty() {
                self.tags.values.remove(peer);
            }
            self.note_peer(*peer);
        }
    }

    /// The total value of `peer`'s tags.
    pub fn peer_value(&self, peer: &PeerId) -> i64 {
        self.tags.value(peer)
    }

    /// Trims now, ignoring the silence period. Returns the peers closed.
    pub fn force_trim(&mut self, now: Instant) -> Vec<PeerId> {
        self.trim(now)
    }

    /// A connection was established: trim if the count went above the high watermark, unless
    /// the last trim was less than the silence period ago (then trim when it ends).
    pub(super) fn maybe_trim(&mut self, now: Instant) {
        let Some(marks) = self.config.watermarks else {
            return;
        };
        if self.connected_peers <= marks.high || self.timers.is_set(Timer::Trim) {
            return;
        }
        let earliest = self
            .last_trim
            .map_or(now, |at| later(at, self.config.trim_silence));
        if earliest <= now {
            self.trim(now);
        } else {
            self.timers.set(Timer::Trim, earliest);
        }
    }

    pub(super) fn on_trim_due(&mut self, now: Instant) {
        let Some(marks) = self.config.watermarks else {
            return;
        };
        if self.connected_peers > marks.high {
            self.trim(now);
        }
    }

    /// Closes the connections of the first peers in trimming order (see [`eviction`]) until
    /// at most the low watermark of settled peers remain connected.
    ///
    /// Peers connected for less than the trim grace are neither trimmed nor counted: a burst
    /// of new peers cannot push settled ones out. If they keep the count above the high
    /// watermark, another trim is due when the first of them settles. Peers the application
    /// dialed, protected peers and allow-listed peers are counted but never trimmed.
    fn trim(&mut self, now: Instant) -> Vec<PeerId> {
        let Some(marks) = self.config.watermarks else {
            return Vec::new();
        };
        self.last_trim = Some(now);
        let grace = self.config.trim_grace;
        let bootstrap: Set<PeerId> = self
            .config
            .bootstrap_peers
            .iter()
            .map(|(p, _)| *p)
            .collect();
        let mut connected = 0usize;
        let mut young = 0usize;
        let mut first_settles: Option<Instant> = None;
        let mut kept_anyway = 0usize;
        let mut candidates = Vec::new();
        for (peer, record) in self.peers.iter() {
            let Some(kept) = record.open().min_by_key(|c| c.established_at) else {
                continue;
            };
            connected += 1;
            // Hearsay is nobody's ask: its peers go like strangers (`asked` below).
            let dialed = record.intent.is_applications();
            if dialed || self.tags.is_protected(peer) || self.allowed.contains(peer) {
                kept_anyway += 1;
                continue;
            }
            let settles = later(kept.established_at, grace);
            if settles > now {
                young += 1;
                first_settles = Some(first_settles.map_or(settles, |t| t.min(settles)));
                continue;
            }
            let asked = if record.intent.is_applications()
                || record.intent.is_discovery()
                || bootstrap.contains(peer)
            {
                Asked::Indirectly
            } else {
                Asked::No
            };
            candidates.push(Candidate {
                peer: *peer,
                asked,
                value: self.tags.value(peer),
                health: kept
                    .health
                    .assess(&self.config.health_scoring)
                    .map_or(0.5, |h| h.score),
                rtt: kept.rtt.map(Micros::duration),
                inbound: kept.initiator == Initiator::Remote,
                since: kept.established_at,
                group: NetGroup::of(&kept.remote_addr),
            });
        }
        let settled = connected - young;
        // A low above the high watermark is refused by `Config::validate`; `new` takes it, and
        // then trims to the high one.
        let low = marks.low.min(marks.high);
        let excess = settled.saturating_sub(low);
        let room = low.saturating_sub(kept_anyway);
        let trimmed = eviction::choose(candidates, excess, room);
        if let Some(at) = first_settles {
            if connected - trimmed.len() > marks.high && !self.timers.is_set(Timer::Trim) {
                let at = at.max(later(now, self.config.trim_silence));
                self.timers.set(Timer::Trim, at);
            }
        }
        if trimmed.is_empty() {
            return trimmed;
        }
        let mut no_longer_wanted = Vec::new();
        for peer in &trimmed {
            if self.close_trimmed(now, *peer) {
                no_longer_wanted.push(*peer);
            }
        }
        tracing::debug!(connected, young, trimmed = trimmed.len(), low, "trimmed");
        self.push_event(Event::Trimmed {
            peers: trimmed.clone(),
            no_longer_wanted,
        });
        trimmed
    }

    /// Closes `peer`'s connections with goodbye `NetworkRestructure`, and parks it: trimming
    /// is a decision to have fewer connections, so it is not redialed. Returns whether it was
    /// wanted (through discovery) and no longer is.
    fn close_trimmed(&mut self, now: Instant, peer: PeerId) -> bool {
        let was_wanted = self.intent(&peer).is_wanted();
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.set_intent(peer, Intent::Parked);
        let Some(record) = self.peers.get(&peer) else {
            return false;
        };
        let open: Vec<ConnectionId> = record.open().map(|c| c.id).collect();
        self.note_peer(peer);
        self.quiet_hearsay(peer, Some(later(now, hearsay::QUIET_AFTER_TRIM)));
        for connection in open {
            self.start_close(
                now,
                peer,
                connection,
                DisconnectReason::NetworkRestructure,
                None,
            );
        }
        was_wanted
    }
}
