//! What the manager keeps across restarts: the changes a peer store must write, and restoring
//! from what a store read back.
//!
//! The manager only journals *which* peers and bans changed (one hash-set insert on the hot
//! path); the changes themselves are built from the current state when the driver asks for
//! them ([`Manager::take_changes`]), so a peer touched a thousand times between two flushes
//! is written once. Journaling is off until [`Manager::track_changes`] turns it on: a manager
//! without a store pays nothing.
//!
//! Only what a restart reads is written: peers the application dialed, and peers it tagged or
//! protected (with their trusted addresses and how their last connection ended). Peers that
//! discovery or peer exchange brought, and strangers, are not written at all; a peer that
//! stops being worth keeping is dropped from the store.

use super::*;

/// How a peer's last connection ended, as kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastDisconnect {
    /// Why it ended.
    pub reason: DisconnectReason,
    /// Which side ended it.
    pub closed_by: ClosedBy,
    /// When it ended.
    pub at: Instant,
    /// The remote's hint for when to come back, if it gave one.
    pub retry_after: Option<Duration>,
}

impl LastDisconnect {
    /// The remote banned this node with no end in sight: the peer is not dialed again by itself.
    fn banned_for_good(&self) -> bool {
        self.reason == DisconnectReason::Banned
            && self.closed_by == ClosedBy::Remote
            && self.retry_after.is_none()
    }
}

/// What the manager keeps of one peer across restarts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DurablePeer {
    /// The application wants it connected (it dialed it; peers that discovery or peer exchange
    /// brought are not kept): it is redialed after a restart.
    pub wanted: bool,
    /// Addresses to dial it on, newest first: the ones the application gave or a connection
    /// proved, never hearsay.
    pub addresses: Vec<Multiaddr>,
    /// Its protection tags (trimming never closes a protected peer).
    pub protected: Vec<String>,
    /// Its valued tags.
    pub tags: Vec<(String, i64)>,
    /// How its last connection ended.
    pub last_disconnect: Option<LastDisconnect>,
}

/// The new state of one peer, for a store to merge into what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerUpdate {
    /// Whether the application wants it connected (it dialed it).
    pub wanted: bool,
    /// Its addresses the application gave or a connection proved, newest first; `None` when
    /// the manager holds none in memory (the store keeps the ones it has).
    pub addresses: Option<Vec<Multiaddr>>,
    /// Its protection tags.
    pub protected: Vec<String>,
    /// Its valued tags.
    pub tags: Vec<(String, i64)>,
    /// How its last connection ended, if it ended since the previous update (otherwise the
    /// store keeps the one it has).
    pub last_disconnect: Option<LastDisconnect>,
}

/// One change a peer store must write.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// A ban is in force (new, or with a new end).
    Ban(Ban),
    /// A ban ended (expired or lifted).
    Unban(BanTarget),
    /// A peer's durable state changed.
    Peer {
        /// The peer.
        peer: PeerId,
        /// Its new state.
        update: PeerUpdate,
    },
    /// Drop everything stored of the peer: the application asked to forget it
    /// ([`Manager::forget`]), or nothing a restart reads is left of it (not wanted by the
    /// application, no tag).
    Forget(PeerId),
}

/// What a peer store gave back at start ([`Behaviour::with_store`](crate::Behaviour::with_store)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreSummary {
    /// Bans still in force, now enforced again.
    pub bans: usize,
    /// Bans that had ended while the node was down, dropped.
    pub expired_bans: usize,
    /// Peers read back (their tags are restored; wanted ones also their addresses).
    pub peers: usize,
    /// Wanted peers scheduled for a dial.
    pub redials: usize,
}

/// The journal of changes not yet taken by the driver.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    enabled: bool,
    /// Set by `shutdown`: what shutting down does (un-wanting every peer) is not written, so
    /// a restart picks up where the node was.
    frozen: bool,
    peers: Map<PeerId, Option<LastDisconnect>>,
    forgotten: Set<PeerId>,
    /// Peers the store holds something of that a restart reads (as last written or restored):
    /// when that is gone, the peer is dropped from the store. Bounded by what the application
    /// asked for (dials, tags).
    durable: Set<PeerId>,
    bans: Set<BanTarget>,
    /// Changes built when the journal was frozen, waiting to be taken.
    ready: Vec<Change>,
}

