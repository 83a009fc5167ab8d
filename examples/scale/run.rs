//! The parent's run of one configuration: the phases in order, each waited for with a
//! deadline, and the invariants checked on what both sides reported.

use std::{collections::HashMap, time::Duration};

use anyhow::{bail, Context as _};
use libp2p::PeerId;

use crate::{
    children::Children,
    plan::{Plan, BANNED_GROUP},
    probe::Stalls,
    protocol::{DialerReport, ListenerReport},
    Args, Configuration,
};

/// The time to establish one connection that a deadline allows, on top of a fixed minute
/// (about 30 times what was measured here).
const PER_CONNECTION: Duration = Duration::from_millis(20);

/// What one configuration measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub configuration: Configuration,
    pub connections: usize,
    pub rss_empty: u64,
    pub established: Reached,
    pub dialers_secs: f64,
    pub dialers_rss: u64,
    pub rest: Rest,
    /// `force_trim` to N/2 (bare: `disconnect_peer_id` of as many peers).
    pub trim: Trim,
    /// The trimmed dialers dialing again, back to N.
    pub refill: Reached,
    /// `ban_network` of one /16 (bare: `disconnect_peer_id` of its peers).
    pub ban: Ban,
    /// Invariants: what, whether it held, and the figures.
    pub checks: Vec<(String, bool, String)>,
}

#[derive(Debug, Clone)]
pub struct Reached {
    pub connections: usize,
    pub secs: f64,
    pub rss: u64,
    pub max_per_peer: usize,
    pub incoming_errors: u64,
    pub stalls: Stalls,
}

#[derive(Debug, Clone)]
pub struct Rest {
    pub secs: f64,
    pub cpu_secs: f64,
    pub rss: u64,
    pub connections: usize,
    pub closed: usize,
    pub pings: Option<u64>,
    pub stalls: Stalls,
}

#[derive(Debug, Clone)]
pub struct Trim {
    pub trimmed: usize,
    pub call_us: u64,
    pub call_cpu_us: Option<u64>,
    pub secs: f64,
    pub remaining: usize,
    /// Trimmed dialers running the crate, and those of them that read goodbye
    /// `NetworkRestructure` before their connection closed.
    pub managed_trimmed: usize,
    pub goodbyes: usize,
    pub dialer_closes: usize,
    pub stalls: Stalls,
}

#[derive(Debug, Clone)]
pub struct Ban {
    pub network: String,
    pub in_network: usize,
    pub closed_in_network: usize,
    pub closed_outside: usize,
    pub call_us: u64,
    pub call_cpu_us: Option<u64>,
    pub secs: f64,
    pub remaining: usize,
    pub managed_banned: usize,
    pub goodbyes: usize,
    pub stalls: Stalls,
}

