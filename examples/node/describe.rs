//! One readable line per manager event.

use std::time::Duration;

use libp2p::PeerId;
use libp2p_connection_manager::{BanTarget, Event};

/// One readable line for an event of the manager: its `Display`, with the time a ban has left.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Banned {
            target,
            until: Some(until),
        } => format!(
            "banned {target} for {}",
            format_age(until.saturating_duration_since(std::time::Instant::now()))
        ),
        other => other.to_string(),
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
