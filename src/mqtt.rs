//! The MQTT publisher (rumqttc, QoS 1, rustls TLS), behind the on-disk queue.
//!
//! Threads: the *network* thread drives the rumqttc connection (`Connection::recv`, which
//! reconnects by itself) with exponential backoff between failed attempts and forwards every
//! event; the *publisher* thread owns the [`DiskQueue`]. Both feed one channel, so the publisher
//! sees worker messages and network events in one order:
//!
//! - every prediction / embedding / event message is appended to the disk queue first;
//! - after each ConnAck: `status` = `online` (retained), Home Assistant discovery (retained), then
//!   the queue from its oldest unacknowledged record, at most `inflight` outstanding;
//! - rumqttc reports `Outgoing::Publish(pkid)` in request order, then `PubAck(pkid)`: that maps
//!   acks to queue records, which are then deleted;
//! - on a connection error the tracking is reset and the queue rewound: everything unacked is
//!   sent again, in order, after the next ConnAck (at-least-once, never reordered);
//! - the last will is `offline` (retained); a clean shutdown waits for the queue to drain (up
//!   to `flush_timeout`), publishes `offline` and disconnects.

use crate::payload::{self, Topics, STATUS_OFFLINE, STATUS_ONLINE};
use crate::queue::{DiskQueue, QueueStats, Record};
use anyhow::{anyhow, Context, Result};
use rumqttc::{
    Client, ConnectReturnCode, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing,
    QoS, TlsConfiguration, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Broker address parsed from `mqtt[s]://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("ssl://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(format!(
                "'{s}' must start with mqtt:// or mqtts:// (e.g. mqtt://localhost:1883)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(format!(
                "'{s}': give only scheme://host:port (credentials go in mqtt.username / mqtt.password)"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("'{s}': port '{p}' is not a number 1–65535"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("'{s}' has no host"));
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// Everything the publisher needs.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub url: BrokerUrl,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive: Duration,
    pub topics: Topics,
    pub device_id: String,
    pub model: String,
    pub ha_discovery: Option<String>,
    pub stats_interval: Duration,
    pub inflight: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub flush_timeout: Duration,
    pub max_bytes: u64,
    pub policy: String,
}

/// What the worker (and the daemon) send to the publisher.
#[derive(Debug)]
pub enum ToPublisher {
    /// A QoS 1 message that must survive the broker being away.
    Queued(Record),
    /// Stop: drain, publish `offline`, disconnect.
    Shutdown,
}

/// Network events, forwarded by the network thread.
enum Input {
    Msg(ToPublisher),
    Net(Result<Event, ConnectionError>),
    NetClosed,
}

/// Sends messages to the publisher.
#[derive(Clone)]
pub struct PublisherHandle {
    tx: Sender<Input>,
}

impl PublisherHandle {
    pub fn send(&self, m: ToPublisher) -> bool {
        self.tx.send(Input::Msg(m)).is_ok()
    }
}

/// Called for each stats tick to build `<base>/stats` (gets the queue's numbers).
pub type StatsFn = Box<dyn FnMut(QueueStats, u64, u64) -> payload::StatsMsg + Send>;

/// Result of a publisher run.
#[derive(Debug, Default, Clone)]
pub struct PublisherReport {
    pub published: u64,
    pub reconnects: u64,
    pub left_in_queue: u64,
    pub dropped: u64,
}

fn tls_config(s: &MqttSettings) -> Result<TlsConfiguration> {
    let ca_path = match &s.ca_file {
        Some(p) => p.clone(),
        None => {
            let sys = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
            if !sys.is_file() {
                anyhow::bail!("mqtts:// needs a CA certificate: set mqtt.ca_file (--mqtt-ca FILE)");
            }
            sys
        }
    };
    let ca = std::fs::read(&ca_path)
        .with_context(|| format!("mqtt.ca_file: cannot read {}", ca_path.display()))?;
    let client_auth = match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c)
                .with_context(|| format!("mqtt.cert_file: cannot read {}", c.display()))?,
            std::fs::read(k)
                .with_context(|| format!("mqtt.key_file: cannot read {}", k.display()))?,
        )),
        (None, None) => None,
        _ => anyhow::bail!("mqtt.cert_file and mqtt.key_file must be given together"),
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

fn options(s: &MqttSettings) -> Result<MqttOptions> {
    let mut o = MqttOptions::new(s.client_id.clone(), s.url.host.clone(), s.url.port);
    o.set_keep_alive(s.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(s.inflight.clamp(1, u16::MAX as usize) as u16)
        .set_last_will(LastWill::new(
            s.topics.status.clone(),
            STATUS_OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(u) = &s.username {
        o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
    }
    if s.url.tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        o.set_transport(Transport::tls_with_config(tls_config(s)?));
    }
    Ok(o)
}

/// Whether a connection error can never succeed by retrying (wrong credentials).
fn auth_refused(e: &ConnectionError) -> Option<&'static str> {
    match e {
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
            Some("the broker refused the username/password (check mqtt.username and mqtt.password)")
        }
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
            Some("the broker refused this client: not authorized (check mqtt.username, mqtt.password and the broker's ACL)")
        }
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId) => {
            Some("the broker refused the client id (set mqtt.client_id)")
        }
        _ => None,
    }
}

/// A running publisher.
pub struct Publisher {
    pub handle: PublisherHandle,
    thread: std::thread::JoinHandle<Result<PublisherReport>>,
}

impl Publisher {
    /// Starts the network and publisher threads.
    pub fn start(settings: MqttSettings, queue: DiskQueue, stats: StatsFn) -> Result<Self> {
        let opts = options(&settings)?;
        let (tx, rx) = std::sync::mpsc::channel::<Input>();
        let (client, mut connection) = Client::new(opts, settings.inflight * 2 + 32);
        let net_tx = tx.clone();
        let (min, max) = (settings.reconnect_min, settings.reconnect_max);
        std::thread::Builder::new()
            .name("sfxtag-mqtt-net".into())
            .spawn(move || {
                let mut backoff = min;
                loop {
                    match connection.recv() {
                        Ok(ev) => {
                            let failed = ev.is_err();
                            if matches!(ev, Ok(Event::Incoming(Incoming::ConnAck(_)))) {
                                backoff = min;
                            }
                            if net_tx.send(Input::Net(ev)).is_err() {
                                return;
                            }
                            if failed {
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(max);
                            }
                        }
                        Err(_) => {
                            let _ = net_tx.send(Input::NetClosed);
                            return;
                        }
                    }
                }
            })
            .context("cannot start the MQTT network thread")?;
        let handle = PublisherHandle { tx };
        let thread = std::thread::Builder::new()
            .name("sfxtag-mqtt".into())
            .spawn(move || {
                let mut p = PubLoop::new(settings, queue, client, stats);
                let r = p.run(rx);
                p.close();
                r
            })
            .context("cannot start the MQTT publisher thread")?;
        Ok(Self { handle, thread })
    }

    /// Asks for shutdown and waits for the publisher (drain, `offline`, disconnect).
    pub fn shutdown(self) -> Result<PublisherReport> {
        self.handle.send(ToPublisher::Shutdown);
        self.join()
    }

    /// Waits for the publisher to end by itself (fatal error) or after a shutdown request.
    pub fn join(self) -> Result<PublisherReport> {
        self.thread
            .join()
            .map_err(|_| anyhow!("the MQTT publisher thread panicked"))?
    }

    /// Whether the publisher thread has ended (fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// What a publish request was, to act on its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// A queue record: delete it when acknowledged.
    Seq(u64),
    /// The final `offline` status.
    Offline,
    /// Status, discovery, stats: not queued.
    Untracked,
}

struct PubLoop {
    s: MqttSettings,
    queue: DiskQueue,
    client: Client,
    stats_fn: StatsFn,
    connected: bool,
    ever_connected: bool,
    /// One entry per publish request, in request order.
    requested: VecDeque<Track>,
    pkids: HashMap<u16, Track>,
    offline_acked: bool,
    offline_requested: Option<Instant>,
    report: PublisherReport,
    next_stats: Instant,
}

impl PubLoop {
    fn new(s: MqttSettings, queue: DiskQueue, client: Client, stats_fn: StatsFn) -> Self {
        Self {
            next_stats: Instant::now() + s.stats_interval,
            s,
            queue,
            client,
            stats_fn,
            connected: false,
            ever_connected: false,
            requested: VecDeque::new(),
            pkids: HashMap::new(),
            offline_acked: false,
            offline_requested: None,
            report: PublisherReport::default(),
        }
    }

    fn outstanding(&self) -> usize {
        self.requested.len() + self.pkids.len()
    }

    fn publish(&mut self, topic: &str, retain: bool, payload: Vec<u8>, track: Track) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                self.requested.push_back(track);
                true
            }
            Err(e) => {
                log::debug!("publish request not accepted now: {e}");
                false
            }
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        if self.ever_connected {
            self.report.reconnects += 1;
            log::info!("reconnected to the MQTT broker");
        } else {
            log::info!(
                "connected to the MQTT broker {}:{}",
                self.s.url.host,
                self.s.url.port
            );
        }
        self.ever_connected = true;
        self.requested.clear();
        self.pkids.clear();
        self.queue.rewind();
        let status = self.s.topics.status.clone();
        self.publish(
            &status,
            true,
            STATUS_ONLINE.as_bytes().to_vec(),
            Track::Untracked,
        );
        if let Some(prefix) = self.s.ha_discovery.clone() {
            for (topic, json) in
                payload::ha_discovery(&prefix, &self.s.device_id, &self.s.topics, &self.s.model)
            {
                self.publish(&topic, true, json.into_bytes(), Track::Untracked);
            }
        }
    }

    fn on_disconnected(&mut self) {
        if self.connected {
            log::warn!(
                "lost the MQTT broker; {} messages wait in the offline queue",
                self.queue.len()
            );
        }
        self.connected = false;
        self.requested.clear();
        self.pkids.clear();
        self.offline_requested = None;
        self.queue.rewind();
    }

    /// Sends queued records while the window allows.
    fn pump(&mut self) -> Result<()> {
        if !self.connected {
            return Ok(());
        }
        while self.outstanding() < self.s.inflight {
            let Some((seq, rec)) = self.queue.next_unsent()? else {
                break;
            };
            if !self.publish(&rec.topic, rec.retain, rec.payload, Track::Seq(seq)) {
                self.queue.unsend_last();
                break;
            }
        }
        Ok(())
    }

    fn handle_net(&mut self, ev: Result<Event, ConnectionError>) -> Result<()> {
        match ev {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => self.on_connected(),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(t) = self.requested.pop_front() {
                    self.pkids.insert(pkid, t);
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(t) = self.pkids.remove(&ack.pkid) {
                    self.report.published += 1;
                    match t {
                        Track::Seq(seq) => self.queue.ack(seq)?,
                        Track::Offline => self.offline_acked = true,
                        Track::Untracked => {}
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(why) = auth_refused(&e) {
                    if !self.ever_connected {
                        return Err(anyhow!(
                            "MQTT broker {}:{}: {why}",
                            self.s.url.host,
                            self.s.url.port
                        ));
                    }
                    log::error!("{why}; retrying");
                } else {
                    log::warn!(
                        "MQTT broker {}:{}: {e}; retrying",
                        self.s.url.host,
                        self.s.url.port
                    );
                }
                self.on_disconnected();
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, r: Record) -> Result<()> {
        match self.queue.push(&r)? {
            crate::queue::PushOutcome::Queued { .. } => {}
            crate::queue::PushOutcome::QueuedDroppingOldest { dropped, .. } => {
                log::warn!(
                    "offline queue full ({} bytes): dropped the {dropped} oldest messages",
                    self.s.max_bytes
                );
            }
            crate::queue::PushOutcome::Rejected => {
                log::warn!(
                    "offline queue full ({} bytes, policy drop-newest): message to {} dropped",
                    self.s.max_bytes,
                    r.topic
                );
            }
        }
        Ok(())
    }

    fn tick_stats(&mut self) {
        if Instant::now() < self.next_stats {
            return;
        }
        self.next_stats = Instant::now() + self.s.stats_interval;
        if !self.connected {
            return;
        }
        let msg = (self.stats_fn)(
            self.queue.stats(),
            self.report.published,
            self.report.reconnects,
        );
        if let Ok(json) = serde_json::to_vec(&msg) {
            let topic = self.s.topics.stats.clone();
            self.publish(&topic, false, json, Track::Untracked);
        }
    }

    fn run(&mut self, rx: Receiver<Input>) -> Result<PublisherReport> {
        let mut shutdown_at: Option<Instant> = None;
        loop {
            let timeout = Duration::from_millis(50);
            match rx.recv_timeout(timeout) {
                Ok(Input::Msg(ToPublisher::Queued(r))) => self.enqueue(r)?,
                Ok(Input::Msg(ToPublisher::Shutdown)) => {
                    shutdown_at.get_or_insert(Instant::now());
                }
                Ok(Input::Net(ev)) => self.handle_net(ev)?,
                Ok(Input::NetClosed) => {
                    self.connected = false;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.pump()?;
            self.tick_stats();
            if let Some(t) = shutdown_at {
                let drained = self.queue.is_empty();
                let timed_out = t.elapsed() >= self.s.flush_timeout;
                if drained || timed_out {
                    if !self.connected {
                        break;
                    }
                    match self.offline_requested {
                        None => {
                            if !drained {
                                log::warn!(
                                    "shutdown: {} unacknowledged messages stay in the offline queue for the next start",
                                    self.queue.len()
                                );
                            }
                            let status = self.s.topics.status.clone();
                            if self.publish(
                                &status,
                                true,
                                STATUS_OFFLINE.as_bytes().to_vec(),
                                Track::Offline,
                            ) {
                                self.offline_requested = Some(Instant::now());
                            }
                        }
                        Some(at) => {
                            if self.offline_acked || at.elapsed() > Duration::from_secs(2) {
                                break;
                            }
                        }
                    }
                }
            }
        }
        let _ = self.client.try_disconnect();
        self.report.left_in_queue = self.queue.len() as u64;
        self.report.dropped = self.queue.stats().dropped;
        Ok(self.report.clone())
    }

    fn close(&mut self) {
        if let Err(e) = self.queue.sync_acked() {
            log::warn!("{e}");
        }
    }
}

/// A `StatsFn` that never changes (for tests).
pub fn static_stats(msg: payload::StatsMsg) -> StatsFn {
    let msg = Arc::new(msg);
    Box::new(move |_, _, _| (*msg).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerUrl::parse("mqtt://localhost:1884").unwrap(),
            BrokerUrl {
                tls: false,
                host: "localhost".into(),
                port: 1884
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://b.example").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1883").unwrap().host, "::1");
        assert!(BrokerUrl::parse("localhost:1883").is_err());
        assert!(BrokerUrl::parse("mqtt://h:x").is_err());
        assert!(BrokerUrl::parse("mqtt://u:p@h:1").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
    }
}
