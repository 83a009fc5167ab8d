//! The parent's side of the child processes: spawning them, sending commands, and waiting, with
//! a deadline, for the reports both send.

use std::{
    collections::VecDeque,
    io::Write as _,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::protocol::{forward_lines, DialerReport, ListenerReport};

/// A report from either child.
enum Message {
    Listener(Result<ListenerReport, String>),
    Dialers(Result<DialerReport, String>),
    /// A child's output ended (it exited).
    Ended(&'static str),
}

/// A child process and its stdin.
struct Process {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    fn spawn(
        name: &'static str,
        args: &[String],
        messages: mpsc::Sender<Message>,
        wrap: fn(String) -> Message,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the path of this program")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning the {name}"))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let stdin = child.stdin.take();
        forward_lines(stdout, move |line| match line {
            Some(line) => messages.send(wrap(line)).is_ok(),
            None => messages.send(Message::Ended(name)).is_ok(),
        });
        Ok(Self { name, child, stdin })
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}").with_context(|| format!("writing to the {}", self.name))?;
        stdin.flush()?;
        Ok(())
    }

    /// Asks the child to exit: a command, then the end of its stdin.
    fn ask_exit(&mut self) {
        let _ = self.send("exit");
        self.stdin = None;
    }

    /// Kills the child if it has not exited, and reaps it.
    fn reap(mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What the dialers said so far.
#[derive(Debug, Default)]
pub struct DialerState {
    pub closed: Vec<(usize, Option<String>)>,
    pub all_connected: VecDeque<DialerReport>,
}

/// The listener and the dialers of one configuration.
pub struct Children {
    messages: mpsc::Receiver<Message>,
    sender: mpsc::Sender<Message>,
    listener: Process,
    dialers: Option<Process>,
    listener_reports: VecDeque<ListenerReport>,
    pub dialer_state: DialerState,
    verbose: bool,
}

impl Children {
    pub fn spawn_listener(args: &[String], verbose: bool) -> anyhow::Result<Self> {
        let (sender, messages) = mpsc::channel();
        let listener = Process::spawn("listener", args, sender.clone(), |line| {
            Message::Listener(serde_json::from_str(&line).map_err(|e| format!("{e}: {line}")))
        })?;
        Ok(Self {
            messages,
            sender,
            listener,
            dialers: None,
            listener_reports: VecDeque::new(),
            dialer_state: DialerState::default(),
            verbose,
        })
    }

    pub fn spawn_dialers(&mut self, args: &[String]) -> anyhow::Result<()> {
        self.dialers = Some(Process::spawn(
            "dialers",
            args,
            self.sender.clone(),
            |line| {
                Message::Dialers(serde_json::from_str(&line).map_err(|e| format!("{e}: {line}")))
            },
        )?);
        Ok(())
    }

    pub fn tell_listener(&mut self, line: &str) -> anyhow::Result<()> {
        self.listener.send(line)
    }

    pub fn tell_dialers(&mut self, line: &str) -> anyhow::Result<()> {
        self.dialers.as_mut().context("no dialers")?.send(line)
    }

    /// The listener's next report, within `limit`.
    pub fn listener_report(
        &mut self,
        what: &str,
        limit: Duration,
    ) -> anyhow::Result<ListenerReport> {
        self.wait(what, limit, |children| {
            children.listener_reports.pop_front()
        })
    }

    /// The dialers' next "all connected", within `limit`.
    pub fn dialers_connected(&mut self, limit: Duration) -> anyhow::Result<DialerReport> {
        self.wait("all dialers connected", limit, |children| {
            children.dialer_state.all_connected.pop_front()
        })
    }

    /// Waits until the dialers reported `count` closed connections in all.
    pub fn dialers_closed(&mut self, count: usize, limit: Duration) -> anyhow::Result<()> {
        let what = format!("{count} connections closed at the dialers");
        self.wait(&what, limit, |children| {
            (children.dialer_state.closed.len() >= count).then_some(())
        })
    }

    /// Takes messages until `ready` gives a value; fails on a child's error, the end of a
    /// child, or when `limit` has passed.
    fn wait<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut(&mut Self) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = ready(self) {
                return Ok(value);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.messages.recv_timeout(left) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("waiting for {what}: nothing within {limit:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("waiting for {what}: no child"),
            };
            match message {
                Message::Listener(Ok(ListenerReport::Error { message })) => {
                    bail!("the listener: {message}")
                }
                Message::Listener(Ok(report)) => {
                    if self.verbose {
                        eprintln!("  listener: {}", brief(&report));
                    }
                    self.listener_reports.push_back(report);
                }
                Message::Dialers(Ok(DialerReport::GaveUp { i, error })) => {
                    bail!("dialer {i} gave up: {error}")
                }
                Message::Dialers(Ok(DialerReport::Closed { i, goodbye })) => {
                    self.dialer_state.closed.push((i, goodbye));
                }
                Message::Dialers(Ok(report)) => {
                    if self.verbose {
                        eprintln!("  dialers: {report:?}");
                    }
                    self.dialer_state.all_connected.push_back(report);
                }
                Message::Listener(Err(line)) | Message::Dialers(Err(line)) => {
                    bail!("unreadable report: {line}")
                }
                Message::Ended(name) => bail!("waiting for {what}: the {name} exited"),
            }
        }
    }

    /// Ends both children: asks them to exit, waits up to 10 s for their output to end (they
    /// have exited then), and kills what is left.
    pub fn finish(mut self) {
        let mut running = 1;
        self.listener.ask_exit();
        if let Some(dialers) = self.dialers.as_mut() {
            dialers.ask_exit();
            running += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(Message::Ended(_)) => running -= 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some(dialers) = self.dialers {
            dialers.reap();
        }
        self.listener.reap();
    }
}

/// A report without its long lists.
fn brief(report: &ListenerReport) -> String {
    match report {
        ListenerReport::Trim { trimmed, secs, .. } => {
            format!("trimmed {} in {secs:.3} s", trimmed.len())
        }
        other => format!("{other:?}"),
    }
}
