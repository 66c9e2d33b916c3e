//! Fault soak, loopback only, under three minutes: the daemon publishes ~10 messages/s (a
//! prediction and an embedding per window, 5 windows/s of stdin audio) through its disk queue
//! while the broker (a Mosquitto started here, persistent) is stopped and restarted 20 times at
//! random intervals and the daemon itself is killed with SIGKILL and restarted 5 times. A
//! subscriber with a persistent session counts, per sequence (topic and `seq`): lost, duplicated,
//! reordered. Required: nothing lost, nothing reordered, duplicates within the in-flight window of
//! each interruption.
//!
//! What "lost" means: every run publishes under its own base topic; a message is expected if the
//! run's last `seq` on that topic reached the subscriber or the queue on disk (read after each
//! kill, as the next start reads it). What a killed daemon had not yet queued (audio in the pipe,
//! the window being computed) never existed as a message. The broker is stopped with SIGTERM:
//! Mosquitto saves what it acknowledged, so what goes missing is the daemon's doing.
//!
//! `SFXTAG_SOAK_SEED=n` replays a schedule.

mod common;

use common::*;
use sfxtag::queue::{FileStore, FileStoreConfig, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BROKER_RESTARTS: usize = 20;
const DAEMON_KILLS: usize = 5;
/// The daemon's in-flight window, and the broker's towards the subscriber.
const INFLIGHT: usize = 8;
/// Bytes of s16le audio fed every 100 ms: half a window hop (50 frames × 1024 samples), so 5
/// windows, 10 messages, a second.
const CHUNK: usize = 50 * 1024;
/// Past this the test fails instead of waiting longer.
const LIMIT: Duration = Duration::from_secs(175);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() % 10_000) as f64 / 10_000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    BrokerDown,
    BrokerUp,
    Kill,
    Restart,
}

/// Random times (seconds from the start) for every fault; kills spread over the run.
fn schedule(rng: &mut Rng) -> Vec<(f64, Act)> {
    let mut acts = Vec::new();
    let mut t = 2.0;
    for _ in 0..BROKER_RESTARTS {
        t += rng.between(1.0, 3.0);
        acts.push((t, Act::BrokerDown));
        t += rng.between(0.2, 1.5);
        acts.push((t, Act::BrokerUp));
    }
    let slot = (t - 2.0) / DAEMON_KILLS as f64;
    for k in 0..DAEMON_KILLS {
        let at = 2.0 + slot * k as f64 + rng.between(0.5, slot - 2.0);
        acts.push((at, Act::Kill));
        acts.push((at + rng.between(0.1, 1.0), Act::Restart));
    }
    acts.sort_by(|a, b| a.0.total_cmp(&b.0));
    acts
}

/// One run of the daemon, fed paced audio on stdin by its own thread.
struct Daemon {
    child: Child,
    feeding: Arc<AtomicBool>,
    feeder: JoinHandle<()>,
    log: PathBuf,
}

fn feed(mut stdin: ChildStdin, pcm: Arc<Vec<u8>>, feeding: Arc<AtomicBool>) {
    let start = Instant::now();
    let mut pos = 0;
    let mut n = 0u32;
    while feeding.load(Ordering::Relaxed) {
        let due = start + Duration::from_millis(100) * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let end = (pos + CHUNK).min(pcm.len());
        if stdin.write_all(&pcm[pos..end]).is_err() {
            return; // killed
        }
        pos = if end == pcm.len() { 0 } else { end };
        n += 1;
    }
    // Dropping stdin ends the stream.
}

struct Setup {
    model: PathBuf,
    addr: String,
    base: String,
    device: String,
    queue: PathBuf,
    dir: PathBuf,
    pcm: Arc<Vec<u8>>,
}

impl Setup {
    fn base_of(&self, run: usize) -> String {
        format!("{}/r{run}", self.base)
    }

