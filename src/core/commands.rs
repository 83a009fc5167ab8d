//! Commands from the application: dial, disconnect, shutdown.

use super::*;

impl Manager {
    /// Sets the watermarks of a running node (`None`: trimming off), as
    /// [`Config::with_watermarks`] does at start. Refused with the error
    /// [`Config::validate`] gives when low is above high. Connections above the new high
    /// watermark are trimmed at once (the silence after the last trim still applies).
    pub fn set_watermarks(
        &mut self,
        now: Instant,
        watermarks: Option<(usize, usize)>,
    ) -> Result<(), ConfigError> {
        if let Some((low, high)) = watermarks {
            if low > high {
                return Err(ConfigError::WatermarksInverted { low, high });
            }
        }
        self.config.watermarks = watermarks.map(|(low, high)| Watermarks { low, high });
        self.maybe_trim(now);
        Ok(())
    }

    /// Marks `peer` as wanted (kept connected and redialed when lost, never trimmed),
    /// remembers `addresses`, and dials it unless a connection exists or is being made. A peer
    /// that discovery (or a peer-exchange list) had added becomes the application's own:
    /// discovery losing it no longer forgets it.
    pub fn add_peer(
        &mut self,
        now: Instant,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<(), Denial> {
        self.exchange.asked_for(&peer);
        self.want(now, peer, addresses, Asker::Application)?;
        // Now the application's: a store keeps it.
        self.note_peer(peer);
        Ok(())
    }

    /// Marks `peer` as wanted `by` someone and dials it (see [`add_peer`](Self::add_peer)). A peer the
    /// application wants stays the application's whoever else asks.
    pub(super) fn want(
        &mut self,
        now: Instant,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        by: Asker,
    ) -> Result<(), Denial> {
        if peer == self.local {
            return Err(Denial::SelfConnection { peer });
        }
        if self.terminated {
            return Err(Denial::Terminated);
        }
        self.check_peer_ban(peer, now)?;
        let max = self.config.max_addresses_per_peer;
        for pending in self.pending.values_mut() {
            if pending.peer == Some(peer) {
                pending.cancelled = false;
            }
        }
        if !self.intent(&peer).is_applications() {
            self.set_intent(peer, Intent::Wanted(by));
        }
        let Some(record) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        for address in addresses {
            record.add_address(address, max);
        }
        let busy = record.is_connected() || record.pending_outbound > 0;
        self.note_peer(peer);
        self.sync_keep_alive(peer);
        if busy {
            return Ok(());
        }
        self.cancel_redial(peer);
        self.push_dial(peer);
        Ok(())
    }

    /// Remembers a dial address for `peer` without dialing it.
    pub fn add_address(&mut self, peer: PeerId, address: Multiaddr) {
        if peer == self.local {
            return;
        }
        let max = self.config.max_addresses_per_peer;
        if self.peers.or_default(peer).add_address(address, max) {
            self.note_peer(peer);
        }
    }

    /// Stops wanting `peer`: cancels its redial, closes its connections with goodbye `Normal`,
    /// and closes the connections of dials still in flight as soon as they succeed. No redial
    /// or rescue follows until the application asks for the peer again, and peer exchange does
    /// not bring it back. Returns whether it had connections.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) -> bool {
        self.quiet_hearsay(peer, None);
        self.actions
            .retain(|action| !matches!(action, Action::Dial { peer: p, .. } if *p == peer));
        for pending in self.pending.values_mut() {
            if pending.peer == Some(peer) {
                pending.cancelled = true;
            }
        }
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.set_intent(peer, Intent::Parked);
        let Some(record) = self.peers.get(&peer) else {
            return false;
        };
        let open: Vec<ConnectionId> = record.open().map(|c| c.id).collect();
        let had_connections = !record.connections.is_empty();
        self.note_peer(peer);
        self.cancel_redial(peer);
        for connection in open {
            self.start_close(now, peer, connection, DisconnectReason::Normal, None);
        }
        self.forget_if_idle(peer);
        had_connections
    }

    /// Says goodbye `Normal` on every connection, stops redialing, refuses every new
    /// connection, and enters [`Phase::Terminated`]. The journal stops here: what a store
    /// holds stays as it was before the shutdown (a ban made after it is not journaled).
    pub fn shutdown(&mut self, now: Instant) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        self.freeze_journal();
        self.timers.cancel(Timer::Bootstrap);
        self.bootstrap.round.clear();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.remove_peer(now, peer);
        }
        self.update_phase();
    }
}
