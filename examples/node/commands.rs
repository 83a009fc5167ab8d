//! Commands read from standard input (`--stdin-commands`).

use std::time::Duration;

use libp2p::Swarm;
use tokio::sync::mpsc;

use crate::{node::dial_address, status::print_status, swarm::NodeBehaviour};

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
pub fn run_stdin_command(swarm: &mut Swarm<NodeBehaviour>, line: &str) {
    for command in line.split(';').map(str::trim) {
        if let Err(error) = run_one_command(swarm, command) {
            println!("command refused: {command}: {error}");
        }
    }
}

pub fn run_one_command(swarm: &mut Swarm<NodeBehaviour>, command: &str) -> Result<(), String> {
    pub fn parse<T: std::str::FromStr<Err: std::fmt::Display>>(text: &str) -> Result<T, String> {
        text.parse()
            .map_err(|error: T::Err| format!("{text}: {error}"))
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let manager = &mut swarm.behaviour_mut().manager;
    match words.as_slice() {
        [] => {}
        ["dial", address] => dial_address(swarm, parse(address)?),
        ["ban", peer] => manager.ban_peer(parse(peer)?, None),
        ["ban", peer, secs] => {
            manager.ban_peer(parse(peer)?, Some(Duration::from_secs(parse(secs)?)));
        }
        ["disconnect", peer] => {
            manager.disconnect(parse(peer)?);
        }
        ["tag", peer, tag, value] => manager.tag_peer(parse(peer)?, *tag, parse(value)?),
        ["address", peer, address] => manager.add_address(parse(peer)?, parse(address)?),
        ["flush", label @ ..] => match manager.flush_store() {
            Ok(()) => println!(
                "{}",
                format!("peer store flushed {}", label.join(" ")).trim_end()
            ),
            Err(error) => println!("peer store: flush failed: {error}"),
        },
        ["status"] => print_status(swarm),
        _ => {
            return Err(
                "expected dial <multiaddr>, ban <peer id> [secs], disconnect <peer id>, \
                        tag <peer id> <tag> <value>, address <peer id> <multiaddr>, \
                        flush [label] or status"
                    .into(),
            )
        }
    }
    Ok(())
}
