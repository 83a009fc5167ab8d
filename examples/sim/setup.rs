//! What the scenarios share: the nodes' configuration, starting nodes, running and sampling.

use std::{collections::HashSet, time::Duration};

use libp2p_connection_manager::core::{Config, PeerExchange};
use rand::Rng;
use web_time::Instant;

use crate::{
    net::{Host, NetParams},
    report::Report,
    world::World,
};

/// What every scenario shares.
#[derive(Debug, Clone)]
pub struct Setup {
    pub nodes: usize,
    pub seed: u64,
    /// Peers each node's application asks for.
    pub wanted: usize,
    pub bootstraps: usize,
    /// Nodes join at random times over this many seconds.
    pub join_window: f64,
    /// All nodes restart within this many seconds (restart scenario).
    pub restart_window: f64,
    /// Collect and print diagnostics, a time-series row every this many seconds.
    pub diagnose: Option<usize>,
    /// Peer exchange on private addresses (10.0.0.0/8) instead of public ones.
    pub private: bool,
    pub params: NetParams,
}

/// How nodes are configured.
#[derive(Clone, Copy)]
pub(crate) enum Flavour {
    /// The defaults, bootstrap peers, and `max_redial_attempts` if given.
    Plain(Option<u32>),
    /// Peer exchange with auto-connect, no wanted peers.
    Exchange,
}

pub(crate) fn config(world: &World, i: usize, flavour: Flavour) -> Config {
    let mut config = Config::new();
    for &b in &world.bootstrap {
        if b != i {
            config = config.with_bootstrap_peer(world.nodes[b].peer, world.nodes[b].addr.clone());
        }
    }
    match flavour {
        Flavour::Plain(attempts) => config.with_max_redial_attempts(attempts),
        Flavour::Exchange => config.with_peer_exchange(Some(
            PeerExchange::new()
                .with_auto_connect(true)
                .with_max_peers(EXCHANGE_DEGREE),
        )),
    }
}

pub(crate) fn build(setup: &Setup) -> World {
    // Every manager's maps iterate in the same order in every run of this seed (std's random
    // hasher made later scenarios differ by a few events in 400,000).
    libp2p_connection_manager::core::fix_hash_keys_for_this_thread(setup.seed);
    let mut world = World::new(setup.nodes, setup.seed, setup.params.clone());
    if let Some(every) = setup.diagnose {
        world.diag.on = true;
        world.diag.every = every;
    }
    world.bootstrap = (0..setup.bootstraps.min(setup.nodes)).collect();
    for &b in &world.bootstrap {
        world.net.unreachable[b] = false;
    }
    world.net.hosts.iter_mut().for_each(|h| *h = Host::Dead);
    world
}

/// `k` distinct peers other than `i` that accept connections and are not bootstrap nodes.
pub(crate) fn pick_wanted(world: &mut World, i: usize, k: usize) -> Vec<usize> {
    let n = world.nodes.len();
    let candidates = n.saturating_sub(1 + world.bootstrap.len());
    let mut picked = HashSet::new();
    while picked.len() < k.min(candidates) {
        let p = world.rng.gen_range(0..n);
        if p != i && !world.net.unreachable[p] && !world.bootstrap.contains(&p) {
            picked.insert(p);
        }
    }
    let mut picked: Vec<usize> = picked.into_iter().collect();
    picked.sort_unstable();
    picked
}

/// Starts node `i` and asks for its wanted peers.
pub(crate) fn start(world: &mut World, i: usize, flavour: Flavour, wanted: &[usize]) {
    let config = config(world, i, flavour);
    world.start_node(i, config);
    world.nodes[i].wanted.clear();
    for &w in wanted {
        world.add_peer(i, w);
    }
}

/// Starts `nodes` at random times over `window` seconds from now, running `secs` seconds in
/// all and sampling `measure` every second.
pub(crate) fn run_starting(
    world: &mut World,
    nodes: Vec<(usize, Vec<usize>)>,
    window: f64,
    flavour: Flavour,
    secs: u64,
    share: &mut Vec<f64>,
    measure: fn(&World) -> f64,
) {
    let from = world.now;
    let mut order: Vec<(Instant, usize, Vec<usize>)> = nodes
        .into_iter()
        .map(|(i, w)| {
            (
                from + Duration::from_secs_f64(world.rng.gen_range(0.0..=window.max(0.0))),
                i,
                w,
            )
        })
        .collect();
    order.sort_by_key(|(t, i, _)| (*t, *i));
    let mut pending = order.into_iter().peekable();
    for _ in 0..secs {
        let end = world.now + Duration::from_secs(1);
        while let Some((at, i, wanted)) = pending.next_if(|(at, ..)| *at <= end) {
            world.run_until(at);
            start(world, i, flavour, &wanted);
        }
        world.run_until(end);
        share.push(measure(world));
        world.diag_second();
    }
}

/// Runs `secs` seconds, sampling `measure` every second.
pub(crate) fn run(world: &mut World, secs: u64, share: &mut Vec<f64>, measure: fn(&World) -> f64) {
    world.run_for(secs, |w| share.push(measure(w)));
}

pub(crate) fn satisfied(world: &World) -> f64 {
    world.satisfied_share()
}

/// Every node starts over `join_window` and settles: the common start of scenarios 2 to 4.
pub(crate) fn cold_start(
    setup: &Setup,
    flavour: Flavour,
    secs: u64,
    share: &mut Vec<f64>,
) -> World {
    let mut world = build(setup);
    let nodes: Vec<(usize, Vec<usize>)> = (0..setup.nodes)
        .map(|i| {
            let wanted = if world.bootstrap.contains(&i) {
                Vec::new()
            } else {
                pick_wanted(&mut world, i, setup.wanted)
            };
            (i, wanted)
        })
        .collect();
    run_starting(
        &mut world,
        nodes,
        setup.join_window,
        flavour,
        secs,
        share,
        satisfied,
    );
    world
}

/// The first second from `from` at which `share` reaches `goal`, in seconds after `from`.
pub(crate) fn time_to(share: &[f64], from: usize, goal: f64) -> String {
    share
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, s)| **s >= goal - 1e-9)
        .map_or("not reached".to_string(), |(s, _)| {
            format!("{} s", s + 1 - from)
        })
}

pub(crate) fn common_rows(report: &mut Report, setup: &Setup, world: &World) {
    report.row("nodes", setup.nodes);
    report.row("seed", setup.seed);
    report.row("events run", world.events_run);
    report.row("connections established", world.metrics.established);
}

/// Share of live nodes whose wanted peers are all alive and connected.
pub(crate) fn full(world: &World) -> f64 {
    let live: Vec<usize> = (0..world.nodes.len())
        .filter(|i| world.net.hosts[*i] == Host::Up)
        .collect();
    let ok = live
        .iter()
        .filter(|&&i| {
            let node = &world.nodes[i];
            node.wanted.iter().all(|w| {
                world.net.hosts[*w] == Host::Up && node.manager.is_connected(&world.nodes[*w].peer)
            })
        })
        .count();
    ok as f64 / live.len().max(1) as f64
}

/// Peers a node wants connected before peer exchange counts it converged.
pub(crate) const EXCHANGE_DEGREE: usize = 8;

pub(crate) fn converged(world: &World) -> f64 {
    let ok = world
        .nodes
        .iter()
        .filter(|n| n.manager.stats().connected_peers >= EXCHANGE_DEGREE)
        .count();
    ok as f64 / world.nodes.len().max(1) as f64
}