impl Journal {
    fn recording(&self) -> bool {
        self.enabled && !self.frozen
    }

    /// A restored peer changed while the journal was off: written once tracking starts.
    fn note_after_restore(&mut self, peer: PeerId) {
        if !self.frozen {
            self.peers.entry(peer).or_insert(None);
        }
    }

    /// The peer is back: it is not to be dropped from the store after all.
    fn forget_not(&mut self, peer: &PeerId) {
        if !self.forgotten.is_empty() {
            self.forgotten.remove(peer);
        }
    }

    fn len(&self) -> usize {
        self.peers.len() + self.forgotten.len() + self.bans.len() + self.ready.len()
    }
}

impl Manager {
    /// Starts (or stops) journaling the changes a peer store must write; take them with
    /// [`take_changes`](Self::take_changes).
    pub fn track_changes(&mut self, enabled: bool) {
        self.journal.enabled = enabled;
        if !enabled {
            self.journal = Journal::default();
        }
    }

    /// Changes journaled and not yet taken: a driver flushes early when this grows large.
    pub fn pending_changes(&self) -> usize {
        self.journal.len()
    }

    /// The changes since the last call, one per peer or ban, built from the current state.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut changes = std::mem::take(&mut self.journal.ready);
        changes.extend(self.build_changes());
        changes
    }

    /// Takes over what a store kept: bans still in force at `now` are enforced again (ended
    /// ones are dropped), and peers get back their addresses, tags and wants. Wanted peers are
    /// dialed by the normal redial policy: soon (spread out by the prompt-redial jitter), no
    /// sooner than a retry-after the remote gave, and not at all if the remote banned this node
    /// for good. Call it on a fresh manager, before the first connection.
    pub fn restore(
        &mut self,
        now: Instant,
        bans: Vec<Ban>,
        peers: Vec<(PeerId, DurablePeer)>,
    ) -> RestoreSummary {
        let mut summary = RestoreSummary::default();
        for ban in bans {
            if ban.until.is_some_and(|until| until <= now) {
                summary.expired_bans += 1;
                continue;
            }
            let target = ban.target.normalized();
            self.bans.insert(target, ban.until);
            self.sync_ban_expiry(target);
            summary.bans += 1;
        }
        let max = self.config.max_addresses_per_peer;
        for (peer, durable) in peers {
            if peer == self.local {
                continue;
            }
            summary.peers += 1;
            for tag in durable.protected {
                self.protect(peer, tag);
            }
            for (tag, value) in durable.tags {
                self.tag_peer(peer, tag, value);
            }
            // Only wanted peers are held in memory; the store keeps the addresses of the others.
            if !durable.wanted || self.bans.peer(&peer, now).is_some() {
                if self.is_durable(&peer) {
                    self.journal.durable.insert(peer);
                }
                continue;
            }
            self.journal.durable.insert(peer);
            self.set_intent(peer, Intent::Wanted(Asker::Application));
            let record = self.peers.or_default(peer);
            // Oldest first, so the newest ends up in front.
            for address in durable.addresses.into_iter().rev() {
                record.add_address(address, max);
            }
            let last = durable.last_disconnect;
            if last.is_some_and(|l| l.banned_for_good()) {
                continue;
            }
            // What is left of the remote's retry-after hint.
            let hint = last.and_then(|l| {
                let end = later(l.at, l.retry_after?);
                Some(end.saturating_duration_since(now)).filter(|left| !left.is_zero())
            });
            self.plan_redial(now, peer, RedialPlan::Prompt, hint, Duration::ZERO);
            if self.timers.is_set(Timer::Redial(peer)) {
                summary.redials += 1;
            }
            // The plan may have given up on it (max_redial_attempts). The journal is off while
            // restoring (nothing restored needs writing back), but a give-up does: the store
            // would keep the peer wanted for ever.
            self.forget_if_idle(peer);
            if !self.asked_by_application(&peer) {
                self.journal.note_after_restore(peer);
            }
        }
        tracing::debug!(?summary, "restored from the peer store");
        self.push_event(Event::Restored(summary));
        summary
    }

    /// Whether a restart reads anything of `peer`: the application dialed it, protected it or
    /// tagged it.
    fn is_durable(&self, peer: &PeerId) -> bool {
        self.asked_by_application(peer)
            || self.is_protected(peer)
            || !self.tags.valued_tags(peer).is_empty()
    }

    /// Whether a change of `peer` is worth journaling: it is worth keeping, or the store holds
    /// something of it.
    fn worth_writing(&self, peer: &PeerId) -> bool {
        self.journal.recording() && (self.journal.durable.contains(peer) || self.is_durable(peer))
    }

    /// Journals that `peer`'s durable state may have changed.
    pub(super) fn note_peer(&mut self, peer: PeerId) {
        if self.worth_writing(&peer) {
            self.journal.forget_not(&peer);
            self.journal.peers.entry(peer).or_insert(None);
        }
    }

    /// Journals how `peer`'s last connection ended.
    pub(super) fn note_disconnect(&mut self, peer: PeerId, last: LastDisconnect) {
        if self.worth_writing(&peer) {
            self.journal.forget_not(&peer);
            self.journal.peers.insert(peer, Some(last));
        }
    }

    /// Journals that `peer` is to be dropped from the store (if it holds anything of it).
    pub(super) fn note_forgotten(&mut self, peer: PeerId) {
        if self.journal.recording() {
            self.journal.peers.remove(&peer);
            if self.journal.durable.remove(&peer) {
                self.journal.forgotten.insert(peer);
            }
        }
    }

    /// Journals that the ban of `target` began, changed or ended.
    pub(super) fn note_ban(&mut self, target: BanTarget) {
        if self.journal.recording() {
            self.journal.bans.insert(target);
        }
    }

    /// Builds what is journaled into the ready list and stops journaling (see `Journal::frozen`).
    pub(super) fn freeze_journal(&mut self) {
        if self.journal.recording() {
            let changes = self.build_changes();
            self.journal.ready.extend(changes);
            self.journal.frozen = true;
        }
    }

    fn build_changes(&mut self) -> Vec<Change> {
        // Drained rather than taken: the maps keep their capacity for the next batch.
        let journal = &mut self.journal;
        let mut changes =
            Vec::with_capacity(journal.peers.len() + journal.forgotten.len() + journal.bans.len());
        changes.extend(journal.forgotten.drain().map(Change::Forget));
        let bans: Vec<BanTarget> = journal.bans.drain().collect();
        let peers: Vec<(PeerId, Option<LastDisconnect>)> = journal.peers.drain().collect();
        // Only the application's bans are kept: an automatic one is no ban to the store.
        for target in bans {
            changes.push(match self.bans.get_application(target) {
                Some(until) => Change::Ban(Ban { target, until }),
                None => Change::Unban(target),
            });
        }
        for (peer, last_disconnect) in peers {
            if !self.is_durable(&peer) {
                // Nothing a restart reads is left: drop what the store holds, if anything.
                if self.journal.durable.remove(&peer) {
                    changes.push(Change::Forget(peer));
                }
                continue;
            }
            self.journal.durable.insert(peer);
            let record = self.peers.get(&peer);
            let addresses: Vec<Multiaddr> = record
                .map(|r| r.addresses.trusted().cloned().collect())
                .unwrap_or_default();
            changes.push(Change::Peer {
                peer,
                update: PeerUpdate {
                    wanted: self.asked_by_application(&peer),
                    addresses: (!addresses.is_empty()).then_some(addresses),
                    protected: self.tags.protected_tags(&peer),
                    tags: self.tags.valued_tags(&peer),
                    last_disconnect,
                },
            });
        }
        changes
    }
}
