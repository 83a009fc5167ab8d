//! The Markdown tables: bare against manager with ratios, the manager's trim and ban, the
//! stall bound, and the invariants.

use std::fmt::Write as _;

use crate::{
    probe::Stalls,
    run::{Outcome, Reached},
    Args,
};

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn ratio(manager: f64, bare: f64) -> String {
    if bare > 0.0 {
        format!("{:.2}x", manager / bare)
    } else {
        "-".into()
    }
}

/// Memory per held connection: the resident growth from the empty listener to the end of the
/// rest window, over the connections.
fn per_connection(outcome: &Outcome) -> f64 {
    outcome.rest.rss.saturating_sub(outcome.rss_empty) as f64 / outcome.connections.max(1) as f64
}

fn cpu_per_second(outcome: &Outcome) -> f64 {
    outcome.rest.cpu_secs / outcome.rest.secs.max(f64::EPSILON)
}

/// The longest poll, with the thread's CPU time in it when measured.
fn poll_text(stalls: &Stalls) -> String {
    match stalls.max_cpu_us {
        Some(cpu) => format!("{} (CPU {})", ms(stalls.max_us), ms(cpu)),
        None => ms(stalls.max_us),
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// The machine, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("?".into(), |kib| format!("{:.0} GiB", kib as f64 / 1048576.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {memory} RAM, Linux {}", kernel.trim())
}

pub fn render(args: &Args, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let n = args.connections;
    let bare = outcomes.iter().find(|o| o.configuration.name() == "bare");
    let managed = outcomes.iter().find(|o| o.configuration.name() == "manager");
    let _ = writeln!(
        out,
        "{n} connections to one listener, {} /16s of loopback sources, {} in flight at most; \
         ping every {} s; rest window {} s. Machine: {}.\n",
        crate::plan::GROUPS,
        args.concurrency,
        crate::PING_INTERVAL.as_secs(),
        args.rest_secs,
        machine()
    );

    let _ = writeln!(out, "| measure | bare | manager | manager / bare |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let row = |out: &mut String, name: &str, f: &dyn Fn(&Outcome) -> String, r: Option<String>| {
        let cell = |o: Option<&Outcome>| o.map_or("-".into(), f);
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            cell(bare),
            cell(managed),
            r.unwrap_or_default()
        );
    };
    let both = |f: &dyn Fn(&Outcome) -> f64| match (bare, managed) {
        (Some(b), Some(m)) => Some(ratio(f(m), f(b))),
        _ => None,
    };
    row(
        &mut out,
        "connections established",
        &|o| o.established.connections.to_string(),
        None,
    );
    row(
        &mut out,
        "time to establish them (listener, from the first inbound)",
        &|o| format!("{:.2} s", o.established.secs),
        both(&|o| o.established.secs),
    );
    row(
        &mut out,
        "inbound connections that failed before established",
        &|o| o.established.incoming_errors.to_string(),
        None,
    );
    row(
        &mut out,
        "listener RSS: empty / all established / after the rest window",
        &|o| {
            format!(
                "{} / {} / {}",
                mib(o.rss_empty),
                mib(o.established.rss),
                mib(o.rest.rss)
            )
        },
        None,
    );
    row(
        &mut out,
        "memory per connection (RSS growth / connections)",
        &|o| format!("{:.1} KiB", per_connection(o) / 1024.0),
        both(&per_connection),
    );
    row(
        &mut out,
        "CPU at rest (listener process)",
        &|o| {
            format!(
                "{:.1} ms/s ({:.2}% of a core)",
                cpu_per_second(o) * 1000.0,
                cpu_per_second(o) * 100.0
            )
        },
        both(&cpu_per_second),
    );
    row(
        &mut out,
        "pings answered at rest (seen by the harness)",
        &|o| {
            o.rest
                .pings
                .map_or("kept by the manager".into(), |p| p.to_string())
        },
        None,
    );
    row(
        &mut out,
        "swarm busy at rest (time inside its polls)",
        &|o| {
            format!(
                "{:.1} ms/s",
                o.rest.stalls.busy_us as f64 / 1000.0 / o.rest.secs.max(f64::EPSILON)
            )
        },
        both(&|o| o.rest.stalls.busy_us as f64),
    );
    row(
        &mut out,
        "longest poll while establishing (wall, CPU)",
        &|o| poll_text(&o.established.stalls),
        both(&|o| o.established.stalls.max_us as f64),
    );
    row(
        &mut out,
        "longest poll at rest (wall)",
        &|o| ms(o.rest.stalls.max_us),
        both(&|o| o.rest.stalls.max_us as f64),
    );
    row(
        &mut out,
        "polls over 10 ms (establishing / at rest)",
        &|o| format!("{} / {}", o.established.stalls.over_10ms, o.rest.stalls.over_10ms),
        None,
    );
    row(
        &mut out,
        "dialer process: time to connect all / its RSS",
        &|o| format!("{:.2} s / {}", o.dialers_secs, mib(o.dialers_rss)),
        None,
    );

    if let Some(m) = managed {
        let _ = writeln!(out, "\nManager only:\n");
        let _ = writeln!(
            out,
            "| step | result | call on the swarm's task | longest poll (wall, CPU) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|");
        if let Some(t) = &m.trim {
            let _ = writeln!(
                out,
                "| `force_trim()` {n} -> {} | {} trimmed, all closed {:.3} s after the call, {} \
                 remain; goodbye `NetworkRestructure` read by {} of the {} trimmed dialers that run \
                 the crate; {} dialers saw their connection close | {} | {} |",
                n / 2,
                t.trimmed,
                t.secs,
                t.remaining,
                t.goodbyes,
                t.managed_trimmed,
                t.dialer_closes,
                ms(t.call_us),
                poll_text(&t.stalls)
            );
        }
        if let Some(r) = &m.refill {
            let _ = writeln!(
                out,
                "| the trimmed dialers dial again | back to {} in {:.2} s | - | {} |",
                r.connections,
                r.secs,
                poll_text(&r.stalls)
            );
        }
        if let Some(b) = &m.ban {
            let _ = writeln!(
                out,
                "| `ban_network({}, None)` | {} of {} connections from it closed {:.3} s after \
                 the call, {} others, {} remain; goodbye `Banned` read by {} of {} crate \
                 dialers | {} | {} |",
                b.network,
                b.closed_in_network,
                b.in_network,
                b.secs,
                b.closed_outside,
                b.remaining,
                b.goodbyes,
                b.managed_banned,
                ms(b.call_us),
                poll_text(&b.stalls)
            );
        }
    }

    let bound_us = (args.stall_bound_ms * 1000.0) as u64;
    let _ = writeln!(
        out,
        "\nStall bound: no single poll of the swarm, and no call on its task, longer than {} ms.\n",
        args.stall_bound_ms
    );
    let _ = writeln!(out, "| configuration | phase | longest | verdict |");
    let _ = writeln!(out, "|---|---|---:|---|");
    for o in outcomes {
        let mut phases: Vec<(&str, &Stalls)> = vec![
            ("establishing", &o.established.stalls),
            ("at rest", &o.rest.stalls),
        ];
        if let Some(t) = &o.trim {
            phases.push(("trim", &t.stalls));
        }
        if let Some(Reached { stalls, .. }) = &o.refill {
            phases.push(("dialing again", stalls));
        }
        if let Some(b) = &o.ban {
            phases.push(("ban", &b.stalls));
        }
        for (phase, stalls) in phases {
            let worst = stalls.worst_us();
            let _ = writeln!(
                out,
                "| {} | {phase} | {} | {} |",
                o.configuration.name(),
                ms(worst),
                verdict(worst <= bound_us)
            );
        }
    }

    let _ = writeln!(out, "\nInvariants:\n");
    for o in outcomes {
        for (what, pass, detail) in &o.checks {
            let _ = writeln!(
                out,
                "- {}: {what}: {} ({detail})",
                o.configuration.name(),
                if *pass { "ok" } else { "FAILED" }
            );
        }
    }
    out
}
