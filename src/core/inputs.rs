//! Inputs from the swarm: connections pending, established, closed, failed; goodbyes; pings.

use super::*;

impl Manager {
    /// An inbound connection from `remote_addr` starts its handshake. Checks what the address
    /// alone can tell, before any handshake work: IP bans, the pending-inbound limit, the
    /// per-IP limits (see [`Limits`] for the prefixes). The local address it arrived on is
    /// unknown here, so an inbound circuit (whose remote address is `/p2p/<peer>`) is not
    /// counted against its relay: drivers that know the local address use
    /// [`on_pending_inbound_via`](Self::on_pending_inbound_via).
    pub fn on_pending_inbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        remote_addr: &Multiaddr,
    ) -> Result<(), Denial> {
        self.on_pending_inbound_via(now, connection, None, remote_addr)
    }

    /// [`on_pending_inbound`](Self::on_pending_inbound), knowing the local address the
    /// connection arrived on. An inbound circuit arrives on a local address through a relay
    /// (`<relay address>/p2p-circuit`): it is counted against that relay
    /// ([`Limits::with_max_incoming_per_relay`]), never against an IP.
    pub fn on_pending_inbound_via(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        local_addr: Option<&Multiaddr>,
        remote_addr: &Multiaddr,
    ) -> Result<(), Denial> {
        let counted = match self.admit_inbound(now, local_addr, remote_addr) {
            Ok(counted) => counted,
            Err(denial) => return Err(self.deny(None, connection, denial)),
        };
        self.counters.pending_inbound += 1;
        self.pending.insert(
            connection,
            Pending {
                peer: None,
                direction: Direction::Inbound,
                timed_out: false,
                counted,
                cancelled: false,
                handler_keep_alive: None,
            },
        );
        Ok(())
    }

    /// An outbound connection is being dialed, by the manager or anyone else, on `addresses`
    /// (remembered for redials). Returns the other addresses the manager knows for the peer.
    pub fn on_pending_outbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
    ) -> Result<Vec<Multiaddr>, Denial> {
        if self.terminated {
            return Err(self.deny(peer, connection, Denial::Terminated));
        }
        if peer == Some(self.local) {
            return Err(self.deny(
                peer,
                connection,
                Denial::SelfConnection { peer: self.local },
            ));
        }
        if let Some(peer) = peer {
            if let Err(denial) = self.check_peer_ban(peer, now) {
                return Err(self.deny(Some(peer), connection, denial));
            }
        }
        if let Err(denial) = self.check_dial_addresses(addresses, now) {
            return Err(self.deny(peer, connection, denial));
        }
        if !peer.is_some_and(|p| self.allowed.contains(&p)) {
            if let Err(denial) = Counters::check(
                LimitKind::PendingOutgoing,
                self.limits.max_pending_outgoing,
                self.counters.pending_outbound,
            ) {
                return Err(self.deny(peer, connection, denial));
            }
        }
        self.counters.pending_outbound += 1;
        if peer.is_some() {
            self.timers.set(
                Timer::DialDeadline(connection),
                later(now, self.config.dial_timeout),
            );
        }
        self.pending.insert(
            connection,
            Pending {
                peer,
                direction: Direction::Outbound,
                timed_out: false,
                counted: Counted::default(),
                cancelled: false,
                handler_keep_alive: None,
            },
        );
        let Some(peer) = peer else {
            return Ok(Vec::new());
        };
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.or_default(peer);
        record.pending_outbound += 1;
        let known = record
            .addresses
            .iter()
            .filter(|a| !addresses.contains(a))
            .cloned()
            .collect();
        let mut changed = false;
        for address in addresses.iter().rev() {
            changed |= record.add_address(address.clone(), max);
        }
        if changed {
            self.note_peer(peer);
        }
        Ok(known)
    }

    /// A connection finished its handshake: may it be established? Refuses self-connections,
    /// banned peers and addresses, connections past the per-peer cap or the established
    /// limits, and duplicates whose winner is already established.
    pub fn check_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        new: &NewConnection,
    ) -> Result<(), Denial> {
        let settles_at_once = self.duplicate_settles_at_once(now, connection, peer, new);
        if let Err(denial) = self.admit_established(now, peer, new, settles_at_once) {
            if self.can_refuse_with_goodbye(new, &denial) {
                // Refused all the same, but the remote will hear why.
                self.deny(Some(peer), connection, denial);
                self.refuse_with_goodbye(connection, peer);
                return Ok(());
            }
            return Err(self.deny(Some(peer), connection, denial));
        }
        // A duplicate that loses the tie-break is not refused here: it is established and
        // drains before it is closed (see `settle_duplicates`), so that what the remote started
        // on it does not fail.
        // The driver makes the connection's handler right after this check, with
        // `keeps_alive`'s answer: remembered, so that `on_established` does not repeat it.
        let keep = self.keeps_alive(&peer);
        if let Some(pending) = self.pending.get_mut(&connection) {
            pending.handler_keep_alive = Some(keep);
        }
        Ok(())
    }

    /// A connection was established (every behaviour accepted it).
    pub fn on_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        new: NewConnection,
    ) {
        let NewConnection {
            initiator,
            direction,
            relayed,
            remote_addr,
        } = new;
        let pending = self.finish_pending(connection);
        if self.on_refused_established(now, connection) {
            if let Some(pending) = pending {
                pending
                    .counted
                    .release(&mut self.per_ip, &mut self.per_relay);
            }
            return;
        }
        let (counted, cancelled, handler_keep_alive) = match pending {
            Some(p) => (p.counted, p.cancelled, p.handler_keep_alive),
            None => (Counted::default(), false, None),
        };
        match direction {
            Endpoint::Dialer => self.counters.established_outbound += 1,
            Endpoint::Listener => self.counters.established_inbound += 1,
        }
        let max = self.config.max_addresses_per_peer;
        let kept_alive = self.keeps_alive(&peer);
        let record = self.peers.or_default(peer);
        let first = record.connections.is_empty();
        let learned = initiator == Initiator::Local && record.add_address(remote_addr.clone(), max);
        record.connections.push(ConnectionRecord {
            id: connection,
            initiator,
            direction,
            relayed,
            established_at: now,
            remote_addr,
            closing: None,
            remote_goodbye: None,
            rtt: None,
            pings: 0,
            health: Default::default(),
            counted,
            violated: false,
            kept_alive,
        });
        record.waiting = None;
        // Told only if the handler was made with another answer (or the check was skipped): a
        // notification costs libp2p-swarm a scan of every peer to find the connection.
        if handler_keep_alive != Some(kept_alive) {
            self.actions.push_back(Action::KeepAlive {
                peer,
                connection,
                keep: kept_alive,
            });
        }
        if learned {
            self.note_peer(peer);
        }
        if let Some(slot) = self.peers.slot_of(&peer) {
            self.owners.insert(connection, slot);
        }
        self.cancel_redial(peer);
        if first {
            self.connected_peers += 1;
        }
        // The backoff of the rounds is not reset here but when the last connection is lost,
        // by how it was lost (see `on_last_connection_lost`).
        self.bootstrap.round.clear();
        self.timers.cancel(Timer::Bootstrap);
        self.arm_inactivity(now, peer, connection);
        self.settle_duplicates(now, peer, Some(connection));
        if cancelled {
            // Dialed before the application disconnected the peer.
            self.start_close(now, peer, connection, DisconnectReason::Normal, None);
        }
        if first {
            self.maybe_trim(now);
        }
        self.update_phase();
    }

    /// An established connection closed.
    pub fn on_closed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        cause: CloseCause,
    ) {
        if self.forget_refused(connection) {
            return;
        }
        self.owners.remove(&connection);
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(closed) = record.connections.remove(connection) else {
            return;
        };
        let remaining = record.connections.len();
        self.cancel_connection_timers(closed.id);
        let counter = match closed.direction {
            Endpoint::Dialer => &mut self.counters.established_outbound,
            Endpoint::Listener => &mut self.counters.established_inbound,
        };
        *counter = counter.saturating_sub(1);
        closed
            .counted
            .release(&mut self.per_ip, &mut self.per_relay);

        let (reason, closed_by, retry_after) =
            match (closed.closing, closed.remote_goodbye.as_deref().copied()) {
                (Some(closing), _) => (closing.reason, ClosedBy::Local, None),
                (None, Some((reason, retry_after))) => (reason, ClosedBy::Remote, retry_after),
                (None, None) => match cause {
                    CloseCause::Local | CloseCause::Idle => {
                        (DisconnectReason::Normal, ClosedBy::Local, None)
                    }
                    CloseCause::RemoteClosed => (DisconnectReason::Closed, ClosedBy::Remote, None),
                    CloseCause::Transport => (DisconnectReason::Timeout, ClosedBy::Remote, None),
                },
            };
        tracing::debug!(%peer, %connection, %reason, ?closed_by, remaining, "connection closed");
        self.push_event(Event::Disconnected {
            peer,
            connection,
            reason,
            closed_by,
            remaining,
        });
        if remaining == 0 {
            self.connected_peers -= 1;
            if self.connected_peers == 0 {
                self.on_last_connection_lost(reason, closed_by);
            }
            self.exchange_changed(now);
            self.note_disconnect(
                peer,
                LastDisconnect {
                    reason,
                    closed_by,
                    at: now,
                    retry_after,
                },
            );
        }

        self.after_lost_connection(now, peer, &closed, (reason, closed_by, retry_after));
        if !self.forget_if_flagged_and_unreachable(peer) {
            self.forget_if_idle(peer);
        }
        self.release_slot(now, Slot::Established);
        if self.connected_peers == 0 && !self.terminated && !self.config.bootstrap_peers.is_empty()
        {
            self.schedule_bootstrap(now);
        }
        self.update_phase();
    }

    /// A dial failed. `peer` is the peer the dial named, if any.
    pub fn on_dial_failure(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        cause: DialFailureCause,
    ) {
        let pending = self.finish_pending(connection);
        if pending
            .as_ref()
            .is_some_and(|p| p.direction == Direction::Outbound)
        {
            self.release_slot(now, Slot::Pending);
        }
        if pending.as_ref().is_some_and(|p| p.timed_out) {
            // Already reported and planned for when its deadline passed.
            return;
        }
        let peer = pending.and_then(|p| p.peer).or(peer);
        if !matches!(cause, DialFailureCause::DeniedByManager(_)) {
            tracing::debug!(?peer, %connection, %cause, "dial failed");
            self.push_event(Event::DialFailed {
                peer,
                connection,
                cause: cause.clone(),
            });
        }
        if let Some(peer) = peer {
            self.after_failed_dial(now, peer, &cause);
        }
    }

    /// An inbound connection failed before it was established.
    pub fn on_listen_failure(&mut self, connection: ConnectionId) {
        // Another behaviour may refuse a connection we only let through to say goodbye.
        self.forget_refused(connection);
        if let Some(pending) = self.finish_pending(connection) {
            pending
                .counted
                .release(&mut self.per_ip, &mut self.per_relay);
        }
    }

    /// The remote said goodbye on `connection`.
    pub fn on_goodbye_received(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        let Some(peer) = self.owner(connection) else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.remote_goodbye = Some(Box::new((reason, retry_after)));
        }
        if reason == DisconnectReason::Duplicate {
            self.mark_duplicate(now, peer);
        }
        tracing::debug!(%peer, %connection, %reason, "goodbye received");
        self.push_event(Event::GoodbyeReceived {
            peer,
            connection,
            reason,
            retry_after,
        });
    }

    /// The goodbye on `connection` was delivered, refused, or timed out: close it now.
    pub fn on_goodbye_finished(&mut self, connection: ConnectionId) {
        if self.close_refused(connection) {
            return;
        }
        let Some(peer) = self.owner(connection) else {
            return;
        };
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if record.closing.is_some() {
            self.timers.cancel(Timer::GoodbyeDeadline(connection));
            self.actions.push_back(Action::Close { peer, connection });
        }
    }
}
