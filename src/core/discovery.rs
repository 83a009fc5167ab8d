//! Peers that discovery reports, and addresses learned from other behaviours.

use super::*;

impl Manager {
    /// Discovery (mDNS, Kademlia, identify, a peer exchange...) sees `peer` at `addresses`: it
    /// is remembered, wanted and dialed, like [`add_peer`](Self::add_peer), unless it is banned or the
    /// cap on discovered peers is reached. A peer discovery had removed is wanted again.
    pub fn add_discovered(
        &mut self,
        now: Instant,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<(), Denial> {
        let is_new = !self.intent(&peer).is_discovery();
        // A peer the application dialed itself stays the application's (see `want`): discovery
        // does not make it forgettable or trimmable.
        if is_new
            && !self.intent(&peer).is_applications()
            && self.discovered >= self.config.max_discovered_peers
        {
            tracing::debug!(%peer, "discovered-peer cap reached; ignoring");
            if self.peers.contains_key(&peer) {
                for address in addresses {
                    self.add_address(peer, address);
                }
            }
            return Ok(());
        }
        // The application's discovery, not hearsay.
        self.exchange.asked_for(&peer);
        self.want(now, peer, addresses, Asker::Discovery { seen: true })
    }

    /// Discovery no longer sees `peer`. A live connection stays; once the peer has no
    /// connection and one redial has failed, it is forgotten ([`Event::PeerForgotten`]). A
    /// peer the application dialed itself is not affected.
    pub fn remove_discovered(&mut self, peer: PeerId) {
        let intent = self.intent(&peer);
        if intent.is_applications() {
            return;
        }
        if intent.is_discovery() {
            self.set_intent(peer, Intent::Wanted(Asker::Discovery { seen: false }));
        }
        let redialing = self.timers.is_set(Timer::Redial(peer));
        let idle = self
            .peers
            .get(&peer)
            .is_some_and(|r| r.connections.is_empty() && r.pending_outbound == 0 && !redialing);
        if idle {
            self.forget(peer);
        }
    }

    /// Forgets everything about `peer` except its live connections: not wanted, no redial, no
    /// addresses. Returns whether the manager knew it.
    pub fn forget(&mut self, peer: PeerId) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.cancel_redial(peer);
        self.set_intent(peer, Intent::Unasked);
        if let Some(record) = self.peers.get_mut(&peer) {
            record.addresses.clear();
        }
        self.note_forgotten(peer);
        self.sync_keep_alive(peer);
        tracing::debug!(%peer, "peer forgotten");
        self.push_event(Event::PeerForgotten { peer });
        self.forget_if_idle(peer);
        true
    }

    /// Another behaviour reported `address` for `peer` (`NewExternalAddrOfPeer`). Learned as a
    /// dial address for peers the manager already tracks, ranked below the addresses the
    /// application gave or a connection proved (it never pushes those out, and is not written
    /// to a peer store); with [`Config::with_auto_connect_learned_peers`], other peers are
    /// added as discovered.
    pub fn on_peer_address(&mut self, now: Instant, peer: PeerId, address: Multiaddr) {
        if peer == self.local || !self.config.learn_peer_addresses {
            return;
        }
        let max = self.config.max_addresses_per_peer;
        if let Some(record) = self.peers.get_mut(&peer) {
            let connected = record.is_connected();
            record.add_ranked_address(address, peers::Rank::Learned, max);
            if connected {
                // Others may want to know how to reach it.
                self.exchange_changed(now);
            }
        } else if self.config.auto_connect_learned_peers {
            let _ = self.add_discovered(now, peer, vec![address]);
        }
    }

    /// A flagged peer whose last chance is gone is forgotten. Returns whether it was.
    pub(super) fn forget_if_flagged_and_unreachable(&mut self, peer: PeerId) -> bool {
        let redialing = self.timers.is_set(Timer::Redial(peer));
        let unreachable = self.peers.get(&peer).is_some_and(|r| {
            r.intent.is_fading()
                && r.connections.is_empty()
                && r.pending_outbound == 0
                && !redialing
        });
        if unreachable {
            self.forget(peer);
        }
        unreachable
    }
}
