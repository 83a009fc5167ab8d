//! The scenarios: each builds a world, changes the network at set times, and reports.

use std::collections::HashSet;

use rand::{seq::SliceRandom, Rng};

use crate::{
    invariants,
    metrics::{quantile, window},
    report::Report,
    setup::*,
};

/// 1. Cold start from a few bootstrap nodes.
pub fn cold(setup: &Setup) -> Report {
    let mut report = Report {
        title: "Cold start".into(),
        share_label: "share of nodes with all their wanted peers".into(),
        ..Report::default()
    };
    let secs = 180;
    let world = cold_start(setup, Flavour::Plain(None), secs, &mut report.share);
    common_rows(&mut report, setup, &world);
    report.row(
        "wanted peers per node, bootstrap nodes",
        format!("{}, {}", setup.wanted, setup.bootstraps),
    );
    report.row("join window", format!("{} s", setup.join_window));
    for goal in [0.5, 0.9, 0.99, 1.0] {
        report.row(
            &format!(
                "time until {}% of nodes have their wanted peers",
                goal * 100.0
            ),
            time_to(&report.share, 0, goal),
        );
    }
    let mut dials: Vec<f64> = world
        .metrics
        .dials_by_node
        .iter()
        .map(|d| *d as f64)
        .collect();
    let mean = dials.iter().sum::<f64>() / dials.len().max(1) as f64;
    report.row(
        "dials per node: mean, p99, max",
        format!(
            "{mean:.2}, {}, {}",
            quantile(&mut dials, 0.99),
            quantile(&mut dials, 1.0)
        ),
    );
    let boot = &world.metrics.bootstrap_arrivals;
    report.row(
        "dials reaching the bootstrap nodes: total, peak per second",
        format!(
            "{}, {}",
            boot.iter().sum::<u32>(),
            boot.iter().max().unwrap_or(&0)
        ),
    );
    report
        .marks
        .push((setup.join_window as usize, "last join".into()));
    report.dials = world.metrics.dials.clone();
    report.violations = invariants::check(&world, world.start);
    if report.share.last().copied().unwrap_or(0.0) < 1.0 {
        report
            .violations
            .push(format!("cold start did not converge in {secs} s"));
    }
    report
}

/// 2. Every node restarts at once: the dial load on the bootstrap nodes.
pub fn restart(setup: &Setup) -> Report {
    let mut report = Report {
        title: "All nodes restart at once".into(),
        share_label: "share of nodes with all their wanted peers".into(),
        ..Report::default()
    };
    let settle = 120;
    let mut world = cold_start(setup, Flavour::Plain(None), settle, &mut report.share);
    let at = world.now;
    let nodes: Vec<(usize, Vec<usize>)> = world
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.wanted.clone()))
        .collect();
    let after = 120;
    run_starting(
        &mut world,
        nodes,
        setup.restart_window,
        Flavour::Plain(None),
        after,
        &mut report.share,
        satisfied,
    );
    common_rows(&mut report, setup, &world);
    report.row("restart window", format!("{} s", setup.restart_window));
    let s = settle as usize;
    let boot = window(&world.metrics.bootstrap_arrivals, s, s + after as usize);
    let bootstraps = setup.bootstraps.max(1) as u32;
    report.row(
        "dials reaching each bootstrap node, peak per second",
        boot.iter().max().unwrap_or(&0) / bootstraps,
    );
    report.row(
        "... in the first second, the next 9 s, the rest",
        format!(
            "{}, {}, {}",
            boot[0] / bootstraps,
            boot[1..10].iter().sum::<u32>() / bootstraps,
            boot[10..].iter().sum::<u32>() / bootstraps
        ),
    );
    let dials = window(&world.metrics.dials, s, s + after as usize);
    report.row(
        "dials per second over the network after the restart, peak",
        dials.iter().max().unwrap_or(&0),
    );
    for goal in [0.9, 0.99, 1.0] {
        report.row(
            &format!("time until {}% have their wanted peers again", goal * 100.0),
            time_to(&report.share, s, goal),
        );
    }
    report.marks.push((s, "restart".into()));
    report.dials = world.metrics.dials.clone();
    report.violations = invariants::check(&world, at);
    report
}

/// 3. Half the network partitioned for two minutes, then healed: the redial storm.
pub fn partition(setup: &Setup) -> Report {
    let mut report = Report {
        title: "Half the network partitioned, then healed".into(),
        share_label: "share of nodes with all their wanted peers".into(),
        ..Report::default()
    };
    let (settle, split, after) = (120u64, 120u64, 240u64);
    let mut world = cold_start(setup, Flavour::Plain(None), settle, &mut report.share);
    let sides: Vec<bool> = (0..setup.nodes).map(|_| world.rng.gen_bool(0.5)).collect();
    world.net.split(sides);
    run(&mut world, split, &mut report.share, satisfied);
    world.net.heal();
    let healed = world.now;
    run(&mut world, after, &mut report.share, satisfied);
    common_rows(&mut report, setup, &world);
    let (s, h) = (settle as usize, (settle + split) as usize);
    let before = window(&world.metrics.dials, s - 60, s);
    let baseline = before.iter().sum::<u32>() as f64 / before.len() as f64;
    let during = window(&world.metrics.dials, s, h);
    let storm = window(&world.metrics.dials, h, h + after as usize);
    let peak = *storm.iter().max().unwrap_or(&0);
    let last_busy = storm
        .iter()
        .rposition(|d| *d as f64 > (peak as f64 * 0.1).max(baseline * 2.0));
    report.row("partition", format!("{split} s, random halves"));
    report.row(
        "dials per second before the split (mean)",
        format!("{baseline:.1}"),
    );
    report.row(
        "dials per second during the split: peak",
        during.iter().max().unwrap_or(&0),
    );
    report.row("redial storm after the heal: peak dials per second", peak);
    report.row(
        "... seconds after the heal until dials/s stay under 10% of the peak",
        last_busy.map_or("0".into(), |l| (l + 1).to_string()),
    );
    report.row(
        "... dials in the 60 s after the heal",
        storm[..60].iter().sum::<u32>(),
    );
    for goal in [0.9, 0.99, 1.0] {
        report.row(
            &format!(
                "time after the heal until {}% have their wanted peers",
                goal * 100.0
            ),
            time_to(&report.share, h, goal),
        );
    }
    report.marks.push((s, "split".into()));
    report.marks.push((h, "heal".into()));
    report.dials = world.metrics.dials.clone();
    report.violations = invariants::check(&world, healed);
    report
}

