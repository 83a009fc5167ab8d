//! A scenario's result: a table for the terminal and BENCHMARKS.md, and an SVG plot.
//!
//! The plot is a hand-written SVG (two polylines on a time axis): a plotting crate would add a
//! dependency tree and build time for two lines and a few labels.

use std::{fmt::Write as _, path::Path};

/// What a scenario reports.
#[derive(Debug, Default)]
pub struct Report {
    pub title: String,
    pub rows: Vec<(String, String)>,
    /// Dials per simulated second over the run.
    pub dials: Vec<u32>,
    /// A share (0..=1) per simulated second: nodes with their wanted peers, or converged.
    pub share: Vec<f64>,
    /// What `share` measures.
    pub share_label: String,
    /// Seconds at which the scenario changed the network, with a label.
    pub marks: Vec<(usize, String)>,
    pub violations: Vec<String>,
}

impl Report {
    pub fn row(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((name.to_string(), value.to_string()));
    }

    /// Prints the table as Markdown.
    pub fn print(&self) {
        println!("\n### {}\n", self.title);
        println!("| measure | value |\n|---|---|");
        for (name, value) in &self.rows {
            println!("| {name} | {value} |");
        }
        if !self.violations.is_empty() {
            println!("\n{} invariant violation(s):", self.violations.len());
            for v in self.violations.iter().take(20) {
                println!("- {v}");
            }
        }
    }

    /// Writes dials/s and the share over time as an SVG of two stacked panels.
    pub fn write_svg(&self, path: &Path) -> std::io::Result<()> {
        let (w, h, left, panel) = (900.0, 420.0, 60.0, 160.0);
        let secs = self.dials.len().max(self.share.len()).max(1) as f64;
        let x = |s: f64| left + s / secs * (w - left - 20.0);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = write!(
            svg,
            r#"<text x="{left}" y="16" font-size="14">{}</text>"#,
            escape(&self.title)
        );
        let peak = self.dials.iter().copied().max().unwrap_or(0).max(1) as f64;
        let panels = [
            (
                30.0,
                format!("dials/s (peak {peak})"),
                self.dials
                    .iter()
                    .map(|d| *d as f64 / peak)
                    .collect::<Vec<_>>(),
                "#c0392b",
            ),
            (
                30.0 + panel + 40.0,
                self.share_label.clone(),
                self.share.clone(),
                "#2471a3",
            ),
        ];
        for (top, label, values, colour) in panels {
            let y = |v: f64| top + panel - v.clamp(0.0, 1.0) * panel;
            let _ = write!(
                svg,
                r##"<rect x="{left}" y="{top}" width="{}" height="{panel}" fill="none" stroke="#999"/>"##,
                w - left - 20.0
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}">{}</text>"#,
                left + 6.0,
                top + 14.0,
                escape(&label)
            );
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(s, v)| format!("{:.1},{:.1}", x(s as f64 + 0.5), y(*v)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
            for (s, mark) in &self.marks {
                let _ = write!(
                    svg,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1}" stroke="#777" stroke-dasharray="4 3"/><text x="{2:.1}" y="{3}" fill="#555">{4}</text>"##,
                    x(*s as f64),
                    top + panel,
                    x(*s as f64) + 3.0,
                    top + panel - 4.0,
                    escape(mark)
                );
            }
        }
        let axis_y = 30.0 + 2.0 * panel + 40.0 + 18.0;
        for tick in 0..=10 {
            let s = secs * tick as f64 / 10.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{:.0}</text>"#,
                x(s),
                s
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">simulated seconds</text></svg>"#,
            w / 2.0,
            axis_y + 16.0
        );
        std::fs::write(path, svg)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
