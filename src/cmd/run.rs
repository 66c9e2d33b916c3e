//! `sfxtag run`: the daemon, wired together.
//!
//! Threads: the source (capture callback / file / stdin) → ring → the worker (`pipeline::Worker`
//! with an `emitter::Emitter` as its sink: payloads, stdout, events, recording) → the publisher
//! (`mqtt`, behind the disk queue). This thread watches signals, the worker's heartbeat (systemd
//! watchdog) and the publisher, and shuts everything down in order: stop the source, end the
//! worker (open events are ended), drain the publisher, `offline`, exit.

use crate::cli::RunArgs;
use crate::config::{Config, RECORD_MODES};
use crate::emitter::Emitter;
use crate::model::Model;
use crate::mqtt::{MqttSettings, Publisher, PublisherHandle, PublisherReport, StatsFn};
use crate::payload::{Health, RunContext, StatsContext, StatsMsg};
use crate::pipeline::{Processor, Worker, WorkerEnd};
use crate::record::recorder::Recorder;
use crate::service::{self, Heartbeat};
use crate::settings::DaemonSettings;
use crate::source::{self, SourceInfo, SourceShared};
use crate::stats::{AudioCounters, LatencyRing};
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The effective configuration: file (`--config` or `SFXTAG_CONFIG`), environment, command
/// line, validated. Its errors (`ConfigError`) are the user's: exit code 2.
pub fn effective_config(args: &RunArgs) -> Result<Config> {
    let path = args
        .config
        .clone()
        .or_else(|| std::env::var_os("SFXTAG_CONFIG").map(Into::into));
    let mut cfg = Config::load(path.as_deref(), std::env::vars())?;
    args.apply(&mut cfg);
    cfg.validate()?;
    Ok(cfg)
}

/// The effective configuration turned into each component's settings (`SettingsError`: exit 2).
pub fn effective_settings(args: &RunArgs) -> Result<DaemonSettings> {
    Ok(DaemonSettings::from_config(&effective_config(args)?)?)
}

/// `<base>/stats`: the delivery's numbers with the audio path's, read when due.
fn stats_fn(
    m: &MqttSettings,
    info: &SourceInfo,
    model: &str,
    shared: Arc<SourceShared>,
    latency: Arc<Mutex<LatencyRing>>,
) -> StatsFn {
    let ctx = StatsContext {
        source: info.name.clone(),
        model: model.to_string(),
        rate: info.rate,
        channels: info.channels,
        max_bytes: m.queue.max_bytes,
        policy: m.queue.policy,
    };
    let started = Instant::now();
    Box::new(move |delivery| {
        let health = Health {
            uptime: started.elapsed(),
            audio: shared.counters.snapshot(),
            latency: latency.lock().map(|mut l| l.summary()).unwrap_or_default(),
        };
        StatsMsg::new(&ctx, &health, delivery, SystemTime::now())
    })
}

/// Waits for a stop request (signal, closed stdout), the end of the stream or a failed
/// publisher, feeding the systemd watchdog meanwhile. Returns whether the publisher failed.
fn watch<T>(
    stop: &AtomicBool,
    worker: &JoinHandle<T>,
    publisher: Option<&Publisher>,
    heartbeat: &Heartbeat,
) -> bool {
    let watchdog = service::watchdog_interval();
    let mut last_watchdog = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if stop.load(Ordering::Relaxed) {
            log::info!("shutting down");
            service::notify_stopping();
            return false;
        }
        if worker.is_finished() {
            return false;
        }
        if publisher.is_some_and(|p| p.is_finished()) {
            return true;
        }
        if let Some(iv) = watchdog {
            if last_watchdog.elapsed() >= iv {
                last_watchdog = Instant::now();
                service::feed_watchdog(heartbeat, Duration::from_secs(30));
            }
        }
    }
}

/// The line the daemon ends with, on stderr.
fn summary(
    s: &DaemonSettings,
    info: &SourceInfo,
    shared: &SourceShared,
    (clips, clip_errors): (u64, u64),
    report: Option<&PublisherReport>,
) -> String {
    let c = shared.counters.snapshot();
    let per_s = (info.rate as f64 * info.channels as f64).max(1.0);
    let dropped_s = (c.overrun_samples + c.dropped_samples) as f64 / per_s;
    let mut out = format!("sfxtag: {} windows from {}", c.windows, info.name);
    if dropped_s > 0.0 {
        out += &format!(
            ", {dropped_s:.2} s of audio dropped ({} overruns)",
            c.overruns
        );
    }
    if let Some(r) = &s.record {
        out += &format!(", {clips} clips recorded in {}", r.dir.display());
        if clip_errors > 0 {
            out += &format!(" ({clip_errors} could not be written)");
        }
    }
    if let Some(r) = report {
        out += &format!(", {r}");
    }
    out
}

