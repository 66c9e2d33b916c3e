//! The MQTT publisher: one thread drives the rumqttc connection (QoS 1, rustls TLS) and the
//! delivery state machine (`delivery`) over the on-disk queue (`queue::FileStore`).
//!
//! The thread waits on three things at once: rumqttc's event loop, the daemon's records and a
//! 100 ms tick. It feeds each to the state machine, then carries out its commands: publishes go
//! into rumqttc's request channel, stats are built and handed back, a disconnect ends the run.
//! Asking and observing happen on this one thread, and the event loop's poll is never cancelled
//! half-way (records and ticks are handled while the same poll stays pending), so the state
//! machine's pairing of requests with packet ids holds by construction; on each ConnAck what
//! rumqttc kept from an earlier connection is discarded, for the state machine resends it.
//!
//! Around that: the last will is `offline` (retained); failed connection attempts back off
//! exponentially from `reconnect_min` to `reconnect_max`; credentials refused before the first
//! connection are fatal (retrying cannot help).

use crate::delivery::{Command, Delivery, DeliveryConfig, DeliveryStats, DropPolicy, Input};
use crate::payload::{self, StatsMsg, Topics, STATUS_OFFLINE};
use crate::queue::{FileStore, FileStoreConfig, QueueError, Record, Store};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the state machine gets a tick (group commit, stats, deadlines).
const TICK: Duration = Duration::from_millis(100);
/// How long the broker has to acknowledge the final `offline`.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a clean disconnect may take to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Broker address parsed from `mqtt[s]://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("'{0}' must start with mqtt:// or mqtts:// (e.g. mqtt://localhost:1883)")]
    Scheme(String),
    #[error(
        "'{0}': give only scheme://host:port (credentials go in mqtt.username / mqtt.password)"
    )]
    NotJustHostPort(String),
    #[error("'{url}': port '{port}' is not a number 1–65535")]
    Port {
        url: String,
        port: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("'{0}' has no host")]
    NoHost(String),
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<Self, BrokerUrlError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("ssl://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(BrokerUrlError::Scheme(s.into()));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(BrokerUrlError::NotJustHostPort(s.into()));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|source| BrokerUrlError::Port {
                    url: s.into(),
                    port: p.into(),
                    source,
                })?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(BrokerUrlError::NoHost(s.into()));
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// The offline queue: where, how it syncs, its bound.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub dir: PathBuf,
    pub store: FileStoreConfig,
    pub max_bytes: u64,
    pub policy: DropPolicy,
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
    /// Home Assistant discovery prefix, when on.
    pub ha_discovery: Option<String>,
    pub stats_interval: Duration,
    /// Publishes in flight at most.
    pub inflight: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub flush_timeout: Duration,
    pub queue: QueueSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtts:// needs a CA certificate: set mqtt.ca_file (--mqtt-ca FILE)")]
    NoCaFile,
    #[error("{field}: cannot read {path}")]
    ReadFile {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt.cert_file and mqtt.key_file must be given together")]
    HalfClientAuth,
    #[error("cannot open the offline queue in {dir}")]
    OpenQueue {
        dir: PathBuf,
        #[source]
        source: QueueError,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("MQTT broker {host}:{port}: {why}")]
    Refused {
        host: String,
        port: u16,
        why: &'static str,
        #[source]
        source: Box<ConnectionError>,
    },
    #[error("cannot start the MQTT thread")]
    Thread(#[source] std::io::Error),
    #[error("the MQTT client did not take a publish request")]
    Request(#[source] rumqttc::ClientError),
    #[error("the MQTT publisher thread panicked")]
    Panicked,
}

/// What the daemon sends to the publisher.
#[derive(Debug)]
pub enum ToPublisher {
    /// A QoS 1 message that must survive the broker being away: queued on disk first.
    Queued(Record),
    /// Deliver what is queued (up to the flush timeout), publish `offline`, disconnect.
    Shutdown,
}

/// Sends messages to the publisher.
#[derive(Clone)]
pub struct PublisherHandle {
    tx: flume::Sender<ToPublisher>,
}

impl PublisherHandle {
    /// False once the publisher has stopped.
    pub fn send(&self, m: ToPublisher) -> bool {
        self.tx.send(m).is_ok()
    }
}

/// Builds `<base>/stats` from the delivery's numbers (the daemon adds the audio path's).
pub type StatsFn = Box<dyn FnMut(&DeliveryStats) -> StatsMsg + Send>;

/// Result of a publisher run.
#[derive(Debug, Default, Clone)]
pub struct PublisherReport {
    pub published: u64,
    pub reconnects: u64,
    pub left_in_queue: u64,
    pub dropped: u64,
}

/// For the daemon's last line: `N messages published[, …kept…][, …dropped…]`.
impl std::fmt::Display for PublisherReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages published", self.published)?;
        if self.left_in_queue > 0 {
            let n = self.left_in_queue;
            write!(f, ", {n} undelivered messages kept in the offline queue")?;
        }
        if self.dropped > 0 {
            write!(f, ", {} dropped by the queue bound", self.dropped)?;
        }
        Ok(())
    }
}

