//! The status page at `/` in a real headless browser (Chromium from the system's packages):
//! the page loads, polls the API, and shows the same peers and figures as the API; a
//! screenshot is kept in the test output directory (`target/tmp/node-page.png`).
//!
//! Without Chromium the test prints `SKIPPED: <reason>` and passes (`.ci/run` installs it).

mod node_process;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use node_process::{wait_until, Admin, NodeProcess, Transcript};
use serde_json::{json, Value};

/// How long the nodes may take to connect.
const CONNECT: Duration = Duration::from_secs(30);
/// Virtual time the browser gives the page to load and poll the API.
const PAGE_BUDGET_MS: &str = "4000";

/// The Chromium binary: `$CHROMIUM`, or the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|directory| {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .map(|name| directory.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs headless Chromium on `url` with `extra` arguments; its stdout.
fn run_chromium(chromium: &Path, url: &str, extra: &[&str]) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1300,900",
            &format!("--virtual-time-budget={PAGE_BUDGET_MS}"),
        ])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with `id` in the dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let after = &dom[start..];
    let open_end = after.find('>').expect("the element's tag ends") + 1;
    let close = after[open_end..].find('<').expect("the element closes");
    after[open_end..open_end + close].trim().to_owned()
}

/// The rows of table `id` that carry `data-peer`: the peer and the text of each cell.
fn peer_rows(dom: &str, id: &str) -> Vec<(String, Vec<String>)> {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let table = &dom[start..start + dom[start..].find("</table>").expect("the table ends")];
    table
        .split("<tr data-peer=\"")
        .skip(1)
        .map(|row| {
            let peer = row[..row.find('"').expect("the attribute ends")].to_owned();
            let cells = row
                .split("<td")
                .skip(1)
                .map(|cell| {
                    let text_start = cell.find('>').map_or(0, |i| i + 1);
                    let text_end = cell.find("</td>").unwrap_or(cell.len());
                    cell[text_start..text_end].trim().to_owned()
                })
                .collect();
            (peer, cells)
        })
        .collect()
}

#[test]
fn the_status_page_shows_what_the_api_says() {
    let Some(chromium) = chromium() else {
        println!(
            "SKIPPED: the status page browser test: no chromium on PATH (apt-get install chromium)"
        );
        return;
    };
    let transcript = Transcript::default();
    let start = |name| {
        let node = NodeProcess::start(
            name,
            &["--admin", "127.0.0.1:0", "--status-interval", "0"],
            &transcript,
        );
        let peer = node.value_after("peer id: ");
        let api = Admin::of(&node);
        let address = node.value_after("listening on ");
        (node, api, peer, address)
    };
    let (_a, a_api, _a_peer, a_address) = start("A");
    let (_b, b_api, b_peer, _) = start("B");
    let (_c, c_api, c_peer, _) = start("C");
    b_api.command("/api/connect", json!({ "address": a_address }));
    c_api.command("/api/connect", json!({ "address": a_address }));
    a_api.command(
        "/api/ban",
        json!({ "target": "10.7.0.0/16", "seconds": 300 }),
    );
    let mut expected = vec![b_peer.clone(), c_peer.clone()];
    expected.sort();
    let peers = wait_until("A shows B and C with their health", CONNECT, || {
        let peers = a_api.get("/api/peers");
        let mut ids: Vec<String> = peers
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["connections"][0]["health"].is_string())
            .filter_map(|p| p["peer"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        if ids == expected {
            Ok(peers)
        } else {
            Err(peers.to_string())
        }
    });

    let url = format!("{}/", a_api.base());
    let dom = run_chromium(&chromium, &url, &["--dump-dom"]);
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never rendered:\n{dom}"
    );
    let status = a_api.get("/api/status");
    for (id, figure) in [
        ("connected-peers", "connected_peers"),
        ("connections", "connections"),
        ("bans-count", "bans"),
        ("wanted-count", "wanted"),
        ("phase", "phase"),
        ("peer-id", "peer_id"),
    ] {
        let api_value = match &status[figure] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            text_of(&dom, id),
            api_value,
            "#{id} against the API's {figure}"
        );
    }
    let rows = peer_rows(&dom, "peers");
    let mut shown: Vec<String> = rows.iter().map(|(peer, _)| peer.clone()).collect();
    shown.sort();
    assert_eq!(shown, expected, "the page's peers against the API's");
    for (peer, cells) in &rows {
        let api = peers
            .as_array()
            .and_then(|all| all.iter().find(|p| p["peer"] == peer.as_str()))
            .map(|p| &p["connections"][0])
            .expect("the peer is in the API's answer");
        // peer, connection, direction, transport, initiator.
        let api_cells = [
            &api["id"],
            &api["direction"],
            &api["transport"],
            &api["initiator"],
        ];
        for (shown, api) in cells[1..5].iter().zip(api_cells) {
            assert_eq!(Some(shown.as_str()), api.as_str(), "{peer}: {cells:?}");
        }
        let reason = api["kept_reason"].as_str().expect("a kept reason");
        assert!(
            cells.iter().any(|c| c == &format!("kept: {reason}")),
            "{peer}: the page does not say why the connection is kept: {cells:?}"
        );
    }
    assert!(
        dom.contains("data-target=\"10.7.0.0/16\""),
        "the ban is not shown"
    );

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let argument = format!("--screenshot={}", screenshot.display());
    run_chromium(&chromium, &url, &[&argument]);
    let size = std::fs::metadata(&screenshot).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "no screenshot at {} ({size} bytes)",
        screenshot.display()
    );
    println!("screenshot of the status page: {}", screenshot.display());
}
