//! Admission: whether a connection may be made, by the limits and the allow list, checked at
//! the earliest stage that knows the fact (the address before any handshake work, the peer
//! once it is known). Bans are checked here too, by `bans`' own checks.

use super::super::*;

impl Manager {
    /// The checks of [`on_pending_inbound`](Self::on_pending_inbound); on success, what the
    /// connection is counted under.
    pub(in crate::core) fn admit_inbound(
        &mut self,
        now: Instant,
        local_addr: Option<&Multiaddr>,
        remote_addr: &Multiaddr,
    ) -> Result<Counted, Denial> {
        if self.terminated {
            return Err(Denial::Terminated);
        }
        let relay = local_addr.and_then(limits::relay_of);
        // A relayed connection's IP, if it shows one, is the relay's: never checked here.
        let ip = if relay.is_some() {
            None
        } else {
            ip_of(remote_addr)
        };
        if let Some(ip) = ip {
            self.check_ip_ban(ip, now)?;
        }
        Counters::check(
            LimitKind::PendingIncoming,
            self.limits.max_pending_incoming,
            self.counters.pending_inbound,
        )?;
        if let Some(relay) = relay {
            self.per_relay.admit(&self.limits, &relay)?;
            return Ok(Counted::Relay(Box::new(relay)));
        }
        match ip {
            Some(ip) if PerIp::applies_to(&self.limits, ip) => {
                Ok(Counted::Ip(self.per_ip.admit(&self.limits, ip, now)?))
            }
            _ => Ok(Counted::default()),
        }
    }

    /// Refuses a dial whose every address is in a banned network (the swarm offers no way to
    /// drop single addresses; the rest are checked once the connection is established).
    pub(in crate::core) fn check_dial_addresses(
        &self,
        addresses: &[Multiaddr],
        now: Instant,
    ) -> Result<(), Denial> {
        let mut first_refusal = None;
        for address in addresses {
            match ip_of(address).map(|ip| self.check_ip_ban(ip, now)) {
                Some(Err(denial)) => {
                    first_refusal.get_or_insert(denial);
                }
                _ => return Ok(()),
            }
        }
        first_refusal.map_or(Ok(()), Err)
    }

    /// The checks of [`check_established`](Self::check_established) before the duplicate rule.
    /// `settles_at_once`: see [`duplicate_settles_at_once`](Self::duplicate_settles_at_once).
    pub(in crate::core) fn admit_established(
        &self,
        now: Instant,
        peer: PeerId,
        new: &NewConnection,
        settles_at_once: bool,
    ) -> Result<(), Denial> {
        let (direction, remote_addr) = (new.direction, &new.remote_addr);
        if self.terminated {
            return Err(Denial::Terminated);
        }
        if peer == self.local {
            return Err(Denial::SelfConnection { peer });
        }
        self.check_peer_ban(peer, now)?;
        if let Some(ip) = ip_of(remote_addr) {
            self.check_ip_ban(ip, now)?;
        }
        let record = self.peers.get(&peer);
        let current = record.map_or(0, |r| r.connections.len() as u32);
        let limit = self.config.max_established_per_peer;
        if current >= limit {
            return Err(Denial::PerPeerLimit {
                peer,
                limit,
                current,
            });
        }
        // A duplicate the rule settles at once does not grow the count: the established limits
        // leave it to the rule. Any other connection counts.
        if !settles_at_once && !self.allowed.contains(&peer) {
            self.counters
                .check_established(&self.limits, direction == Endpoint::Listener)?;
        }
        Ok(())
    }

    /// Lets `peer` bypass the limits (never the bans).
    pub fn exempt_peer(&mut self, peer: PeerId) {
        self.allowed.insert(peer);
        self.sync_keep_alive(peer);
    }

    /// Takes `peer` off the allow list. Returns whether it was on it.
    pub fn remove_exemption(&mut self, peer: &PeerId) -> bool {
        let was = self.allowed.remove(peer);
        self.sync_keep_alive(*peer);
        was
    }

    /// Replaces the limits. Lowering one below the current count closes nothing; new
    /// connections are refused until the count is below it again. Peers waiting for a slot
    /// get a chance at once, spread out in time.
    pub fn set_limits(&mut self, now: Instant, limits: Limits) {
        self.limits = limits;
        self.release_all_slots(now);
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Remote IP addresses the per-IP limits keep state for.
    pub fn tracked_ips(&self) -> usize {
        self.per_ip.tracked()
    }
}
