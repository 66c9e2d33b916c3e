//! Delivery: a sans-I/O state machine, in the style of rumqttc's own `state.rs`, between the
//! offline queue (a [`Store`]) and one MQTT connection. It owns what decides what goes out and
//! when a record is done: the queue cursor, in-flight tracking, the drop policy, the retained
//! status and discovery after each connection, when stats are due, and the shutdown sequence.
//! It takes [`Input`]s (a record queued, a connection event, a tick) and answers with
//! [`Command`]s (publish with a tracking id, stats due, disconnect, done) for the one thread that
//! drives the connection (`mqtt`).
//!
//! Tracking: publishes are asked of the client in order, and rumqttc reports
//! `Outgoing::Publish(pkid)` in the order it takes requests from its channel, so the oldest
//! publish asked for and not yet seen going out is the one that got `pkid`; its PubAck then names
//! the record to delete. That pairing is exact because one thread both asks and observes, nothing
//! is asked while offline, and the driver discards what rumqttc kept from an earlier connection
//! when a new one starts: no request crosses from one connection into the next. On a connection
//! error everything outstanding is forgotten, and after the next ConnAck the queue is sent again
//! from its oldest unacknowledged record: at-least-once, never reordered.
//!
//! Window: at most `window` publishes are outstanding (asked for, or sent and not acknowledged),
//! status and discovery included, so rumqttc's request channel and packet ids never run out.

use crate::queue::{QueueError, Record, Store, StoreStats};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// What to do when a new record does not fit in the queue's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropPolicy {
    /// Delete the oldest records (a whole segment at a time).
    DropOldest,
    /// Refuse the new record.
    DropNewest,
}

impl DropPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DropPolicy::DropOldest => "drop-oldest",
            DropPolicy::DropNewest => "drop-newest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Publishes outstanding at most (asked for, or sent and not yet acknowledged).
    pub window: usize,
    /// Bound on the queue's bytes.
    pub max_bytes: u64,
    pub policy: DropPolicy,
    /// After `Shutdown`: how long to wait for the queue to be delivered.
    pub flush_timeout: Duration,
    /// How long to wait for the broker to acknowledge `farewell`.
    pub farewell_timeout: Duration,
    pub stats_interval: Option<Duration>,
    /// Sent first after every ConnAck (retained status `online`, discovery).
    pub on_connect: Vec<Record>,
    /// Sent last on a clean shutdown (retained status `offline`).
    pub farewell: Option<Record>,
}

#[derive(Debug)]
pub enum Input {
    /// A record that must reach the broker: appended to the queue first.
    Queued(Record),
    /// A message that is not queued (stats): sent if online, else forgotten.
    Publish(Record),
    /// The broker accepted the connection (ConnAck).
    Connected,
    /// rumqttc sent the oldest outstanding request with this packet id (`Outgoing::Publish`).
    Sent(u16),
    /// The broker acknowledged this packet id (PubAck).
    Acked(u16),
    /// The connection failed or was lost.
    Disconnected,
    /// Time passed (group commit, stats, shutdown deadlines).
    Tick,
    /// Deliver what is queued (up to the flush timeout), say farewell, disconnect.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask the client to publish `record` (QoS 1); `id` counts publishes from 0.
    Publish { id: u64, record: Record },
    /// Stats are due: build them and hand them back as [`Input::Publish`].
    Stats(DeliveryStats),
    /// Disconnect cleanly; nothing more will be asked.
    Disconnect,
    /// Nothing to disconnect (offline); the end.
    Done,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub queue: StoreStats,
    /// Records dropped by the queue's bound (or too large for it) since start.
    pub dropped: u64,
    /// Publishes the broker acknowledged since start.
    pub published: u64,
    pub reconnects: u64,
}

/// What a publish was, to act on its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Record(u64),
    Control,
    Farewell,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    id: u64,
    track: Track,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Farewell {
    NotYet,
    Queued(Instant),
    Acked,
}

#[derive(Debug, Clone, Copy)]
struct Closing {
    deadline: Instant,
    farewell: Farewell,
}

