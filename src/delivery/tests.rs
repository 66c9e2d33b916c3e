//! The delivery state machine over the interleavings that matter, without a broker: each test
//! plays the connection's events by hand; the property test plays random schedules against a
//! stand-in for rumqttc and the broker.

use super::*;
use crate::queue::{FileStore, FileStoreConfig, MemStore};
use std::collections::BTreeMap;

fn cfg(window: usize) -> DeliveryConfig {
    DeliveryConfig {
        window,
        max_bytes: 1 << 20,
        policy: DropPolicy::DropOldest,
        flush_timeout: Duration::from_secs(10),
        farewell_timeout: Duration::from_secs(2),
        stats_interval: None,
        on_connect: vec![Record::retained("s/status", b"online".to_vec())],
        farewell: Some(Record::retained("s/status", b"offline".to_vec())),
    }
}

fn rec(n: u64) -> Record {
    Record::new("s/prediction", format!("r{n:06}").into_bytes())
}

fn text(r: &Record) -> String {
    String::from_utf8(r.payload.clone()).unwrap()
}

/// A machine and a clock.
struct M<S = MemStore> {
    d: Delivery<S>,
    now: Instant,
}

impl<S: Store> M<S> {
    fn new(store: S, cfg: DeliveryConfig) -> Self {
        Self {
            d: Delivery::new(store, cfg),
            now: Instant::now(),
        }
    }

    fn on(&mut self, i: Input) -> &mut Self {
        self.d.handle(i, self.now).unwrap();
        self
    }

    fn later(&mut self, by: Duration) -> &mut Self {
        self.now += by;
        self.on(Input::Tick)
    }

    fn queue(&mut self, range: std::ops::Range<u64>) -> &mut Self {
        for n in range {
            self.on(Input::Queued(rec(n)));
        }
        self
    }

    fn sent(&mut self, pkids: std::ops::RangeInclusive<u16>) -> &mut Self {
        for p in pkids {
            self.on(Input::Sent(p));
        }
        self
    }

    fn commands(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.d.poll_command()).collect()
    }

    /// The payloads of the publishes asked for since the last call.
    fn asked(&mut self) -> Vec<String> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::Publish { record, .. } => Some(text(&record)),
                _ => None,
            })
            .collect()
    }

    /// The payloads still queued, oldest first.
    fn queued(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        let mut from = 0;
        while let Some((seq, r)) = self.d.store.next_from(from).unwrap() {
            from = seq + 1;
            v.push(text(&r));
        }
        v
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn status_goes_first_after_every_connect_and_nothing_is_asked_offline() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.queue(0..5);
    assert!(m.asked().is_empty(), "nothing is asked while offline");
    m.on(Input::Connected);
    assert_eq!(
        m.asked(),
        strs(&["online", "r000000", "r000001", "r000002"]),
        "the window (4) counts the status too"
    );
    m.on(Input::Disconnected).on(Input::Connected);
    assert_eq!(
        m.asked(),
        strs(&["online", "r000000", "r000001", "r000002"]),
        "everything unacknowledged again, from the oldest"
    );
    assert_eq!(m.d.stats().reconnects, 1);
}

#[test]
fn error_between_publish_and_ack_resends_after_reconnect() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.queue(0..2).on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000000", "r000001"]));
    m.sent(1..=3).on(Input::Acked(1)).on(Input::Acked(2));
    assert_eq!(
        m.queued(),
        strs(&["r000001"]),
        "r0 acknowledged and deleted"
    );
    // r1 went out, the connection broke before its PubAck.
    m.on(Input::Disconnected);
    assert_eq!(
        m.queued(),
        strs(&["r000001"]),
        "an unacknowledged record stays"
    );
    m.on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000001"]));
    m.sent(1..=2).on(Input::Acked(2));
    assert!(m.queued().is_empty());
    assert_eq!(
        m.d.stats().published,
        3,
        "two statuses were sent, one acknowledged"
    );
}