    fn start(&self, run: usize) -> Daemon {
        let log = self.dir.join(format!("daemon-{run}.log"));
        let mut child = Command::new(bin())
            .args(["run", "--model"])
            .arg(&self.model)
            .args(["--input", "-", "--stdin-rate", "44100", "--fast"])
            .args(["--mqtt-url", &format!("mqtt://{}", self.addr)])
            .args(["--base-topic", &self.base_of(run)])
            .args(["--device-id", &self.device])
            .arg("--queue-dir")
            .arg(&self.queue)
            .env("RUST_LOG", "info")
            .env("SFXTAG_EVENTS_ENABLED", "false")
            .env("SFXTAG_MQTT_INFLIGHT", INFLIGHT.to_string())
            .env("SFXTAG_MQTT_RECONNECT_MIN_S", "0.1")
            .env("SFXTAG_MQTT_RECONNECT_MAX_S", "0.5")
            .env("SFXTAG_MQTT_KEEP_ALIVE_S", "5")
            .env("SFXTAG_MQTT_FLUSH_TIMEOUT_S", "60")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sfxtag");
        let stdin = child.stdin.take().unwrap();
        let feeding = Arc::new(AtomicBool::new(true));
        let (f, pcm) = (feeding.clone(), self.pcm.clone());
        let feeder = std::thread::spawn(move || feed(stdin, pcm, f));
        Daemon {
            child,
            feeding,
            feeder,
            log,
        }
    }
}

