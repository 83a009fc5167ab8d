//! Trimming: above the high watermark, close connections down to the low watermark, keeping the
//! peers that matter.

use std::collections::HashMap;

use super::*;

/// Watermarks and pacing of trimming (off unless [`Config::with_watermarks`] is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermarks {
    pub(crate) low: usize,
    pub(crate) high: usize,
}

/// What the application says about peers, for trimming: protection tags, and valued tags.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    protected: HashMap<PeerId, HashSet<String>>,
    values: HashMap<PeerId, HashMap<String, i64>>,
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

/// One peer that may be trimmed, with what decides its place in line.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    peer: PeerId,
    wanted: bool,
    value: i64,
    /// The health score; unmeasured counts as middling (0.5).
    health: f64,
    inbound: bool,
    since: Instant,
}

impl Candidate {
    /// The order of trimming, first trimmed first: peers the application did not ask for, then
    /// the lowest value, then the worst health, then inbound before outbound, then the newest.
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.wanted
            .cmp(&other.wanted)
            .then(self.value.cmp(&other.value))
            .then(self.health.total_cmp(&other.health))
            .then(other.inbound.cmp(&self.inbound))
            .then(other.since.cmp(&self.since))
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
        if self.connected_peers <= marks.high || self.trim_due.is_some() {
            return;
        }
        let earliest = self
            .last_trim
            .map_or(now, |at| later(at, self.config.trim_silence));
        if earliest <= now {
            self.trim(now);
        } else {
            self.trim_due = Some(earliest);
            self.timers.schedule(earliest, Timer::Trim);
        }
    }

    pub(super) fn on_trim_due(&mut self, now: Instant) {
        self.trim_due = None;
        let Some(marks) = self.config.watermarks else {
            return;
        };
        if self.connected_peers > marks.high {
            self.trim(now);
        }
    }

    /// Closes the connections of the first peers in trimming order until at most the low
    /// watermark of peers remain connected. O(n) selection plus a sort of the chosen few.
    fn trim(&mut self, now: Instant) -> Vec<PeerId> {
        let Some(marks) = self.config.watermarks else {
            return Vec::new();
        };
        self.last_trim = Some(now);
        let grace = self.config.trim_grace;
        let mut connected = 0usize;
        let mut candidates = Vec::new();
        for (peer, record) in &self.peers {
            let Some(kept) = record.open().min_by_key(|c| c.established_at) else {
                continue;
            };
            connected += 1;
            let young = now.saturating_duration_since(kept.established_at) < grace;
            if young || self.tags.is_protected(peer) || self.allowed.contains(peer) {
                continue;
            }
            candidates.push(Candidate {
                peer: *peer,
                wanted: record.wanted,
                value: self.tags.value(peer),
                health: kept
                    .health
                    .assess(&self.config.health_scoring)
                    .map_or(0.5, |h| h.score),
                inbound: kept.initiator == Initiator::Remote,
                since: kept.established_at,
            });
        }
        let excess = connected.saturating_sub(marks.low).min(candidates.len());
        if excess == 0 {
            return Vec::new();
        }
        if excess < candidates.len() {
            candidates.select_nth_unstable_by(excess, |a, b| a.order(b));
            candidates.truncate(excess);
        }
        candidates.sort_unstable_by(|a, b| a.order(b));
        let trimmed: Vec<PeerId> = candidates.iter().map(|c| c.peer).collect();
        for peer in &trimmed {
            self.close_trimmed(now, *peer);
        }
        tracing::debug!(
            connected,
            trimmed = trimmed.len(),
            low = marks.low,
            "trimmed"
        );
        self.push_event(Event::Trimmed {
            peers: trimmed.clone(),
        });
        trimmed
    }

    fn close_trimmed(&mut self, now: Instant, peer: PeerId) {
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        // Trimming is a decision to have fewer connections: the peer is not redialed.
        record.stop_wanting();
        record.parked = true;
        self.note_peer(peer);
        let open: Vec<ConnectionId> = self
            .peers
            .get(&peer)
            .map(|r| r.open().map(|c| c.id).collect())
            .unwrap_or_default();
        for connection in open {
            self.start_close(
                now,
                peer,
                connection,
                DisconnectReason::NetworkRestructure,
                None,
            );
        }
    }
}
