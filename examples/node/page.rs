//! The status page at `/`: static HTML and JavaScript that poll `/api/snapshot`.

/// The page, built into the binary.
pub const HTML: &str = include_str!("page.html");