fn read(field: &'static str, path: &PathBuf) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|source| MqttError::ReadFile {
        field,
        path: path.clone(),
        source,
    })
}

fn tls_config(s: &MqttSettings) -> Result<TlsConfiguration, MqttError> {
    let ca_path = match &s.ca_file {
        Some(p) => p.clone(),
        None => {
            let sys = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
            if !sys.is_file() {
                return Err(MqttError::NoCaFile);
            }
            sys
        }
    };
    let ca = read("mqtt.ca_file", &ca_path)?;
    let client_auth = match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => Some((read("mqtt.cert_file", c)?, read("mqtt.key_file", k)?)),
        (None, None) => None,
        _ => return Err(MqttError::HalfClientAuth),
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

fn options(s: &MqttSettings) -> Result<MqttOptions, MqttError> {
    let mut o = MqttOptions::new(s.client_id.clone(), s.url.host.clone(), s.url.port);
    // Twice the window's packet ids: a broker acknowledging out of order rarely makes rumqttc
    // wait on a collision.
    let pkids = (s.inflight.max(1) * 2).min(u16::MAX as usize - 1) as u16;
    o.set_keep_alive(s.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(pkids)
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

/// Why a connection error can never succeed by retrying (wrong credentials).
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
    thread: std::thread::JoinHandle<Result<PublisherReport, MqttError>>,
}

impl Publisher {
    /// Opens the offline queue and starts the publisher's thread. `model` names the model in
    /// discovery.
    pub fn start(s: MqttSettings, model: &str, stats: StatsFn) -> Result<Self, MqttError> {
        let dir = s.queue.dir.clone();
        let store = FileStore::open(&dir, s.queue.store.clone())
            .map_err(|source| MqttError::OpenQueue { dir, source })?;
        let found = store.stats();
        if found.truncated_bytes > 0 {
            log::warn!(
                "offline queue {}: cut a torn tail of {} bytes (a power cut while writing); the messages before it are kept",
                s.queue.dir.display(),
                found.truncated_bytes
            );
        }
        if found.recovered > 0 {
            log::info!(
                "offline queue {}: {} undelivered messages from an earlier run will be sent first",
                s.queue.dir.display(),
                found.recovered
            );
        }
        let opts = options(&s)?;
        let mut on_connect = vec![payload::status(&s.topics, true)];
        if let Some(prefix) = &s.ha_discovery {
            on_connect.extend(payload::ha_discovery(
                prefix,
                &s.device_id,
                &s.topics,
                model,
            ));
        }
        let machine = Delivery::new(
            store,
            DeliveryConfig {
                window: s.inflight,
                max_bytes: s.queue.max_bytes,
                policy: s.queue.policy,
                flush_timeout: s.flush_timeout,
                farewell_timeout: FAREWELL_TIMEOUT,
                stats_interval: Some(s.stats_interval),
                on_connect,
                farewell: Some(payload::status(&s.topics, false)),
            },
        );
        let (tx, intake) = flume::unbounded();
        let thread = std::thread::Builder::new()
            .name("sfxtag-mqtt".into())
            .spawn(move || {
                // The request channel holds at most the window (the state machine's bound).
                let (client, eventloop) = AsyncClient::new(opts, s.inflight.max(1) + 16);
                let driver = Driver {
                    machine,
                    client,
                    url: s.url.clone(),
                    stats_topic: s.topics.stats.clone(),
                    stats,
                    backoff: s.reconnect_min,
                    reconnect: (s.reconnect_min, s.reconnect_max),
                    closing: None,
                    done: false,
                };
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(MqttError::Thread)?
                    .block_on(drive(driver, eventloop, intake))
            })
            .map_err(MqttError::Thread)?;
        Ok(Self {
            handle: PublisherHandle { tx },
            thread,
        })
    }

    /// Asks for shutdown and waits for the publisher (drain, `offline`, disconnect).
    pub fn shutdown(self) -> Result<PublisherReport, MqttError> {
        self.handle.send(ToPublisher::Shutdown);
        self.join()
    }

    /// Waits for the publisher to end by itself (fatal error) or after a shutdown request.
    pub fn join(self) -> Result<PublisherReport, MqttError> {
        self.thread.join().map_err(|_| MqttError::Panicked)?
    }

    /// Whether the publisher has ended (a fatal error, unless shut down).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// The publisher thread's state around the machine.
struct Driver {
    machine: Delivery<FileStore>,
    client: AsyncClient,
    url: BrokerUrl,
    stats_topic: String,
    stats: StatsFn,
    /// Wait before the next connection attempt.
    backoff: Duration,
    reconnect: (Duration, Duration),
    /// A clean disconnect was asked for; the run ends when it went out, or at this time.
    closing: Option<Instant>,
    done: bool,
}

async fn drive(
    mut d: Driver,
    mut eventloop: EventLoop,
    intake: flume::Receiver<ToPublisher>,
) -> Result<PublisherReport, MqttError> {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut intake_open = true;
    let mut wait: Option<Duration> = None;
    while !d.done {
        let event = {
            let el = &mut eventloop;
            let poll = async move {
                if let Some(w) = wait {
                    tokio::time::sleep(w).await;
                }
                el.poll().await
            };
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    ev = &mut poll => break Some(ev),
                    m = intake.recv_async(), if intake_open => match m {
                        Ok(m) => d.on_intake(m)?,
                        // Every handle dropped without a shutdown: shut down anyway.
                        Err(_) => {
                            intake_open = false;
                            d.on_intake(ToPublisher::Shutdown)?;
                        }
                    },
                    _ = ticker.tick() => d.on_tick()?,
                }
                if d.done {
                    break None;
                }
            }
        };
        wait = None;
        match event {
            Some(Ok(ev)) => d.on_event(ev, &mut eventloop)?,
            Some(Err(e)) => wait = d.on_error(e)?,
            None => {}
        }
    }
    Ok(d.report())
}

impl Driver {
    fn report(&self) -> PublisherReport {
        let s = self.machine.stats();
        PublisherReport {
            published: s.published,
            reconnects: s.reconnects,
            left_in_queue: s.queue.depth,
            dropped: s.dropped,
        }
    }

    fn handle(&mut self, input: Input, now: Instant) -> Result<(), MqttError> {
        self.machine.handle(input, now)?;
        self.execute(now)
    }

    /// Carries out the machine's commands.
    fn execute(&mut self, now: Instant) -> Result<(), MqttError> {
        while let Some(c) = self.machine.poll_command() {
            match c {
                Command::Publish { record, .. } => self
                    .client
                    .try_publish(
                        record.topic,
                        QoS::AtLeastOnce,
                        record.retain,
                        record.payload,
                    )
                    .map_err(MqttError::Request)?,
                Command::Stats(s) => {
                    let msg = (self.stats)(&s);
                    let r = Record::new(self.stats_topic.clone(), msg.to_json());
                    self.machine.handle(Input::Publish(r), now)?;
                }
                Command::Disconnect => {
                    let _ = self.client.try_disconnect();
                    self.closing = Some(now + CLOSE_WAIT);
                }
                Command::Done => self.done = true,
            }
        }
        Ok(())
    }

    fn on_intake(&mut self, m: ToPublisher) -> Result<(), MqttError> {
        let input = match m {
            ToPublisher::Queued(r) => Input::Queued(r),
            ToPublisher::Shutdown => Input::Shutdown,
        };
        self.handle(input, Instant::now())
    }

    fn on_tick(&mut self) -> Result<(), MqttError> {
        let now = Instant::now();
        self.handle(Input::Tick, now)?;
        if self.closing.is_some_and(|t| now >= t) {
            self.done = true;
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event, eventloop: &mut EventLoop) -> Result<(), MqttError> {
        let now = Instant::now();
        match ev {
            Event::Incoming(Incoming::ConnAck(_)) => {
                // Requests rumqttc kept from an earlier connection would go out in this one and
                // take packet ids the machine pairs with its own requests: it resends instead.
                eventloop.pending.clear();
                eventloop.state.collision = None;
                self.backoff = self.reconnect.0;
                if self.machine.connected_once() {
                    log::info!("reconnected to the MQTT broker");
                } else {
                    log::info!(
                        "connected to the MQTT broker {}:{}",
                        self.url.host,
                        self.url.port
                    );
                }
                self.handle(Input::Connected, now)
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => self.handle(Input::Sent(pkid), now),
            Event::Incoming(Incoming::PubAck(ack)) => self.handle(Input::Acked(ack.pkid), now),
            Event::Outgoing(Outgoing::Disconnect) if self.closing.is_some() => {
                self.done = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A connection error: returns how long to wait before the next attempt.
    fn on_error(&mut self, e: ConnectionError) -> Result<Option<Duration>, MqttError> {
        let now = Instant::now();
        if self.closing.is_some() {
            self.done = true;
            return Ok(None);
        }
        let wait = self.backoff;
        if let Some(why) = auth_refused(&e) {
            if !self.machine.connected_once() {
                self.machine.commit(now)?;
                return Err(MqttError::Refused {
                    host: self.url.host.clone(),
                    port: self.url.port,
                    why,
                    source: Box::new(e),
                });
            }
            log::error!("{why}; retrying");
        } else if self.machine.is_online() {
            log::warn!(
                "lost the MQTT broker {}:{} ({e}); {} messages wait in the offline queue",
                self.url.host,
                self.url.port,
                self.machine.stats().queue.depth
            );
        } else {
            log::warn!(
                "MQTT broker {}:{}: {e}; retrying in {:.1} s",
                self.url.host,
                self.url.port,
                wait.as_secs_f64()
            );
        }
        self.handle(Input::Disconnected, now)?;
        self.backoff = (self.backoff * 2).min(self.reconnect.1);
        Ok(Some(wait))
    }
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
        assert!(matches!(
            BrokerUrl::parse("localhost:1883"),
            Err(BrokerUrlError::Scheme(_))
        ));
        let e = BrokerUrl::parse("mqtt://h:x").unwrap_err();
        assert!(matches!(e, BrokerUrlError::Port { .. }));
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parse error is kept"
        );
        assert!(matches!(
            BrokerUrl::parse("mqtt://u:p@h:1"),
            Err(BrokerUrlError::NotJustHostPort(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://"),
            Err(BrokerUrlError::NoHost(_))
        ));
    }
}