#[test]
fn error_between_request_and_outgoing_event_never_shifts_the_mapping() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.queue(0..2).on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000000", "r000001"]));
    // The connection broke before rumqttc took any request from its channel.
    m.on(Input::Disconnected);
    // Events naming requests of the old connection match nothing (the driver never lets such a
    // request reach a new connection; if one did, it must not be paired with a new publish).
    m.on(Input::Sent(7)).on(Input::Acked(7));
    assert_eq!(m.d.ignored(), 2);
    m.on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000000", "r000001"]));
    m.on(Input::Acked(1));
    assert_eq!(
        m.d.ignored(),
        3,
        "an ack of a packet not yet sent matches nothing"
    );
    // Packets pair with this connection's requests, in order: 1 is the status, 2 r0, 3 r1.
    m.sent(1..=3);
    m.on(Input::Acked(3));
    assert_eq!(m.queued(), strs(&["r000000"]));
    m.on(Input::Acked(2));
    assert!(m.queued().is_empty());
}

#[test]
fn duplicate_and_out_of_order_acks() {
    let mut m = M::new(MemStore::new(), cfg(8));
    m.queue(0..4).on(Input::Connected);
    assert_eq!(m.asked().len(), 5);
    m.sent(1..=5);
    m.on(Input::Acked(5)); // r3 first
    assert_eq!(m.queued(), strs(&["r000000", "r000001", "r000002"]));
    let published = m.d.stats().published;
    m.on(Input::Acked(5)).on(Input::Acked(9));
    assert_eq!(m.d.stats().published, published, "duplicates count nothing");
    assert_eq!(m.d.ignored(), 2);
    m.on(Input::Acked(3)); // r1
    assert_eq!(m.queued(), strs(&["r000000", "r000002"]));
    m.on(Input::Disconnected).on(Input::Connected);
    assert_eq!(
        m.asked(),
        strs(&["online", "r000000", "r000002"]),
        "what was acknowledged is not sent again"
    );
}

#[test]
fn reconnect_mid_drain_resumes_from_the_oldest_unacknowledged() {
    let mut m = M::new(MemStore::new(), cfg(3));
    m.queue(0..20).on(Input::Connected);
    let mut firsts: Vec<String> = Vec::new();
    let mut conn: Vec<String> = Vec::new();
    let mut next_pkid = 1u16;
    let mut wire: VecDeque<u16> = VecDeque::new();
    for round in 0..200 {
        for p in m.asked() {
            if p.starts_with('r') {
                conn.push(p.clone());
                if !firsts.contains(&p) {
                    firsts.push(p);
                }
            }
            m.on(Input::Sent(next_pkid));
            wire.push_back(next_pkid);
            next_pkid = next_pkid % 100 + 1;
        }
        if round == 4 || round == 9 {
            // Broken with publishes in flight.
            assert!(!wire.is_empty());
            wire.clear();
            assert!(conn.windows(2).all(|w| w[0] < w[1]), "{conn:?}");
            conn.clear();
            m.on(Input::Disconnected).on(Input::Connected);
            continue;
        }
        if let Some(p) = wire.pop_front() {
            m.on(Input::Acked(p));
        }
        if m.queued().is_empty() && wire.is_empty() {
            break;
        }
    }
    assert!(m.queued().is_empty());
    assert_eq!(firsts, (0..20).map(|n| text(&rec(n))).collect::<Vec<_>>());
    assert_eq!(m.d.stats().reconnects, 2);
}

#[test]
fn queue_full_with_drop_oldest_keeps_the_newest() {
    let one = MemStore::new().size_of(&rec(0));
    let mut c = cfg(4);
    c.max_bytes = one * 5;
    let mut m = M::new(MemStore::new(), c);
    m.queue(0..8);
    assert_eq!(
        m.queued(),
        (3..8).map(|n| text(&rec(n))).collect::<Vec<_>>()
    );
    assert_eq!(m.d.stats().dropped, 3);
    assert_eq!(m.d.stats().queue.bytes, one * 5);
}

#[test]
fn queue_full_with_drop_newest_keeps_the_oldest() {
    let one = MemStore::new().size_of(&rec(0));
    let mut c = cfg(4);
    c.max_bytes = one * 5;
    c.policy = DropPolicy::DropNewest;
    let mut m = M::new(MemStore::new(), c);
    m.queue(0..8);
    assert_eq!(
        m.queued(),
        (0..5).map(|n| text(&rec(n))).collect::<Vec<_>>()
    );
    assert_eq!(m.d.stats().dropped, 3);
    // Delivering makes room again.
    m.on(Input::Connected);
    m.asked();
    m.sent(1..=4).on(Input::Acked(2));
    m.on(Input::Queued(rec(8)));
    assert_eq!(m.queued().last().unwrap(), "r000008");
}

