//! A scenario's result: a table for the terminal and BENCHMARKS.md, and an SVG plot drawn
//! with plotters (its SVG backend only: no font or bitmap dependencies).

use std::path::Path;

use plotters::{
    coord::types::RangedCoordf64,
    prelude::{
        Cartesian2d, ChartBuilder, ChartContext, DashedLineSeries, DrawingBackend, IntoDrawingArea,
        IntoFont, LineSeries, RGBColor, SVGBackend, Text, WHITE,
    },
    style::Color,
};

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

    /// Writes dials/s and the share over time as an SVG of two stacked panels (plotters).
    pub fn write_svg(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let secs = self.dials.len().max(self.share.len()).max(1) as f64;
        let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 16))?;
        let (upper, lower) = root.split_vertically(230);

        let peak = self.dials.iter().copied().max().unwrap_or(0).max(1);
        let top = f64::from(peak) * 1.1;
        let mut dials = ChartBuilder::on(&upper)
            .margin(10)
            .y_label_area_size(70)
            .x_label_area_size(20)
            .build_cartesian_2d(0f64..secs, 0f64..top)?;
        dials
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(format!("dials/s (peak {peak})"))
            .draw()?;
        dials.draw_series(LineSeries::new(
            self.dials
                .iter()
                .enumerate()
                .map(|(s, d)| (s as f64 + 0.5, f64::from(*d))),
            RGBColor(0xc0, 0x39, 0x2b).stroke_width(2),
        ))?;
        self.draw_marks(&mut dials, top)?;

        let mut share = ChartBuilder::on(&lower)
            .margin(10)
            .y_label_area_size(70)
            .x_label_area_size(40)
            .build_cartesian_2d(0f64..secs, 0f64..1.05)?;
        share
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .x_desc("simulated seconds")
            .y_desc(self.share_label.as_str())
            .draw()?;
        share.draw_series(LineSeries::new(
            self.share
                .iter()
                .enumerate()
                .map(|(s, v)| (s as f64 + 0.5, *v)),
            RGBColor(0x24, 0x71, 0xa3).stroke_width(2),
        ))?;
        self.draw_marks(&mut share, 1.05)?;
        root.present()?;
        Ok(())
    }

    /// A dashed line and a label at every moment the scenario changed the network.
    fn draw_marks<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        top: f64,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let grey = RGBColor(0x77, 0x77, 0x77);
        for (s, mark) in &self.marks {
            let x = *s as f64;
            chart.draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, top)],
                4,
                3,
                grey.into(),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                mark.clone(),
                (x, top * 0.95),
                ("sans-serif", 12).into_font().color(&grey),
            )))?;
        }
        Ok(())
    }
}