pub fn run(args: RunArgs) -> Result<()> {
    let s = effective_settings(&args)?;
    let stop = service::shutdown_flag()?;
    let dir = crate::model::resolve(s.model.dir.as_deref())?;
    let model = Model::load(&dir, &s.model.load_options())?;
    let model_name = model.name.clone();
    log::info!("model {} from {}", model_name, dir.display());
    if model.classifier.can_label() {
        log::info!("classification: {}", model.classifier.describe());
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "sfxtag: warning: {}",
            model.classifier.describe()
        );
    }

    let shared = Arc::new(SourceShared::default());
    let (info, consumer, running) = source::open(&s.input, shared.clone())?;
    log::info!(
        "input {} at {} Hz × {} ch{}",
        info.name,
        info.rate,
        info.channels,
        if info.lossless { " (lossless)" } else { "" }
    );
    let latency = Arc::new(Mutex::new(LatencyRing::new(1024)));
    let publisher = match &s.mqtt {
        Some(m) => {
            let stats = stats_fn(m, &info, &model_name, shared.clone(), latency.clone());
            Some(Publisher::start(m.clone(), &model_name, stats)?)
        }
        None => None,
    };
    let recorder = match &s.record {
        Some(r) => {
            let mode = RECORD_MODES
                .iter()
                .find(|m| m.1 == r.mode)
                .map_or("", |m| m.0);
            log::info!(
                "recording ({mode} mode) into {} ({} Hz × {} ch)",
                r.dir.display(),
                info.rate,
                info.channels
            );
            Some(Recorder::start(
                r.clone(),
                info.rate,
                info.channels,
                model_name.clone(),
            )?)
        }
        None => None,
    };
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let ctx = RunContext {
        source: info.name.clone(),
        model: model_name,
        run_id: format!("{run_id:x}"),
        stream_start: SystemTime::now(),
    };
    let outbox: Option<PublisherHandle> = publisher.as_ref().map(|p| p.handle.clone());
    let mut emitter = Emitter::new(
        ctx,
        s.topics.clone(),
        s.output,
        outbox,
        shared.clone(),
        latency,
        stop.clone(),
    )
    .with_events(s.events)
    .with_recorder(recorder)
    .with_privacy(s.privacy.clone())
    .with_silence_heartbeat(s.silence.map(|g| g.heartbeat));

    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat();
    let processor = Processor::with_silence_floor(model, s.silence.map(|g| g.floor_dbfs));
    let mut worker = Worker::new(processor, consumer, info.clone(), shared.clone(), s.worker)?;
    let (w_shared, w_beat) = (shared.clone(), heartbeat.clone());
    let worker_thread = std::thread::Builder::new()
        .name("sfxtag-worker".into())
        .spawn(move || {
            emitter.start_stream(SystemTime::now());
            let r = worker.run(&|| w_shared.stopping(), &|| w_beat.beat(), &mut emitter);
            AudioCounters::add(&w_shared.counters.non_finite, worker.processor.non_finite());
            emitter.finish();
            (r, emitter.clips())
        })
        .context("cannot start the worker thread")?;

    service::notify_ready(&format!("listening to {}", info.name));
    let publisher_failed = watch(&stop, &worker_thread, publisher.as_ref(), &heartbeat);
    shared.stop.store(true, Ordering::Release);
    drop(running);
    let (worker_result, clips) = worker_thread
        .join()
        .map_err(|_| anyhow!("the worker thread panicked"))?;
    let published = match publisher {
        Some(p) if publisher_failed => Some(p.join()),
        Some(p) => Some(p.shutdown()),
        None => None,
    };
    let report = published.as_ref().and_then(|r| r.as_ref().ok());
    let line = summary(&s, &info, &shared, clips, report);
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(Err(e)) = published {
        return Err(e.into());
    }
    match worker_result? {
        WorkerEnd::EndOfStream | WorkerEnd::Stopped => Ok(()),
    }
}