/// Runs one configuration from start to end.
pub fn run(args: &Args, configuration: Configuration) -> anyhow::Result<Outcome> {
    let n = args.connections;
    let plan = Plan {
        managed_every: args.managed_every,
    };
    let establish_limit = Duration::from_secs(60) + PER_CONNECTION * n as u32;
    let mut checks = Vec::new();
    let mut check = |what: &str, pass: bool, detail: String| {
        if !pass {
            eprintln!("  FAILED: {what}: {detail}");
        }
        checks.push((what.to_string(), pass, detail));
    };

    let mut children = Children::spawn_listener(
        &[
            "--role".into(),
            "listener".into(),
            "--configuration".into(),
            configuration.name().into(),
            "--connections".into(),
            n.to_string(),
        ],
        args.verbose,
    )?;
    let result = (|| -> anyhow::Result<Outcome> {
        let ListenerReport::Listening { address, rss } =
            children.listener_report("the listen address", Duration::from_secs(30))?
        else {
            bail!("the listener did not start with its address");
        };
        eprintln!(
            "{}: listening on {address}; {n} dialers",
            configuration.name()
        );
        children.tell_listener(&format!("await {n}"))?;
        children.spawn_dialers(&[
            "--role".into(),
            "dialers".into(),
            "--address".into(),
            address.clone(),
            "--connections".into(),
            n.to_string(),
            "--managed-every".into(),
            args.managed_every.to_string(),
            "--concurrency".into(),
            args.concurrency.to_string(),
        ])?;
        let established = reached(children.listener_report("establishing", establish_limit)?)?;
        let DialerReport::AllConnected {
            secs: dialers_secs,
            rss: dialers_rss,
            ..
        } = children.dialers_connected(establish_limit)?
        else {
            bail!("unexpected dialer report");
        };
        eprintln!(
            "  established {} in {:.2} s",
            established.connections, established.secs
        );
        check(
            "all connections established",
            established.connections == n,
            format!("{} of {n}", established.connections),
        );
        check(
            "at most one connection per peer (established)",
            established.max_per_peer <= 1,
            format!("max {}", established.max_per_peer),
        );

        children.tell_listener(&format!("rest {}", args.rest_secs))?;
        let rest = match children.listener_report(
            "the rest window",
            Duration::from_secs_f64(args.rest_secs + 30.0),
        )? {
            ListenerReport::Rest {
                secs,
                cpu_secs,
                rss,
                connections,
                closed,
                pings,
                stalls,
            } => Rest {
                secs,
                cpu_secs,
                rss,
                connections,
                closed,
                pings,
                stalls,
            },
            other => bail!("expected the rest report, got {other:?}"),
        };
        eprintln!(
            "  at rest: {:.3} s CPU in {:.1} s",
            rest.cpu_secs, rest.secs
        );
        check(
            "no connection lost at rest",
            rest.closed == 0 && rest.connections == n,
            format!("{} closed, {} open", rest.closed, rest.connections),
        );

        let peers: HashMap<PeerId, usize> = (0..n).map(|i| (Plan::peer_id(i), i)).collect();
        let trim = trim_phase(&mut children, configuration, &plan, &peers, n, &mut check)?;
        eprintln!("  trimmed {} in {:.3} s", trim.trimmed, trim.secs);

        children.tell_listener(&format!("await {n}"))?;
        children.tell_dialers("refill")?;
        let refill = reached(children.listener_report("refilling", establish_limit)?)?;
        children.dialers_connected(establish_limit)?;
        check(
            "all connections back after the trim",
            refill.connections == n && refill.max_per_peer <= 1,
            format!(
                "{} of {n}, max {} per peer",
                refill.connections, refill.max_per_peer
            ),
        );

        let ban = ban_phase(&mut children, configuration, &plan, n, &mut check)?;
        eprintln!(
            "  ban closed {} in {:.3} s",
            ban.closed_in_network, ban.secs
        );
        Ok(Outcome {
            configuration,
            connections: n,
            rss_empty: rss,
            established,
            dialers_secs,
            dialers_rss,
            rest,
            trim,
            refill,
            ban,
            checks: Vec::new(),
        })
    })();
    children.finish();
    let mut outcome = result?;
    outcome.checks = checks;
    Ok(outcome)
}

fn reached(report: ListenerReport) -> anyhow::Result<Reached> {
    match report {
        ListenerReport::Reached {
            connections,
            secs,
            rss,
            max_per_peer,
            incoming_errors,
            stalls,
        } => Ok(Reached {
            connections,
            secs,
            rss,
            max_per_peer,
            incoming_errors,
            stalls,
        }),
        other => bail!("expected a count reached, got {other:?}"),
    }
}

type Check<'a> = dyn FnMut(&str, bool, String) + 'a;