#[test]
fn a_record_larger_than_the_bound_is_dropped_and_counted() {
    let mut c = cfg(4);
    c.max_bytes = 100;
    let mut m = M::new(MemStore::new(), c);
    m.on(Input::Queued(Record::new("s/embedding", vec![0; 200])));
    m.queue(0..1);
    assert_eq!(m.queued(), strs(&["r000000"]));
    assert_eq!(m.d.stats().dropped, 1);
}

#[test]
fn queue_full_on_disk_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let probe = FileStore::open(&dir.path().join("probe"), FileStoreConfig::default()).unwrap();
    let one = probe.size_of(&rec(0));
    let store = FileStore::open(
        &dir.path().join("q"),
        FileStoreConfig {
            segment_bytes: one * 2,
            sync_interval: Duration::from_secs(1),
        },
    )
    .unwrap();
    let mut c = cfg(4);
    c.max_bytes = one * 6;
    let mut m = M::new(store, c);
    m.queue(0..9);
    // Segments of two: [0 1] [2 3] went to make room; the newest survive in order.
    assert_eq!(
        m.queued(),
        (4..9).map(|n| text(&rec(n))).collect::<Vec<_>>()
    );
    assert_eq!(m.d.stats().dropped, 4);
    assert!(m.d.stats().queue.bytes <= one * 6);
}

#[test]
fn shutdown_while_offline_with_nothing_queued_ends_at_once() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.on(Input::Shutdown);
    assert_eq!(m.commands(), vec![Command::Done]);
    assert!(m.d.is_finished());
}

#[test]
fn shutdown_while_offline_waits_for_the_broker_until_the_flush_timeout() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.queue(0..2).on(Input::Shutdown);
    m.later(Duration::from_secs(9));
    assert!(m.commands().is_empty(), "still waiting for the broker");
    m.later(Duration::from_secs(1));
    assert_eq!(m.commands(), vec![Command::Done]);
    assert_eq!(m.queued().len(), 2, "kept on disk for the next start");
    // After the end nothing more happens.
    m.on(Input::Connected);
    assert!(m.commands().is_empty());
}

#[test]
fn shutdown_while_offline_delivers_when_the_broker_comes_back_then_says_offline() {
    let mut m = M::new(MemStore::new(), cfg(4));
    m.queue(0..2).on(Input::Shutdown);
    m.later(Duration::from_secs(5)).on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000000", "r000001"]));
    m.sent(1..=3);
    m.on(Input::Acked(1))
        .on(Input::Acked(2))
        .on(Input::Acked(3));
    assert_eq!(m.asked(), strs(&["offline"]), "the farewell once drained");
    m.sent(4..=4).on(Input::Acked(4));
    assert_eq!(m.commands(), vec![Command::Disconnect]);
}

#[test]
fn shutdown_past_the_flush_timeout_says_offline_and_keeps_the_rest() {
    let mut m = M::new(MemStore::new(), cfg(2));
    m.queue(0..3).on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online", "r000000"]));
    m.sent(1..=2).on(Input::Acked(1)); // r0 is never acknowledged
    assert_eq!(m.asked(), strs(&["r000001"]));
    m.on(Input::Shutdown);
    m.later(Duration::from_secs(10));
    m.on(Input::Sent(3)); // r1 goes out
    m.on(Input::Acked(3));
    assert_eq!(
        m.asked(),
        strs(&["offline"]),
        "late: the farewell, and no more records"
    );
    // The broker never acknowledges the farewell either.
    m.sent(4..=4).later(Duration::from_secs(2));
    assert_eq!(m.commands(), vec![Command::Disconnect]);
    assert_eq!(m.queued(), strs(&["r000000", "r000002"]));
}

