//! One readable line per manager event.

use std::time::Duration;

use libp2p::PeerId;
use libp2p_connection_manager::{BanTarget, Event};

/// One readable line for an event of the manager.
pub fn describe(event: &Event) -> String {
    match event {
        Event::ConnectionKept {
            peer,
            connection,
            initiator,
            ..
        } => format!("kept connection {connection} with {peer} ({initiator})"),
        Event::DuplicateClosed { peer, kept, closed } => {
            format!("closed duplicate connection {closed} with {peer}; {kept} is kept")
        }
        Event::Disconnected {
            peer,
            connection,
            reason,
            closed_by,
            remaining,
        } => {
            format!("connection {connection} with {peer} {closed_by}: {reason} ({remaining} left)")
        }
        Event::GoodbyeReceived {
            peer,
            connection,
            reason,
            retry_after,
        } => match retry_after {
            Some(delay) => format!(
                "goodbye from {peer} on connection {connection}: {reason}, retry after {delay:?}"
            ),
            None => format!("goodbye from {peer} on connection {connection}: {reason}"),
        },
        Event::Denied {
            peer,
            connection,
            denial,
        } => match peer {
            Some(peer) => format!("refused connection {connection} with {peer}: {denial}"),
            None => format!("refused connection {connection}: {denial}"),
        },
        Event::DialFailed {
            peer,
            connection,
            cause,
        } => {
            let target = peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.to_string());
            format!("dial {connection} to {target} failed: {cause}")
        }
        Event::RedialScheduled {
            peer,
            delay,
            attempt,
        } => format!("redialing {peer} in {delay:.2?} (attempt {attempt})"),
        Event::RedialGaveUp { peer, attempts } => {
            format!("gave up redialing {peer} after {attempts} attempts")
        }
        Event::Banned { target, until } => match until {
            Some(until) => format!(
                "banned {target} for {}",
                format_age(until.saturating_duration_since(std::time::Instant::now()))
            ),
            None => format!("banned {target} until unbanned"),
        },
        Event::Unbanned { target, expired } => {
            let how = if *expired { "expired" } else { "lifted" };
            format!("ban of {target} {how}")
        }
        Event::WaitingForResources { peer, denial } => {
            format!("{peer} waits for a free slot: {denial}")
        }
        Event::PeerForgotten { peer } => format!("forgot {peer}"),
        Event::Trimmed { peers, .. } => format!("trimming {} peer(s): {peers:?}", peers.len()),
        Event::HealthChanged {
            peer,
            connection,
            old,
            new,
        } => match old {
            Some(old) => format!("health of connection {connection} with {peer}: {old} -> {new}"),
            None => format!("health of connection {connection} with {peer}: {new}"),
        },
        Event::ConnectionReplaced { peer, connection } => {
            format!("replacing connection {connection} with {peer}: its health stayed critical")
        }
        Event::PhaseChanged { old, new } => format!("phase {old} -> {new}"),
        Event::Restored(summary) => format!(
            "restored from the peer store: {} ban(s) in force ({} ended while down), {} peer(s), \
             {} redial(s)",
            summary.bans, summary.expired_bans, summary.peers, summary.redials
        ),
        other => format!("{other:?}"),
    }
}

/// `42s`, `3m04s`, `2h05m`.
pub fn format_age(age: Duration) -> String {
    let seconds = (age + Duration::from_millis(500)).as_secs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The event's variant name, e.g. `ConnectionKept`.
pub fn event_kind(event: &Event) -> String {
    let debug = format!("{event:?}");
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// The peer an event is about, if it names one.
pub fn event_peer(event: &Event) -> Option<PeerId> {
    match event {
        Event::ConnectionKept { peer, .. }
        | Event::DuplicateClosed { peer, .. }
        | Event::Disconnected { peer, .. }
        | Event::GoodbyeReceived { peer, .. }
        | Event::RedialScheduled { peer, .. }
        | Event::RedialGaveUp { peer, .. }
        | Event::WaitingForResources { peer, .. }
        | Event::PeerForgotten { peer }
        | Event::HealthChanged { peer, .. }
        | Event::ConnectionReplaced { peer, .. } => Some(*peer),
        Event::Denied { peer, .. } | Event::DialFailed { peer, .. } => *peer,
        Event::Banned {
            target: BanTarget::Peer(peer),
            ..
        }
        | Event::Unbanned {
            target: BanTarget::Peer(peer),
            ..
        } => Some(*peer),
        _ => None,
    }
}
