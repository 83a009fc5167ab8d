//! Prometheus metrics of the long-lived node (`--metrics`, feature `metrics`).

use std::net::SocketAddr;

use libp2p_connection_manager::{self as manager, Event};

// ---- Metrics ------------------------------------------------------------------------------

/// A scrape of the metrics endpoint waiting for the swarm loop's answer. Without the `metrics`
/// feature there are none.
#[cfg(not(feature = "metrics"))]
pub type Scrape = std::convert::Infallible;
#[cfg(feature = "metrics")]
use metrics_endpoint::Scrape;

/// The long-lived node's metrics: present only with the `metrics` feature and `--metrics`.
pub struct Telemetry {
    #[cfg(feature = "metrics")]
    pub endpoint: Option<metrics_endpoint::MetricsEndpoint>,
}

impl Telemetry {
    #[cfg(feature = "metrics")]
    pub async fn start(address: Option<SocketAddr>) -> anyhow::Result<Self> {
        let endpoint = match address {
            Some(address) => {
                let endpoint = metrics_endpoint::MetricsEndpoint::start(address).await?;
                println!("metrics on http://{}/metrics", endpoint.address());
                Some(endpoint)
            }
            None => None,
        };
        Ok(Self { endpoint })
    }

    /// Without the `metrics` feature `--metrics` is refused before this (`check_node_args`).
    #[cfg(not(feature = "metrics"))]
    pub async fn start(_address: Option<SocketAddr>) -> anyhow::Result<Self> {
        Ok(Self {})
    }

    pub fn record(&self, event: &Event) {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            endpoint.record(event);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }

    /// The next scrape to answer; never resolves when there is no endpoint.
    pub async fn next_scrape(&mut self) -> Scrape {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &mut self.endpoint {
            return endpoint.next_scrape().await;
        }
        std::future::pending().await
    }

    pub fn answer(&self, scrape: Scrape, behaviour: &manager::Behaviour) {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            endpoint.answer(scrape, behaviour);
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = behaviour;
            match scrape {}
        }
    }
}

/// A Prometheus text endpoint: a tiny HTTP/1.1 responder whose tasks ask the swarm loop for
/// the encoded metrics over a channel (the registry and the behaviour stay in that loop).
#[cfg(feature = "metrics")]
mod metrics_endpoint {
    use std::{io, net::SocketAddr, time::Duration};

    use libp2p_connection_manager::{metrics::Metrics, Behaviour, Event};
    use prometheus_client::{encoding::text::encode, registry::Registry};
    use tokio::{
        net::{TcpListener, TcpStream},
        sync::{mpsc, oneshot},
        time::timeout,
    };

    /// The longest request head read (request line and headers).
    const MAX_REQUEST_HEAD: usize = 8 * 1024;
    /// How long one HTTP exchange may take.
    const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
    const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    /// A scrape waiting for the encoded metrics.
    pub struct Scrape(oneshot::Sender<String>);

    pub struct MetricsEndpoint {
        registry: Registry,
        metrics: Metrics,
        scrapes: mpsc::Receiver<Scrape>,
        address: SocketAddr,
    }

    impl MetricsEndpoint {
        /// Binds `address` and serves it from a task of its own.
        pub async fn start(address: SocketAddr) -> anyhow::Result<Self> {
            use anyhow::Context as _;
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot serve metrics on {address}"))?;
            let address = listener.local_addr()?;
            let (scrape_tx, scrapes) = mpsc::channel(16);
            tokio::spawn(serve(listener, scrape_tx));
            let mut registry = Registry::default();
            let metrics = Metrics::new(&mut registry);
            Ok(Self {
                registry,
                metrics,
                scrapes,
                address,
            })
        }

        pub fn address(&self) -> SocketAddr {
            self.address
        }

        pub fn record(&self, event: &Event) {
            self.metrics.record(event);
        }

        /// The next scrape; never resolves once the server task is gone.
        pub async fn next_scrape(&mut self) -> Scrape {
            match self.scrapes.recv().await {
                Some(scrape) => scrape,
                None => std::future::pending().await,
            }
        }

        /// Refreshes the gauges from `behaviour` and answers with the encoded registry.
        pub fn answer(&self, scrape: Scrape, behaviour: &Behaviour) {
            self.metrics.observe(behaviour);
            let mut text = String::new();
            if let Err(error) = encode(&mut text, &self.registry) {
                tracing::warn!(%error, "cannot encode the metrics");
            }
            // The client may have gone.
            let _ = scrape.0.send(text);
        }
    }

    pub async fn serve(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    let scrapes = scrapes.clone();
                    tokio::spawn(async move {
                        let exchange = timeout(EXCHANGE_TIMEOUT, exchange(&stream, &scrapes));
                        match exchange.await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                tracing::debug!(%remote, %error, "metrics request failed")
                            }
                            Err(_) => tracing::debug!(%remote, "metrics request timed out"),
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Reads one request head and answers it; the connection closes after the answer.
    pub async fn exchange(stream: &TcpStream, scrapes: &mpsc::Sender<Scrape>) -> io::Result<()> {
        let head = read_request_head(stream).await?;
        let response = if head.starts_with(b"GET ") {
            match scrape(scrapes).await {
                Some(body) => response("200 OK", CONTENT_TYPE, &body),
                None => response("503 Service Unavailable", "text/plain", "shutting down\n"),
            }
        } else {
            response("405 Method Not Allowed", "text/plain", "only GET\n")
        };
        write_all(stream, response.as_bytes()).await
    }

    pub async fn scrape(scrapes: &mpsc::Sender<Scrape>) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        scrapes.send(Scrape(reply)).await.ok()?;
        answer.await.ok()
    }

    pub fn response(status: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// Reads up to the blank line that ends the request head (at most [`MAX_REQUEST_HEAD`]).
    pub async fn read_request_head(stream: &TcpStream) -> io::Result<Vec<u8>> {
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too long",
                ));
            }
            stream.readable().await?;
            match stream.try_read(&mut buffer) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => head.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(head)
    }

    pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            stream.writable().await?;
            match stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