#[test]
fn stats_are_due_on_their_interval_and_only_sent_online() {
    let mut c = cfg(4);
    c.stats_interval = Some(Duration::from_secs(1));
    let mut m = M::new(MemStore::new(), c);
    m.later(Duration::ZERO).later(Duration::from_secs(1));
    assert!(m.commands().is_empty(), "offline: no stats");
    m.on(Input::Connected).asked();
    m.later(Duration::from_millis(500));
    assert!(m.commands().is_empty());
    m.later(Duration::from_millis(500));
    let c = m.commands();
    assert!(matches!(c[..], [Command::Stats(_)]), "{c:?}");
    m.on(Input::Publish(Record::new("s/stats", b"{}".to_vec())));
    assert_eq!(m.asked(), strs(&["{}"]));
    // Not queued: offline, it is forgotten.
    m.on(Input::Disconnected)
        .on(Input::Publish(Record::new("s/stats", b"{}".to_vec())))
        .on(Input::Connected);
    assert_eq!(m.asked(), strs(&["online"]));
}

// --- Property: random schedules against a stand-in for rumqttc and the broker. ---

/// Xorshift: deterministic schedules, reproducible from the seed in a failure message.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A store that records what the machine does to it.
#[derive(Default)]
struct Spy {
    inner: MemStore,
    payloads: BTreeMap<u64, String>,
    deleted: BTreeMap<u64, u32>,
    last_ack: Option<u64>,
    empty_acks: u32,
}

impl Store for Spy {
    fn append(&mut self, r: &Record) -> Result<u64, QueueError> {
        let seq = self.inner.append(r)?;
        self.payloads.insert(seq, text(r));
        Ok(seq)
    }
    fn next_from(&mut self, from: u64) -> Result<Option<(u64, Record)>, QueueError> {
        self.inner.next_from(from)
    }
    fn ack(&mut self, seq: u64) -> Result<bool, QueueError> {
        let held = self.inner.ack(seq)?;
        self.last_ack = Some(seq);
        if held {
            *self.deleted.entry(seq).or_default() += 1;
        } else {
            self.empty_acks += 1;
        }
        Ok(held)
    }
    fn drop_oldest(&mut self) -> Result<Option<u64>, QueueError> {
        self.inner.drop_oldest()
    }
    fn size_of(&self, r: &Record) -> u64 {
        self.inner.size_of(r)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    fn commit(&mut self, now: Instant, force: bool) -> Result<(), QueueError> {
        self.inner.commit(now, force)
    }
}

/// rumqttc (a request channel, packet ids in a cycle, collisions wait) and a broker that logs
/// what it receives, per connection.
struct Net {
    online: bool,
    channel: VecDeque<Record>,
    last_pkid: u16,
    pkids: u16,
    wire: Vec<(u16, Record)>,
    conn: usize,
    received: Vec<(usize, String)>,
    disconnects: usize,
    end: Option<Command>,
}

impl Net {
    fn carry_out(&mut self, m: &mut M<Spy>) {
        while let Some(c) = m.d.poll_command() {
            match c {
                Command::Publish { record, .. } => {
                    assert!(self.online, "asked to publish while offline");
                    self.channel.push_back(record);
                }
                Command::Stats(_) => {
                    m.on(Input::Publish(Record::new("s/stats", b"stats".to_vec())));
                }
                c @ (Command::Disconnect | Command::Done) => self.end = Some(c),
            }
        }
    }

    fn send_one(&mut self, m: &mut M<Spy>) {
        if !self.online || self.channel.is_empty() {
            return;
        }
        let pkid = self.last_pkid % self.pkids + 1;
        if self.wire.iter().any(|(p, _)| *p == pkid) {
            return; // collision: rumqttc waits for that packet's ack
        }
        self.last_pkid = pkid;
        let r = self.channel.pop_front().unwrap();
        self.received.push((self.conn, text(&r)));
        self.wire.push((pkid, r));
        m.on(Input::Sent(pkid));
    }

    fn ack(&mut self, m: &mut M<Spy>, i: usize) {
        if self.wire.is_empty() {
            return;
        }
        let (pkid, r) = self.wire.remove(i % self.wire.len());
        m.d.store.last_ack = None;
        m.on(Input::Acked(pkid));
        let acked = m.d.store.last_ack.map(|s| m.d.store.payloads[&s].clone());
        if r.topic == "s/prediction" {
            assert_eq!(acked, Some(text(&r)), "a PubAck deletes its own record");
        } else {
            assert_eq!(acked, None, "a control message's ack deletes nothing");
        }
    }

