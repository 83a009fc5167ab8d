//! `node ctl`: the admin API from the command line, in the manner of `ipfs swarm peers`.
//! Prints the API's JSON answer; exits 1 with the API's error when it refuses.

use std::{process::ExitCode, time::Duration};

use serde_json::{json, Value};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Ask a running node (started with `--admin`) through its admin API.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The node's admin address, `HOST:PORT` or `http://HOST:PORT`.
    #[arg(
        long,
        value_name = "ADDR",
        env = "LIBP2P_NODE_ADMIN",
        default_value = "127.0.0.1:5001"
    )]
    admin: String,
    #[command(subcommand)]
    command: CtlCommand,
}

/// What to ask.
#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// The node's peer id, addresses, phase and counts.
    Status,
    /// Connected peers: each connection's direction, transport, health, RTT, and why it is kept.
    Peers,
    /// Bans in force, with their end.
    Bans,
    /// Peers the node redials when lost, with the next redial.
    Wanted,
    /// The most recent events of the manager.
    Events,
    /// Dial an address; with `/p2p/<peer id>` the node keeps the peer.
    Connect { address: String },
    /// Say goodbye to a peer and stop wanting it.
    Disconnect { peer: String },
    /// Ban a peer id, IP address or IP network.
    Ban {
        target: String,
        /// For this many seconds; until unbanned without it.
        #[arg(long = "for", value_name = "SECS")]
        seconds: Option<u64>,
    },
    /// Lift a ban.
    Unban { target: String },
    /// Keep a peer out of trimming.
    Protect {
        peer: String,
        #[arg(long)]
        tag: Option<String>,
    },
    /// Lift a protection.
    Unprotect {
        peer: String,
        #[arg(long)]
        tag: Option<String>,
    },
    /// Trim down to the low watermark now.
    Trim,
}

/// Runs one `ctl` command.
pub fn run(args: CtlArgs) -> ExitCode {
    let base = if args.admin.contains("://") {
        args.admin.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", args.admin)
    };
    let (path, body) = match args.command {
        CtlCommand::Status => ("status", None),
        CtlCommand::Peers => ("peers", None),
        CtlCommand::Bans => ("bans", None),
        CtlCommand::Wanted => ("wanted", None),
        CtlCommand::Events => ("events", None),
        CtlCommand::Connect { address } => ("connect", Some(json!({ "address": address }))),
        CtlCommand::Disconnect { peer } => ("disconnect", Some(json!({ "peer": peer }))),
        CtlCommand::Ban { target, seconds } => {
            ("ban", Some(json!({ "target": target, "seconds": seconds })))
        }
        CtlCommand::Unban { target } => ("unban", Some(json!({ "target": target }))),
        CtlCommand::Protect { peer, tag } => ("protect", Some(json!({ "peer": peer, "tag": tag }))),
        CtlCommand::Unprotect { peer, tag } => {
            ("unprotect", Some(json!({ "peer": peer, "tag": tag })))
        }
        CtlCommand::Trim => ("trim", Some(json!({}))),
    };
    let url = format!("{base}/api/{path}");
    match request(&url, body.as_ref()) {
        Ok((status, answer)) => {
            let pretty = serde_json::to_string_pretty(&answer).unwrap_or_default();
            if status < 400 {
                println!("{pretty}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{url}: {status}: {pretty}");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("cannot reach the node at {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// GET `url`, or POST `body` to it as JSON; the status and the JSON answer.
fn request(url: &str, body: Option<&Value>) -> Result<(u16, Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into();
    let mut response = match body {
        Some(body) => agent.post(url).send_json(body)?,
        None => agent.get(url).call()?,
    };
    let status = response.status().as_u16();
    let answer = response.body_mut().read_json::<Value>()?;
    Ok((status, answer))
}
