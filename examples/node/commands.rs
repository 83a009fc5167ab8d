//! What an operator can ask the running node, from the admin API or standard input
//! (`--stdin-commands`), applied in the swarm loop.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use libp2p::{multiaddr::Protocol, swarm::DialError, Multiaddr, PeerId, Swarm};
use libp2p_connection_manager::{BanTarget, Denial};
use tokio::sync::mpsc;

use crate::{state::NodeState, status::status_table, swarm::NodeBehaviour};

/// One command to the node.
#[derive(Debug, Clone)]
pub enum NodeCommand {
    /// Dial an address: kept by the manager with `/p2p/<peer id>`, once with `Swarm::dial`
    /// without.
    Connect(Multiaddr),
    /// Close the connection to a peer with goodbye `Normal`, and stop wanting it.
    Disconnect(PeerId),
    /// Ban a peer or a network, until unbanned (`None`) or for a while.
    Ban(BanTarget, Option<Duration>),
    /// Lift a ban.
    Unban(BanTarget),
    /// Keep a peer out of trimming, under a tag.
    Protect(PeerId, String),
    /// Lift one protection tag.
    Unprotect(PeerId, String),
    /// Trim down to the low watermark now.
    Trim,
    /// Set a tag's value on a peer (trimming keeps high values).
    Tag(PeerId, String, i64),
    /// Remember a dial address for a peer.
    Address(PeerId, Multiaddr),
    /// Write the store's changes and wait; prints `peer store flushed <label>`.
    Flush(String),
    /// Print the status table.
    Status,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A word of the command could not be read.
    #[error("cannot read {what} {text:?}: {reason}")]
    Parse {
        /// What was expected.
        what: &'static str,
        /// What was given.
        text: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An unknown command, or the wrong number of words.
    #[error(
        "expected dial <multiaddr>, ban <peer id|network> [secs], unban <peer id|network>, \
         disconnect <peer id>, protect <peer id> [tag], unprotect <peer id> [tag], trim, \
         tag <peer id> <tag> <value>, address <peer id> <multiaddr>, flush [label] or status"
    )]
    Usage,
    /// The manager refused to dial the peer.
    #[error("{0}")]
    Denied(#[from] Denial),
    /// The swarm refused to dial the address.
    #[error("{0}")]
    Dial(#[from] DialError),
    /// Nothing to disconnect.
    #[error("not connected to {0} and not wanted")]
    NotConnected(PeerId),
    /// Nothing to unban.
    #[error("{0} is not banned")]
    NotBanned(BanTarget),
    /// The peer store refused the flush.
    #[error("peer store: flush failed: {0}")]
    Flush(String),
}

/// The tag `protect` uses when none is given.
pub const DEFAULT_PROTECT_TAG: &str = "operator";

/// Parses `text` as a `T`, naming `what` when it does not parse.
pub fn parse<T>(what: &'static str, text: &str) -> Result<T, CommandError>
where
    T: std::str::FromStr<Err: std::fmt::Display>,
{
    text.parse().map_err(|error: T::Err| CommandError::Parse {
        what,
        text: text.to_owned(),
        reason: error.to_string(),
    })
}

/// A peer id, an IP address (a /32 or /128 network) or an IP network.
pub fn parse_ban_target(text: &str) -> Result<BanTarget, CommandError> {
    if let Ok(peer) = text.parse::<PeerId>() {
        return Ok(BanTarget::Peer(peer));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(BanTarget::Network(IpNet::from(ip)));
    }
    parse::<IpNet>("a peer id, IP address or network", text).map(BanTarget::Network)
}

impl NodeCommand {
    /// One command of a `--stdin-commands` line.
    pub fn parse_line(command: &str) -> Result<Option<Self>, CommandError> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let seconds = |text: &str| parse::<u64>("seconds", text).map(Duration::from_secs);
        let command = match words.as_slice() {
            [] => return Ok(None),
            ["dial", address] => Self::Connect(parse("a multiaddr", address)?),
            ["ban", target] => Self::Ban(parse_ban_target(target)?, None),
            ["ban", target, secs] => Self::Ban(parse_ban_target(target)?, Some(seconds(secs)?)),
            ["unban", target] => Self::Unban(parse_ban_target(target)?),
            ["disconnect", peer] => Self::Disconnect(parse("a peer id", peer)?),
            ["protect", peer, tag @ ..] | ["unprotect", peer, tag @ ..] if tag.len() <= 1 => {
                let peer = parse("a peer id", peer)?;
                let tag = tag.first().unwrap_or(&DEFAULT_PROTECT_TAG).to_string();
                if words[0] == "protect" {
                    Self::Protect(peer, tag)
                } else {
                    Self::Unprotect(peer, tag)
                }
            }
            ["trim"] => Self::Trim,
            ["tag", peer, tag, value] => Self::Tag(
                parse("a peer id", peer)?,
                (*tag).to_owned(),
                parse("a tag value", value)?,
            ),
            ["address", peer, address] => {
                Self::Address(parse("a peer id", peer)?, parse("a multiaddr", address)?)
            }
            ["flush", label @ ..] => Self::Flush(label.join(" ")),
            ["status"] => Self::Status,
            _ => return Err(CommandError::Usage),
        };
        Ok(Some(command))
    }

    /// Carries the command out; on success, one line that says what was done.
    pub fn apply(
        self,
        swarm: &mut Swarm<NodeBehaviour>,
        state: &mut NodeState,
    ) -> Result<String, CommandError> {
        let manager = &mut swarm.behaviour_mut().manager;
        Ok(match self {
            Self::Connect(address) => return dial_address(swarm, state, address),
            Self::Disconnect(peer) => {
                if !manager.remove_peer(peer) {
                    return Err(CommandError::NotConnected(peer));
                }
                format!("disconnecting {peer}")
            }
            Self::Ban(target, duration) => {
                match target {
                    BanTarget::Peer(peer) => {
                        state.know(peer);
                        manager.ban_peer(peer, duration);
                    }
                    BanTarget::Network(network) => manager.ban_network(network, duration),
                }
                match duration {
                    Some(duration) => format!("banned {target} for {duration:?}"),
                    None => format!("banned {target} until unbanned"),
                }
            }
            Self::Unban(target) => {
                let lifted = match target {
                    BanTarget::Peer(peer) => manager.unban_peer(peer),
                    BanTarget::Network(network) => manager.unban_network(network),
                };
                if !lifted {
                    return Err(CommandError::NotBanned(target));
                }
                format!("unbanned {target}")
            }
            Self::Protect(peer, tag) => {
                manager.protect(peer, tag.clone());
                let message = format!("protected {peer} ({tag})");
                state.protect(peer, tag);
                message
            }
            Self::Unprotect(peer, tag) => {
                manager.unprotect(&peer, &tag);
                state.unprotect(&peer, &tag);
                format!("{peer} no longer protected by {tag}")
            }
            Self::Trim => {
                let trimmed = manager.force_trim();
                format!("trimming {} peer(s)", trimmed.len())
            }
            Self::Tag(peer, tag, value) => {
                state.know(peer);
                manager.tag_peer(peer, tag.clone(), value);
                format!("tagged {peer}: {tag} = {value}")
            }
            Self::Address(peer, address) => {
                state.know(peer);
                manager.add_address(peer, address.clone());
                format!("address {address} for {peer}")
            }
            Self::Flush(label) => match manager.flush_store() {
                Ok(()) => format!("peer store flushed {label}").trim_end().to_owned(),
                Err(error) => return Err(CommandError::Flush(error.to_string())),
            },
            Self::Status => status_table(swarm),
        })
    }
}

/// Dials through the manager when the address names the peer, with `Swarm::dial` otherwise.
pub fn dial_address(
    swarm: &mut Swarm<NodeBehaviour>,
    state: &mut NodeState,
    address: Multiaddr,
) -> Result<String, CommandError> {
    let mut transport_address = address.clone();
    match transport_address.pop() {
        Some(Protocol::P2p(peer)) => {
            state.know(peer);
            swarm
                .behaviour_mut()
                .manager
                .add_peer(peer, vec![transport_address])?;
            Ok(format!("dialing {address} (kept by the manager)"))
        }
        _ => {
            swarm.dial(address.clone())?;
            Ok(format!("dialing {address} (once, no peer id)"))
        }
    }
}

/// Lines of standard input, read on a thread of their own until it ends.
pub fn read_stdin_commands() -> mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The next command line; never resolves without `--stdin-commands` or once stdin ended.
pub async fn next_command(commands: &mut Option<mpsc::UnboundedReceiver<String>>) -> String {
    if let Some(receiver) = commands {
        if let Some(line) = receiver.recv().await {
            return line;
        }
    }
    *commands = None;
    std::future::pending().await
}

/// One line of commands, `;` between them: all applied before the swarm runs again, so the
/// peer store gets their changes in one batch.
pub fn run_stdin_line(swarm: &mut Swarm<NodeBehaviour>, state: &mut NodeState, line: &str) {
    for text in line.split(';').map(str::trim) {
        let result = NodeCommand::parse_line(text)
            .and_then(|command| command.map(|c| c.apply(swarm, state)).transpose());
        match result {
            Ok(Some(message)) => println!("{}", message.trim_end()),
            Ok(None) => {}
            Err(CommandError::Flush(error)) => println!("peer store: flush failed: {error}"),
            Err(error) => println!("command refused: {text}: {error}"),
        }
    }
}