    fn stray_ack(&mut self, m: &mut M<Spy>, pkid: u16) {
        if self.wire.iter().any(|(p, _)| *p == pkid) {
            return;
        }
        m.d.store.last_ack = None;
        m.on(Input::Acked(pkid));
        assert_eq!(m.d.store.last_ack, None, "a stray ack deletes nothing");
    }

    fn drop_connection(&mut self, m: &mut M<Spy>) {
        if self.online {
            self.online = false;
            self.channel.clear();
            self.wire.clear();
            self.disconnects += 1;
            m.on(Input::Disconnected);
        }
    }

    fn connect(&mut self, m: &mut M<Spy>) {
        if !self.online {
            self.online = true;
            self.conn += 1;
            self.channel.clear(); // what the driver discards on ConnAck
            m.on(Input::Connected);
        }
    }
}

fn schedule(seed: u64) {
    let mut rng = Rng::new(seed);
    let window = 1 + rng.below(6) as usize;
    let mut c = cfg(window);
    c.flush_timeout = Duration::from_secs(3600);
    c.stats_interval = Some(Duration::from_millis(700));
    let mut m = M::new(Spy::default(), c);
    let mut net = Net {
        online: false,
        channel: VecDeque::new(),
        last_pkid: 0,
        pkids: (window as u16) * 2,
        wire: Vec::new(),
        conn: 0,
        received: Vec::new(),
        disconnects: 0,
        end: None,
    };
    let mut queued = 0u64;
    for _ in 0..400 {
        match rng.below(100) {
            0..=24 => {
                m.on(Input::Queued(rec(queued)));
                queued += 1;
            }
            25..=49 => net.send_one(&mut m),
            50..=62 => net.ack(&mut m, 0),
            63..=72 => {
                let i = rng.below(8) as usize;
                net.ack(&mut m, i)
            }
            73..=75 => {
                let p = 1 + rng.below(net.pkids as u64) as u16;
                net.stray_ack(&mut m, p)
            }
            76..=79 => net.drop_connection(&mut m),
            80..=89 => net.connect(&mut m),
            _ => {
                m.later(Duration::from_millis(100));
            }
        }
        net.carry_out(&mut m);
    }
    // Shutdown, then a network that works until the machine is done.
    m.on(Input::Shutdown);
    net.carry_out(&mut m);
    for _ in 0..100_000 {
        if net.end.is_some() {
            break;
        }
        net.connect(&mut m);
        net.send_one(&mut m);
        net.ack(&mut m, 0);
        m.later(Duration::from_millis(1));
        net.carry_out(&mut m);
    }
    let why = format!("seed {seed}, window {window}");
    assert_eq!(net.end, Some(Command::Disconnect), "{why}");
    let store = &m.d.store;
    assert_eq!(store.stats().depth, 0, "{why}: everything delivered");
    // Every record acknowledged exactly once before deletion, never deleted otherwise.
    assert_eq!(store.deleted.len() as u64, queued, "{why}");
    assert!(store.deleted.values().all(|n| *n == 1), "{why}");
    assert_eq!(store.empty_acks, 0, "{why}");
    // Delivery order never goes backwards: within a connection strictly increasing, and the
    // first arrivals are the queue's order exactly.
    let records: Vec<&(usize, String)> = net
        .received
        .iter()
        .filter(|(_, p)| p.starts_with('r'))
        .collect();
    for w in records.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].1 < w[1].1, "{why}: {w:?}");
        }
    }
    let mut firsts: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (_, p) in &records {
        if seen.insert(p.as_str()) {
            firsts.push(p);
        }
    }
    let want: Vec<String> = (0..queued).map(|n| text(&rec(n))).collect();
    assert_eq!(firsts, want, "{why}");
    // Duplicates only come from a broken connection, at most a window each.
    let dups = records.len() - firsts.len();
    assert!(dups <= net.disconnects * window, "{why}: {dups} duplicates");
}

#[test]
fn random_schedules_deliver_every_record_once_in_order() {
    for seed in 0..300 {
        schedule(seed);
    }
}
