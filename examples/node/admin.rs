//! The admin HTTP API (axum): JSON reads of the node's state, commands, `/metrics`, `/healthz`
//! and the status page. Handlers ask the swarm loop over a channel and wait for its answer:
//! the behaviour stays in that loop.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::{
    commands::{parse, parse_ban_target, CommandError, NodeCommand, DEFAULT_PROTECT_TAG},
    snapshot::Snapshot,
};

/// How long a handler waits for the swarm loop.
const LOOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests waiting for the swarm loop; more wait in axum.
const QUEUE: usize = 64;
/// The largest command body read.
const MAX_BODY: usize = 16 * 1024;
/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a handler asks the swarm loop.
pub enum AdminRequest {
    Snapshot(oneshot::Sender<Snapshot>),
    Command(NodeCommand, oneshot::Sender<Result<String, CommandError>>),
    Metrics(oneshot::Sender<Option<String>>),
}

#[derive(Clone)]
struct Api {
    requests: mpsc::Sender<AdminRequest>,
    allow_remote_commands: bool,
}

/// Binds `address` and serves the API from a task of its own; returns the bound address and
/// the requests for the swarm loop.
pub async fn start(
    address: SocketAddr,
    allow_remote_commands: bool,
) -> anyhow::Result<(SocketAddr, mpsc::Receiver<AdminRequest>)> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot serve the admin API on {address}"))?;
    let bound = listener.local_addr()?;
    let (requests, receiver) = mpsc::channel(QUEUE);
    let router = router(Api {
        requests,
        allow_remote_commands,
    });
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, service).await {
            tracing::warn!(%error, "the admin API stopped");
        }
    });
    Ok((bound, receiver))
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/snapshot", get(snapshot))
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/bans", get(bans))
        .route("/api/wanted", get(wanted))
        .route("/api/events", get(events))
        .route("/api/connect", post(connect))
        .route("/api/disconnect", post(disconnect))
        .route("/api/ban", post(ban))
        .route("/api/unban", post(unban))
        .route("/api/protect", post(protect))
        .route("/api/unprotect", post(unprotect))
        .route("/api/trim", post(trim))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// An answer that is not the happy one.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn loop_gone() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down")
}

/// Sends a request built around a reply channel and waits for the answer.
async fn ask<T>(
    api: &Api,
    request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
) -> Result<T, Response> {
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        api.requests.send(request(reply)).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(LOOP_TIMEOUT, exchange).await {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(loop_gone()),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        )),
    }
}

async fn take_snapshot(api: &Api) -> Result<Snapshot, Response> {
    ask(api, AdminRequest::Snapshot).await
}

async fn page() -> Html<&'static str> {
    Html(crate::page::HTML)
}

/// 200 while the swarm loop answers; 503 otherwise.
async fn healthz(State(api): State<Api>) -> Response {
    match take_snapshot(&api).await {
        Ok(snapshot) => Json(json!({ "ok": true, "phase": snapshot.status.phase })).into_response(),
        Err(response) => response,
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    match ask(&api, AdminRequest::Metrics).await {
        Ok(Some(text)) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "metrics need the node built with the metrics feature",
        ),
        Err(response) => response,
    }
}

async fn snapshot(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s).into_response())
}

async fn status(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s.status).into_response())
}

async fn peers(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s.peers).into_response())
}

async fn bans(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s.bans).into_response())
}

async fn wanted(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s.wanted).into_response())
}

async fn events(State(api): State<Api>) -> Response {
    take_snapshot(&api)
        .await
        .map_or_else(|r| r, |s| Json(s.events).into_response())
}

/// Runs `command` in the swarm loop: 200 with what was done, 400 for a request that does not
/// parse, 409 for one the node refused, 403 from a remote address unless allowed.
async fn run(api: &Api, from: SocketAddr, command: Result<NodeCommand, CommandError>) -> Response {
    if !api.allow_remote_commands && !from.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "commands are accepted from loopback only (--admin-allow-remote)",
        );
    }
    let command = match command {
        Ok(command) => command,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match ask(api, |reply| AdminRequest::Command(command, reply)).await {
        Ok(Ok(message)) => Json(json!({ "ok": true, "message": message })).into_response(),
        Ok(Err(e @ (CommandError::Parse { .. } | CommandError::Usage))) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct AddressBody {
    address: String,
}

#[derive(Deserialize)]
struct PeerBody {
    peer: String,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct BanBody {
    /// A peer id, an IP address or an IP network.
    target: String,
    /// How long; until unbanned when absent.
    seconds: Option<u64>,
}

/// The address a request came from.
type Caller = ConnectInfo<SocketAddr>;

async fn connect(
    State(api): State<Api>,
    ConnectInfo(from): Caller,
    body: Json<AddressBody>,
) -> Response {
    let command = parse("a multiaddr", &body.address).map(NodeCommand::Connect);
    run(&api, from, command).await
}

async fn disconnect(
    State(api): State<Api>,
    ConnectInfo(from): Caller,
    body: Json<PeerBody>,
) -> Response {
    let command = parse("a peer id", &body.peer).map(NodeCommand::Disconnect);
    run(&api, from, command).await
}

async fn ban(State(api): State<Api>, ConnectInfo(from): Caller, body: Json<BanBody>) -> Response {
    let duration = body.seconds.map(Duration::from_secs);
    let command = parse_ban_target(&body.target).map(|t| NodeCommand::Ban(t, duration));
    run(&api, from, command).await
}

async fn unban(State(api): State<Api>, ConnectInfo(from): Caller, body: Json<BanBody>) -> Response {
    let command = parse_ban_target(&body.target).map(NodeCommand::Unban);
    run(&api, from, command).await
}

fn tag_of(body: &PeerBody) -> String {
    body.tag
        .clone()
        .unwrap_or_else(|| DEFAULT_PROTECT_TAG.to_owned())
}

async fn protect(
    State(api): State<Api>,
    ConnectInfo(from): Caller,
    body: Json<PeerBody>,
) -> Response {
    let command = parse("a peer id", &body.peer).map(|p| NodeCommand::Protect(p, tag_of(&body)));
    run(&api, from, command).await
}

async fn unprotect(
    State(api): State<Api>,
    ConnectInfo(from): Caller,
    body: Json<PeerBody>,
) -> Response {
    let command = parse("a peer id", &body.peer).map(|p| NodeCommand::Unprotect(p, tag_of(&body)));
    run(&api, from, command).await
}

async fn trim(State(api): State<Api>, ConnectInfo(from): Caller) -> Response {
    run(&api, from, Ok(NodeCommand::Trim)).await
}