/// `force_trim` from `n` to `n / 2` (bare: `disconnect_peer_id` of as many peers): the
/// listener's figures, and which dialers saw what.
fn trim_phase(
    children: &mut Children,
    configuration: Configuration,
    plan: &Plan,
    peers: &HashMap<PeerId, usize>,
    n: usize,
    check: &mut Check<'_>,
) -> anyhow::Result<Trim> {
    let closed_before = children.dialer_state.closed.len();
    children.tell_listener("trim")?;
    let ListenerReport::Trim {
        trimmed,
        call_us,
        call_cpu_us,
        secs,
        target,
        remaining,
        closed_trimmed,
        closed_other,
        max_per_peer,
        stalls,
    } = children.listener_report("the trim", Duration::from_secs(120))?
    else {
        bail!("expected the trim report");
    };
    let mut indices = Vec::with_capacity(trimmed.len());
    for peer in &trimmed {
        let peer: PeerId = peer.parse().context("a trimmed peer's id")?;
        indices.push(
            *peers
                .get(&peer)
                .context("a trimmed peer that is no dialer")?,
        );
    }
    children.dialers_closed(closed_before + trimmed.len(), Duration::from_secs(60))?;
    let closes = &children.dialer_state.closed[closed_before..];
    let mut closed: Vec<usize> = closes.iter().map(|(i, _)| *i).collect();
    closed.sort_unstable();
    indices.sort_unstable();
    let managed_trimmed = indices.iter().filter(|i| plan.is_managed(**i)).count();
    let goodbyes = closes
        .iter()
        .filter(|(i, goodbye)| {
            plan.is_managed(*i) && goodbye.as_deref() == Some("NetworkRestructure")
        })
        .count();
    check(
        "the trim reaches its target (n / 2)",
        trimmed.len() == n - n / 2 && remaining == n / 2 && target == n / 2,
        format!("trimmed {}, {remaining} remain", trimmed.len()),
    );
    check(
        "the trim closes the trimmed peers and no other",
        closed_other == 0 && closed_trimmed == trimmed.len() && closed == indices,
        format!(
            "listener: {closed_trimmed} trimmed and {closed_other} others closed; dialers: {} closed",
            closed.len()
        ),
    );
    if configuration == Configuration::Manager {
        check(
            "every trimmed dialer that runs the crate read goodbye NetworkRestructure",
            goodbyes == managed_trimmed,
            format!("{goodbyes} of {managed_trimmed}"),
        );
    }
    check(
        "at most one connection per peer (after the trim)",
        max_per_peer <= 1,
        format!("max {max_per_peer}"),
    );
    Ok(Trim {
        trimmed: trimmed.len(),
        call_us,
        call_cpu_us,
        secs,
        remaining,
        managed_trimmed,
        goodbyes,
        dialer_closes: closed.len(),
        stalls,
    })
}

/// `ban_network` of the second /16 with every dialer connected (bare: `disconnect_peer_id` of
/// every peer from it).
fn ban_phase(
    children: &mut Children,
    configuration: Configuration,
    plan: &Plan,
    n: usize,
    check: &mut Check<'_>,
) -> anyhow::Result<Ban> {
    let network = Plan::network(BANNED_GROUP);
    let members: Vec<usize> = (0..n).filter(|i| Plan::group(*i) == BANNED_GROUP).collect();
    let closed_before = children.dialer_state.closed.len();
    children.tell_listener(&format!("ban {network}"))?;
    let ListenerReport::Ban {
        network: _,
        in_network,
        closed_in_network,
        closed_outside,
        call_us,
        call_cpu_us,
        secs,
        remaining,
        max_per_peer,
        stalls,
    } = children.listener_report("the ban", Duration::from_secs(120))?
    else {
        bail!("expected the ban report");
    };
    children.dialers_closed(closed_before + closed_in_network, Duration::from_secs(60))?;
    let closes = &children.dialer_state.closed[closed_before..];
    let mut closed: Vec<usize> = closes.iter().map(|(i, _)| *i).collect();
    closed.sort_unstable();
    let managed_banned = members.iter().filter(|i| plan.is_managed(**i)).count();
    let goodbyes = closes
        .iter()
        .filter(|(i, goodbye)| plan.is_managed(*i) && goodbye.as_deref() == Some("Banned"))
        .count();
    check(
        "the ban closes exactly the connections from its /16",
        in_network == members.len()
            && closed_in_network == in_network
            && closed_outside == 0
            && remaining == n - members.len()
            && closed == members,
        format!(
            "{} dialers in {network}; listener: {closed_in_network} of {in_network} closed, \
             {closed_outside} outside; dialers: {} closed",
            members.len(),
            closed.len()
        ),
    );
    if configuration == Configuration::Manager {
        check(
            "every banned dialer that runs the crate read goodbye Banned",
            goodbyes == managed_banned,
            format!("{goodbyes} of {managed_banned}"),
        );
    }
    check(
        "at most one connection per peer (after the ban)",
        max_per_peer <= 1,
        format!("max {max_per_peer}"),
    );
    Ok(Ban {
        network,
        in_network,
        closed_in_network,
        closed_outside,
        call_us,
        call_cpu_us,
        secs,
        remaining,
        managed_banned,
        goodbyes,
        stalls,
    })
}