/// `(topic, seq)` of every record in the queue on disk.
fn queued(dir: &Path) -> Vec<(String, u64)> {
    let mut store = FileStore::open(dir, FileStoreConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some((n, r)) = store.next_from(from).unwrap() {
        from = n + 1;
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        out.push((r.topic, v["seq"].as_u64().unwrap()));
    }
    out
}

fn log_tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Per sequence: what arrived, in order.
#[derive(Default)]
struct Tally {
    arrivals: BTreeMap<String, Vec<u64>>,
}

impl Tally {
    fn add(&mut self, m: &Msg) {
        if m.topic.ends_with("/prediction") || m.topic.ends_with("/embedding") {
            let seq = m.json()["seq"].as_u64().unwrap();
            self.arrivals.entry(m.topic.clone()).or_default().push(seq);
        }
    }

    fn max(&self, topic: &str) -> Option<u64> {
        self.arrivals.get(topic)?.iter().copied().max()
    }

    /// (expected, lost, duplicated, reordered) against `upper` (last expected seq per topic).
    fn count(&self, upper: &BTreeMap<String, u64>) -> (usize, usize, usize, usize) {
        let (mut expected, mut lost, mut dups, mut reordered) = (0, 0, 0, 0);
        for (topic, last) in upper {
            let got = self.arrivals.get(topic).cloned().unwrap_or_default();
            let distinct: BTreeSet<u64> = got.iter().copied().collect();
            expected += *last as usize + 1;
            lost += (0..=*last).filter(|s| !distinct.contains(s)).count();
            dups += got.len() - distinct.len();
            let mut seen = BTreeSet::new();
            let mut high = None;
            for s in got {
                if seen.insert(s) {
                    if high.is_some_and(|h| s < h) {
                        reordered += 1;
                    }
                    high = high.max(Some(s));
                }
            }
        }
        (expected, lost, dups, reordered)
    }
}

#[test]
fn broker_restarts_and_daemon_kills_lose_and_reorder_nothing() {
    let t0 = Instant::now();
    let seed = std::env::var("SFXTAG_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        });
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let d = tempfile::tempdir().unwrap();
    let persist = d.path().join("persist");
    std::fs::create_dir_all(&persist).unwrap();
    {
        // mosquitto started as root drops to the `mosquitto` user: let it write its database.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&persist, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // No cap on what waits for the subscriber: a capped queue would drop, and be counted lost.
    let mut broker = Mosquitto::start(
        d.path(),
        &format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages {INFLIGHT}\n",
            persist.display()
        ),
    )
    .expect("the soak needs mosquitto (package mosquitto)");
    let setup = Setup {
        model: make_model(&d.path().join("m"), Head::Labelled, None),
        addr: broker.addr(),
        base: unique_base("soak"),
        device: unique_device("soak"),
        queue: d.path().join("q"),
        dir: d.path().to_path_buf(),
        pcm: Arc::new(pcm_s16le(20.0, 44_100)),
    };
    let sub = Subscriber::start(
        &setup.addr,
        &[format!("{}/#", setup.base)],
        &format!("soak-sub-{}", std::process::id()),
        true,
    );
    let mut tally = Tally::default();
    // Last seq expected per topic of killed runs: what reached the queue on disk.
    let mut upper: BTreeMap<String, u64> = BTreeMap::new();
    let mut run = 0;
    let mut daemon = Some(setup.start(run));
    let (mut broker_restarts, mut kills) = (0, 0);
    for (at, act) in schedule(&mut rng) {
        let due = t0 + Duration::from_secs_f64(at);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        match act {
            Act::BrokerDown => broker.stop(),
            Act::BrokerUp => {
                broker.restart();
                broker_restarts += 1;
            }
            Act::Kill => {
                let mut dm = daemon.take().unwrap();
                dm.child.kill().unwrap(); // SIGKILL
                dm.child.wait().unwrap();
                dm.feeding.store(false, Ordering::Relaxed);
                dm.feeder.join().unwrap();
                kills += 1;
                for (topic, seq) in queued(&setup.queue) {
                    let u = upper.entry(topic).or_insert(seq);
                    *u = (*u).max(seq);
                }
            }
            Act::Restart => {
                run += 1;
                daemon = Some(setup.start(run));
            }
        }
    }
    // Some load with the broker up, then the end of the stream: the last run drains everything.
    std::thread::sleep(Duration::from_secs(3));
    let mut last = daemon.take().unwrap();
    last.feeding.store(false, Ordering::Relaxed);
    last.feeder.join().unwrap();
    let status = loop {
        if let Some(s) = last.child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > LIMIT {
            let _ = last.child.kill();
            panic!(
                "the last run did not finish in time:\n{}",
                log_tail(&last.log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&last.log).unwrap();
    assert!(
        status.success(),
        "last run failed:\n{}",
        log_tail(&last.log)
    );
    let windows: u64 = log
        .split(" windows from")
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no window count in:\n{}", log_tail(&last.log)));
    assert!(windows > 0);
    for kind in ["prediction", "embedding"] {
        upper.insert(format!("{}/{kind}", setup.base_of(run)), windows - 1);
    }
    // Everything expected, counted as it arrives.
    let complete = |tally: &Tally, upper: &BTreeMap<String, u64>| {
        upper
            .iter()
            .all(|(t, u)| tally.count(&BTreeMap::from([(t.clone(), *u)])).1 == 0)
    };
    loop {
        while let Ok(m) = sub.rx.try_recv() {
            tally.add(&m);
        }
        // What arrived from a killed run is expected too (its queue was read after the kill).
        for (topic, _) in tally.arrivals.iter() {
            let seen = tally.max(topic).unwrap();
            let u = upper.entry(topic.clone()).or_insert(seen);
            *u = (*u).max(seen);
        }
        if complete(&tally, &upper) || t0.elapsed() > LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    sub.disconnect();
    let (expected, lost, dups, reordered) = tally.count(&upper);
    let interruptions = broker_restarts + kills;
    let line = format!(
        "soak: {} daemon runs ({kills} killed with SIGKILL), {broker_restarts} broker restarts, \
         {expected} messages expected: lost {lost}, duplicated {dups}, reordered {reordered} \
         (seed {seed}, {:.0} s)",
        run + 1,
        t0.elapsed().as_secs_f64()
    );
    // Straight to stderr: shown even when the harness captures test output.
    let _ = writeln!(std::io::stderr(), "{line}");
    assert_eq!(broker_restarts, BROKER_RESTARTS);
    assert_eq!(kills, DAEMON_KILLS);
    assert!(
        expected > 300,
        "too little traffic to prove anything: {line}"
    );
    assert_eq!(lost, 0, "{line}\n{}", log_tail(&last.log));
    assert_eq!(reordered, 0, "{line}");
    // Each interruption resends at most the daemon's window and the broker's.
    assert!(dups <= interruptions * 2 * INFLIGHT, "{line}");
}