pub struct Delivery<S> {
    store: S,
    cfg: DeliveryConfig,
    online: bool,
    connected_once: bool,
    /// Status, discovery, stats, farewell: sent before any record.
    control: VecDeque<(Track, Record)>,
    /// The next record to send has a seq of at least this.
    cursor: u64,
    /// Asked of the client, not yet seen going out: oldest first.
    requested: VecDeque<Outstanding>,
    /// Sent, by packet id, not yet acknowledged.
    inflight: HashMap<u16, Outstanding>,
    next_id: u64,
    closing: Option<Closing>,
    finished: bool,
    next_stats: Option<Instant>,
    dropped: u64,
    published: u64,
    reconnects: u64,
    /// Events that matched nothing outstanding (duplicate acks, stale sends).
    ignored: u64,
    out: VecDeque<Command>,
}

impl<S: Store> Delivery<S> {
    pub fn new(store: S, mut cfg: DeliveryConfig) -> Self {
        cfg.window = cfg.window.max(1);
        Self {
            store,
            cfg,
            online: false,
            connected_once: false,
            control: VecDeque::new(),
            cursor: 0,
            requested: VecDeque::new(),
            inflight: HashMap::new(),
            next_id: 0,
            closing: None,
            finished: false,
            next_stats: None,
            dropped: 0,
            published: 0,
            reconnects: 0,
            ignored: 0,
            out: VecDeque::new(),
        }
    }

    /// Takes one input. Errors are the store's (a disk that cannot be written).
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<(), QueueError> {
        if self.finished {
            return Ok(());
        }
        match input {
            Input::Queued(r) => self.enqueue(r)?,
            Input::Publish(r) => {
                if self.online {
                    self.control.push_back((Track::Control, r));
                }
            }
            Input::Connected => self.connected(),
            Input::Sent(pkid) => self.sent(pkid),
            Input::Acked(pkid) => self.acked(pkid)?,
            Input::Disconnected => self.disconnected(),
            Input::Tick => self.tick(now)?,
            Input::Shutdown => {
                self.closing.get_or_insert(Closing {
                    deadline: now + self.cfg.flush_timeout,
                    farewell: Farewell::NotYet,
                });
            }
        }
        self.step_closing(now)?;
        self.pump()
    }

