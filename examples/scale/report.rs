//! The Markdown tables: bare against manager with ratios (establishing, at rest, trim, ban),
//! the stall bound, and the invariants.

use std::fmt::Write as _;

use crate::{probe::Stalls, run::Outcome, Args, Configuration};

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

/// Goodbyes read of those that could be: the bare listener sends none.
fn goodbyes(outcome: &Outcome, read: usize, of: usize) -> String {
    match outcome.configuration {
        Configuration::Bare => "none sent".into(),
        Configuration::Manager => format!("{read} of {of}"),
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
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib as f64 / 1048576.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory} RAM, Linux {}",
        kernel.trim()
    )
}

/// The 1-minute load average, from /proc/loadavg: the machine is shared.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The tables; `load_before` is the load average when the run started.
pub fn render(args: &Args, outcomes: &[Outcome], load_before: &str) -> String {
    let mut out = String::new();
    let n = args.connections;
    let bare = outcomes.iter().find(|o| o.configuration.name() == "bare");
    let managed = outcomes
        .iter()
        .find(|o| o.configuration.name() == "manager");
    let _ = writeln!(
        out,
        "{n} connections to one listener, {} /16s of loopback sources, {} in flight at most; \
         ping every {} s; rest window {} s. Machine: {}; load average {load_before} at the \
         start, {} at the end.\n",
        crate::plan::GROUPS,
        args.concurrency,
        crate::PING_INTERVAL.as_secs(),
        args.rest_secs,
        machine(),
        load()
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
        "longest poll at rest (wall, CPU)",
        &|o| poll_text(&o.rest.stalls),
        both(&|o| o.rest.stalls.max_us as f64),
    );
    row(
        &mut out,
        "polls over 10 ms (establishing / at rest)",
        &|o| {
            format!(
                "{} / {}",
                o.established.stalls.over_10ms, o.rest.stalls.over_10ms
            )
        },
        None,
    );
    row(
        &mut out,
        "dialer process: time to connect all / its RSS",
        &|o| format!("{:.2} s / {}", o.dialers_secs, mib(o.dialers_rss)),
        None,
    );

    row(
        &mut out,
        "swarm busy while establishing (time inside its polls)",
        &|o| format!("{:.2} s", o.established.stalls.busy_us as f64 / 1e6),
        both(&|o| o.established.stalls.busy_us as f64),
    );

    let _ = writeln!(
        out,
        "\nTrim, dial again, ban (bare: `Swarm::disconnect_peer_id` of the same number of peers, \
         and of the peers from the /16, without goodbyes):\n"
    );
    let _ = writeln!(out, "| step | bare | manager | manager / bare |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let call = |us: u64, cpu: Option<u64>| match cpu {
        Some(cpu) => format!("{} (CPU {})", ms(us), ms(cpu)),
        None => ms(us),
    };
    row(
        &mut out,
        &format!(
            "trim {n} -> {}: the call on the swarm's task (wall, CPU)",
            n / 2
        ),
        &|o| call(o.trim.call_us, o.trim.call_cpu_us),
        both(&|o| o.trim.call_us as f64),
    );
    row(
        &mut out,
        "trim: every trimmed connection closed, after the call",
        &|o| {
            format!(
                "{:.3} s ({} closed, {} seen closing by the dialers, {} remain)",
                o.trim.secs, o.trim.trimmed, o.trim.dialer_closes, o.trim.remaining
            )
        },
        both(&|o| o.trim.secs),
    );
    row(
        &mut out,
        "trim: goodbye `NetworkRestructure` read by the trimmed dialers that run the crate",
        &|o| goodbyes(o, o.trim.goodbyes, o.trim.managed_trimmed),
        None,
    );
    row(
        &mut out,
        "trim: longest poll (wall, CPU)",
        &|o| poll_text(&o.trim.stalls),
        both(&|o| o.trim.stalls.max_us as f64),
    );
    row(
        &mut out,
        "the trimmed dialers dial again: back to all, after the first",
        &|o| format!("{:.2} s", o.refill.secs),
        both(&|o| o.refill.secs),
    );
    row(
        &mut out,
        "dialing again: longest poll (wall, CPU)",
        &|o| poll_text(&o.refill.stalls),
        both(&|o| o.refill.stalls.max_us as f64),
    );
    let network = managed
        .or(bare)
        .map_or(String::new(), |o| o.ban.network.clone());
    row(
        &mut out,
        &format!("ban {network}: the call on the swarm's task (wall, CPU)"),
        &|o| call(o.ban.call_us, o.ban.call_cpu_us),
        both(&|o| o.ban.call_us as f64),
    );
    row(
        &mut out,
        "ban: every connection from the /16 closed, after the call",
        &|o| {
            format!(
                "{:.3} s ({} of {} closed, {} others, {} remain)",
                o.ban.secs,
                o.ban.closed_in_network,
                o.ban.in_network,
                o.ban.closed_outside,
                o.ban.remaining
            )
        },
        both(&|o| o.ban.secs),
    );
    row(
        &mut out,
        "ban: goodbye `Banned` read by the banned dialers that run the crate",
        &|o| goodbyes(o, o.ban.goodbyes, o.ban.managed_banned),
        None,
    );
    row(
        &mut out,
        "ban: longest poll (wall, CPU)",
        &|o| poll_text(&o.ban.stalls),
        both(&|o| o.ban.stalls.max_us as f64),
    );

    let bound_us = (args.stall_bound_ms * 1000.0) as u64;
    let _ = writeln!(
        out,
        "\nStall bound: no poll of the listener's swarm, and no call on its task, longer than {} ms; \
         judged on the wall clock (what the node lives through) and on the CPU time of that one \
         piece (the swarm's own work; the rest is the thread being descheduled, on 2 cores \
         shared with the dialers).\n",
        args.stall_bound_ms
    );
    let _ = writeln!(
        out,
        "| configuration | phase | longest (wall) | most CPU in one | wall | CPU |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|---|");
    for o in outcomes {
        let phases: [(&str, &Stalls); 5] = [
            ("establishing", &o.established.stalls),
            ("at rest", &o.rest.stalls),
            ("trim", &o.trim.stalls),
            ("dialing again", &o.refill.stalls),
            ("ban", &o.ban.stalls),
        ];
        for (phase, stalls) in phases {
            let worst = stalls.worst_us();
            let cpu = stalls.worst_cpu_us();
            let _ = writeln!(
                out,
                "| {} | {phase} | {} | {} | {} | {} |",
                o.configuration.name(),
                ms(worst),
                cpu.map_or("-".into(), ms),
                verdict(worst <= bound_us),
                cpu.map_or("-", |c| verdict(c <= bound_us)),
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
