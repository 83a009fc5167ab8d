//! Which connections the manager holds open while they are idle.
//!
//! A connection is kept alive for a reason the application gave: the peer is wanted (`dial`,
//! discovery, a restored store), protected (`protect`), allow-listed, or a bootstrap peer.
//! Every other connection (an inbound stranger, a `Swarm::dial` a Kademlia query made) idles
//! out on the swarm's idle timeout exactly as it would without the manager, so that dropping
//! the manager into a node does not make it hold every peer it ever touched.
//! [`Config::with_keep_alive(false)`](crate::Config::with_keep_alive) keeps none.

use super::*;

impl Manager {
    /// Whether the manager holds `peer`'s connections open while idle: the peer is wanted,
    /// protected, allow-listed or a bootstrap peer (and keep-alive is on,
    /// [`Config::with_keep_alive`](crate::Config::with_keep_alive)). Other connections idle out
    /// on the swarm's idle timeout.
    pub fn keeps_alive(&self, peer: &PeerId) -> bool {
        self.config.keep_alive
            && (self.peers.get(peer).is_some_and(|r| r.intent.is_wanted())
                || self.is_protected(peer)
                || self.allowed.contains(peer)
                || self.config.bootstrap_peers.iter().any(|(p, _)| p == peer))
    }

    /// Tells the handlers of `peer`'s open connections whether to keep them alive, where that
    /// changed. Called wherever one of the reasons above changes for a connected peer.
    pub(super) fn sync_keep_alive(&mut self, peer: PeerId) {
        let keep = self.keeps_alive(&peer);
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        for connection in record.connections.iter_mut().filter(|c| c.is_open()) {
            if connection.kept_alive != keep {
                connection.kept_alive = keep;
                self.actions.push_back(Action::KeepAlive {
                    peer,
                    connection: connection.id,
                    keep,
                });
            }
        }
    }
}
