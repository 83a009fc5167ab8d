//! Why the manager keeps a peer: one value per peer, so that combinations that make no sense
//! (a peer both let go and wanted, "no longer seen by discovery" on a peer the application
//! dialed) cannot be written.
//!
//! Only [`Manager::set_intent`] changes it, and keeps the count of peers discovery brought
//! (for `Config::with_max_discovered_peers`) in step.

use super::*;

/// What the manager means to do with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Intent {
    /// Nobody asked for it (it dialed in, or someone else dialed it): its connections live as
    /// long as the swarm and trimming let them.
    #[default]
    Unasked,
    /// Kept connected and redialed when lost.
    Wanted(Asker),
    /// Let go on purpose (disconnected, banned or trimmed): neither redialed nor rescued until
    /// someone asks for it again, and peer exchange does not bring it back.
    Parked,
}

/// Who wants a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// The application (`dial`, or a restored peer store): written to a store, never trimmed,
    /// never forgotten by the manager alone.
    Application,
    /// Discovery (`add_discovered`, or learned automatically). Once discovery no longer sees it
    /// (`seen: false`), it is forgotten when its connection is gone and one redial failed.
    Discovery {
        /// Discovery still reports it.
        seen: bool,
    },
    /// A peer-exchange list named it: forgotten once unreachable, like a peer discovery lost.
    Hearsay,
}

impl Intent {
    pub(crate) fn is_wanted(self) -> bool {
        matches!(self, Intent::Wanted(_))
    }

    pub(crate) fn is_parked(self) -> bool {
        self == Intent::Parked
    }

    /// Wanted because the application asked for it.
    pub(crate) fn is_applications(self) -> bool {
        self == Intent::Wanted(Asker::Application)
    }

    /// Wanted because discovery brought it (counted against the discovered-peer cap).
    pub(crate) fn is_discovery(self) -> bool {
        matches!(self, Intent::Wanted(Asker::Discovery { .. }))
    }

    /// Wanted only until it is unreachable: discovery lost it, or only hearsay named it.
    pub(crate) fn is_fading(self) -> bool {
        matches!(
            self,
            Intent::Wanted(Asker::Discovery { seen: false } | Asker::Hearsay)
        )
    }
}

impl Manager {
    /// Sets what the manager means to do with `peer` (a record is made if needed). A peer no
    /// longer wanted stops waiting for a slot.
    pub(super) fn set_intent(&mut self, peer: PeerId, intent: Intent) {
        let record = self.peers.or_default(peer);
        let old = std::mem::replace(&mut record.intent, intent);
        if !intent.is_wanted() {
            record.waiting = None;
        }
        match (old.is_discovery(), intent.is_discovery()) {
            (false, true) => self.discovered += 1,
            (true, false) => self.discovered -= 1,
            _ => {}
        }
    }

    /// What the manager means to do with `peer`.
    pub(super) fn intent(&self, peer: &PeerId) -> Intent {
        self.peers.get(peer).map_or(Intent::Unasked, |r| r.intent)
    }
}
