//! The demo's closing table.

use libp2p_connection_manager::Event;

use super::{cluster::Cluster, Outcome, Stage};

/// `1, 4, 6`, or `none`.
pub fn list(nodes: &[usize]) -> String {
    if nodes.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<String> = nodes.iter().map(usize::to_string).collect();
    names.join(", ")
}

pub fn print_problems(problems: &[String]) {
    const SHOWN: usize = 10;
    for problem in problems.iter().take(SHOWN) {
        println!("    {problem}");
    }
    if problems.len() > SHOWN {
        println!("    ... and {} more", problems.len() - SHOWN);
    }
}

/// The table: one column per stage run, then the totals over the whole run.
pub fn print_summary(cluster: &Cluster, outcome: &Outcome) {
    let size = cluster.size();
    let pairs = size * (size - 1) / 2;
    let line = "-".repeat(30 + 12 * outcome.stages.len().max(1));
    let stage_row = |label: &str, value: &dyn Fn(&Stage) -> String| {
        let cells: String = outcome
            .stages
            .iter()
            .map(|stage| format!("{:>12}", value(stage)))
            .collect();
        println!("  {label:<28}{cells}");
    };
    let total_row = |label: &str, value: usize, note: String| {
        let text = format!("  {label:<28}{value:>12}   {note}");
        println!("{}", text.trim_end());
    };

    println!();
    println!("  summary: {size} nodes, {pairs} pairs");
    println!("  {line}");
    stage_row("after stage", &|s| s.name.to_owned());
    stage_row("held", &|s| if s.held { "yes" } else { "NO" }.to_owned());
    stage_row("time to settle", &|s| format!("{:.2?}", s.took));
    stage_row("connections", &|s| s.counts.connections.to_string());
    stage_row("pairs with 0 connections", &|s| s.counts.none.to_string());
    stage_row("pairs with 1 connection", &|s| s.counts.one.to_string());
    stage_row("pairs with 2+ connections", &|s| {
        s.counts.several.to_string()
    });
    println!("  {line}");
    let count = |predicate: fn(&Event) -> bool| cluster.count_events(predicate);
    total_row(
        "duplicates closed",
        count(|e| matches!(e, Event::DuplicateClosed { .. })),
        format!(
            "reported by either end; {} of {pairs} pairs had one",
            cluster.pairs_with_duplicates()
        ),
    );
    total_row(
        "redials scheduled",
        count(|e| matches!(e, Event::RedialScheduled { .. })),
        "rescues of failed dials, and redials after the restart".to_owned(),
    );
    let kept = cluster.kept_by_transport();
    println!("  {:<28}{kept}", "kept connections");
    total_row(
        "dials failed",
        count(|e| matches!(e, Event::DialFailed { .. })),
        String::new(),
    );
    total_row(
        "goodbyes received",
        count(|e| matches!(e, Event::GoodbyeReceived { .. })),
        cluster.goodbye_reasons(),
    );
    println!("  {line}");
}