    /// The next command to carry out, oldest first.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    pub fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            queue: self.store.stats(),
            dropped: self.dropped,
            published: self.published,
            reconnects: self.reconnects,
        }
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    pub fn connected_once(&self) -> bool {
        self.connected_once
    }

    /// Whether `Disconnect` or `Done` was given.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Events that matched nothing outstanding.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Makes the queue durable now (before a fatal exit).
    pub fn commit(&mut self, now: Instant) -> Result<(), QueueError> {
        self.store.commit(now, true)
    }

    fn enqueue(&mut self, r: Record) -> Result<(), QueueError> {
        let need = self.store.size_of(&r);
        let max = self.cfg.max_bytes;
        if need > max {
            self.dropped += 1;
            log::warn!(
                "message to {} ({need} bytes) is larger than the offline queue's bound ({max} bytes): dropped",
                r.topic
            );
            return Ok(());
        }
        while self.store.stats().bytes + need > max {
            match self.cfg.policy {
                DropPolicy::DropNewest => {
                    self.dropped += 1;
                    log::warn!(
                        "offline queue full ({max} bytes, policy drop-newest): message to {} dropped",
                        r.topic
                    );
                    return Ok(());
                }
                DropPolicy::DropOldest => match self.store.drop_oldest()? {
                    Some(n) => {
                        self.dropped += n;
                        log::warn!(
                            "offline queue full ({max} bytes): dropped the {n} oldest messages"
                        );
                    }
                    // Only the segment being written is left: over the bound by less than it.
                    None => break,
                },
            }
        }
        match self.store.append(&r) {
            Err(QueueError::TooLarge(n)) => {
                self.dropped += 1;
                log::warn!(
                    "message to {} ({n} bytes) cannot be queued: dropped",
                    r.topic
                );
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    fn forget_outstanding(&mut self) {
        self.requested.clear();
        self.inflight.clear();
        self.control.clear();
        if let Some(c) = &mut self.closing {
            if matches!(c.farewell, Farewell::Queued(_)) {
                c.farewell = Farewell::NotYet;
            }
        }
    }

    fn connected(&mut self) {
        if self.connected_once {
            self.reconnects += 1;
        }
        self.connected_once = true;
        self.online = true;
        self.forget_outstanding();
        self.control.extend(
            self.cfg
                .on_connect
                .iter()
                .map(|r| (Track::Control, r.clone())),
        );
        self.cursor = 0;
    }

    fn disconnected(&mut self) {
        self.online = false;
        self.forget_outstanding();
    }

    fn sent(&mut self, pkid: u16) {
        if !self.online {
            self.ignored += 1;
            return;
        }
        match self.requested.pop_front() {
            Some(o) => {
                log::trace!("publish #{} went out as packet {pkid}", o.id);
                if self.inflight.insert(pkid, o).is_some() {
                    // A packet id still in flight cannot be reused; what it named stays queued.
                    self.ignored += 1;
                }
            }
            None => self.ignored += 1,
        }
    }

    fn acked(&mut self, pkid: u16) -> Result<(), QueueError> {
        let Some(o) = self.inflight.remove(&pkid) else {
            self.ignored += 1;
            return Ok(());
        };
        self.published += 1;
        match o.track {
            Track::Record(seq) => {
                self.store.ack(seq)?;
            }
            Track::Control => {}
            Track::Farewell => {
                if let Some(c) = &mut self.closing {
                    c.farewell = Farewell::Acked;
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self, now: Instant) -> Result<(), QueueError> {
        self.store.commit(now, false)?;
        if let Some(every) = self.cfg.stats_interval {
            let due = *self.next_stats.get_or_insert(now + every);
            if now >= due {
                self.next_stats = Some(now + every);
                if self.online {
                    self.out.push_back(Command::Stats(self.stats()));
                }
            }
        }
        Ok(())
    }

    fn step_closing(&mut self, now: Instant) -> Result<(), QueueError> {
        let Some(c) = self.closing else {
            return Ok(());
        };
        let drained = self.store.stats().depth == 0;
        let late = now >= c.deadline;
        if !self.online {
            if drained || late {
                self.finish(Command::Done, now)?;
            }
            return Ok(());
        }
        match c.farewell {
            Farewell::NotYet if drained || late => match self.cfg.farewell.clone() {
                Some(r) => {
                    self.control.push_front((Track::Farewell, r));
                    self.set_farewell(Farewell::Queued(now));
                }
                None => self.finish(Command::Disconnect, now)?,
            },
            Farewell::Queued(at)
                if now.saturating_duration_since(at) >= self.cfg.farewell_timeout =>
            {
                self.finish(Command::Disconnect, now)?
            }
            Farewell::Acked => self.finish(Command::Disconnect, now)?,
            _ => {}
        }
        Ok(())
    }

    fn set_farewell(&mut self, f: Farewell) {
        if let Some(c) = &mut self.closing {
            c.farewell = f;
        }
    }

    fn finish(&mut self, last: Command, now: Instant) -> Result<(), QueueError> {
        self.store.commit(now, true)?;
        self.out.push_back(last);
        self.finished = true;
        Ok(())
    }

    /// Asks for publishes while the window has room: control messages first, then records.
    fn pump(&mut self) -> Result<(), QueueError> {
        if !self.online || self.finished {
            return Ok(());
        }
        // Once the farewell is on its way, records wait for the next start.
        let records = self.closing.is_none_or(|c| c.farewell == Farewell::NotYet);
        while self.requested.len() + self.inflight.len() < self.cfg.window {
            let (track, record) = if let Some(c) = self.control.pop_front() {
                c
            } else if !records {
                break;
            } else if let Some((seq, r)) = self.store.next_from(self.cursor)? {
                self.cursor = seq + 1;
                (Track::Record(seq), r)
            } else {
                break;
            };
            let id = self.next_id;
            self.next_id += 1;
            self.requested.push_back(Outstanding { id, track });
            self.out.push_back(Command::Publish { id, record });
        }
        Ok(())
    }
}