/// 4. A tenth of the nodes die silently: detected by the inactivity timeout, and replaced.
pub fn dead_peers(setup: &Setup) -> Report {
    let mut report = Report {
        title: "A tenth of the nodes die".into(),
        share_label: "share of live nodes with all their wanted peers live and connected".into(),
        ..Report::default()
    };
    let flavour = Flavour::Plain(Some(5));
    let settle = 120u64;
    let mut world = cold_start(setup, flavour, settle, &mut report.share);
    world.replace_on_give_up = true;
    let mut victims: Vec<usize> = (setup.bootstraps..setup.nodes).collect();
    victims.shuffle(&mut world.rng);
    victims.truncate(setup.nodes / 10);
    let dead: HashSet<usize> = victims.iter().copied().collect();
    let open_to_dead = world
        .links
        .values()
        .filter(|l| {
            l.sides.iter().any(|s| dead.contains(&s.node)) && l.sides.iter().all(|s| s.open)
        })
        .count();
    for &v in &victims {
        world.kill(v);
    }
    let killed = world.now;
    world.metrics.dials_to_dead = 0;
    let after = 360u64;
    run(&mut world, after, &mut report.share, full);
    common_rows(&mut report, setup, &world);
    let k = settle as f64;
    let mut delays: Vec<f64> = world
        .metrics
        .timeouts
        .iter()
        .filter(|(t, _, r)| *t >= k && r.is_some_and(|r| dead.contains(&r)))
        .map(|(t, ..)| t - k)
        .collect();
    report.row("nodes killed", victims.len());
    report.row("connections to them at the time", open_to_dead);
    report.row("closed for a missing ping (detected)", delays.len());
    report.row(
        "detection delay: min, median, p99, max",
        format!(
            "{:.0} s, {:.0} s, {:.0} s, {:.0} s",
            quantile(&mut delays, 0.0),
            quantile(&mut delays, 0.5),
            quantile(&mut delays, 0.99),
            quantile(&mut delays, 1.0)
        ),
    );
    report.row(
        "dials to dead nodes after the kill",
        world.metrics.dials_to_dead,
    );
    report.row(
        "wanted peers replaced after the manager gave up (5 redials)",
        world.metrics.replaced,
    );
    for goal in [0.9, 0.99, 1.0] {
        report.row(
            &format!(
                "time after the kill until {}% have all their wanted peers live and connected",
                goal * 100.0
            ),
            time_to(&report.share, settle as usize, goal),
        );
    }
    report.marks.push((settle as usize, "kill 10%".into()));
    report.dials = world.metrics.dials.clone();
    report.violations = invariants::check(&world, killed);
    report
}

/// 5. Peer exchange: nodes that know only the bootstrap nodes find each other.
pub fn exchange(setup: &Setup) -> Report {
    let mut report = Report {
        title: "Peer exchange convergence".into(),
        share_label: format!("share of nodes with at least {EXCHANGE_DEGREE} peers"),
        ..Report::default()
    };
    let mut world = build(setup);
    if !setup.private {
        for (i, node) in world.nodes.iter_mut().enumerate() {
            node.addr = crate::world::public_address_of(i);
        }
    }
    let nodes = (0..setup.nodes).map(|i| (i, Vec::new())).collect();
    let secs = 300;
    run_starting(
        &mut world,
        nodes,
        setup.join_window,
        Flavour::Exchange,
        secs,
        &mut report.share,
        converged,
    );
    common_rows(&mut report, setup, &world);
    report.row(
        "settings",
        format!(
            "PeerExchange::new().with_auto_connect(true).with_max_peers(8), no wanted peers, {} addresses",
            if setup.private { "private" } else { "public" }
        ),
    );
    for goal in [0.5, 0.9, 0.99, 1.0] {
        report.row(
            &format!(
                "time until {}% of nodes have >= {EXCHANGE_DEGREE} peers",
                goal * 100.0
            ),
            time_to(&report.share, 0, goal),
        );
    }
    let mut degree: Vec<f64> = world
        .nodes
        .iter()
        .map(|n| n.manager.stats().connected_peers as f64)
        .collect();
    report.row(
        "connected peers per node at the end: min, median, max",
        format!(
            "{}, {}, {}",
            quantile(&mut degree, 0.0),
            quantile(&mut degree, 0.5),
            quantile(&mut degree, 1.0)
        ),
    );
    report.row("peer lists delivered", world.metrics.lists);
    report
        .marks
        .push((setup.join_window as usize, "last join".into()));
    report.dials = world.metrics.dials.clone();
    report.violations = invariants::check(&world, world.start);
    world.diag_print();
    report
}
