//! `sfxtag run`: the daemon.
//!
//! Threads: the source (capture callback / file / stdin) → ring → the worker (this module's
//! closure around `pipeline::Worker`: frontend, encoder, classification, events, payloads) →
//! the publisher (`mqtt`, behind the disk queue). The main thread watches signals, the worker's
//! heartbeat (systemd watchdog) and the publisher, and shuts everything down in order: stop the
//! source, end the worker (open events are ended), drain the publisher, `offline`, exit.

use super::UsageError;
use crate::cli::RunArgs;
use crate::config::{Config, EmbeddingFormat, StdoutMode};
use crate::events::{EventParams, EventTracker};
use crate::model::{LoadOptions, Model};
use crate::mqtt::{BrokerUrl, MqttSettings, Publisher, PublisherHandle, ToPublisher};
use crate::payload::{
    self, rfc3339, stream_time, AudioStats, EmbeddingMsg, EventMsg, LatencyMsg, PredictionMsg,
    QueueStatsMsg, StatsMsg, Topics,
};
use crate::pipeline::{Processor, WindowOut, Worker, WorkerEnd, WorkerParams, WorkerSink};
use crate::queue::{DiskQueue, DropPolicy, QueueConfig, Record};
use crate::record::recorder::{ClipWritten, Recorder};
use crate::service::{self, Heartbeat};
use crate::source::{self, InputSpec, SourceShared};
use crate::stats::{AudioCounters, LatencyRing};
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Builds the effective configuration: file (`--config` or `SFXTAG_CONFIG`), environment, CLI.
pub fn effective_config(args: &RunArgs) -> Result<Config> {
    let path = args
        .config
        .clone()
        .or_else(|| std::env::var_os("SFXTAG_CONFIG").map(Into::into));
    let mut cfg =
        Config::load(path.as_deref(), std::env::vars()).map_err(|e| UsageError(e.to_string()))?;
    cfg.apply_cli(args);
    cfg.validate().map_err(|e| UsageError(e.to_string()))?;
    Ok(cfg)
}

fn policy_name(p: DropPolicy) -> &'static str {
    match p {
        DropPolicy::DropOldest => "drop-oldest",
        DropPolicy::DropNewest => "drop-newest",
    }
}

/// Per-window output: MQTT records and stdout lines.
struct Emitter {
    topics: Topics,
    publisher: Option<PublisherHandle>,
    embedding: EmbeddingFormat,
    stdout: StdoutMode,
    source: String,
    model: String,
    run_id: String,
    stream_start: SystemTime,
    tracker: Option<EventTracker>,
    events: Vec<crate::events::Event>,
    latency: Arc<Mutex<LatencyRing>>,
    counters: Arc<SourceShared>,
    recorder: Option<Recorder>,
    /// Source sample rate (clip frames → stream seconds).
    rate: u32,
    clips: u64,
    clip_errors: u64,
}

impl WorkerSink for Emitter {
    fn window(&mut self, w: WindowOut<'_>) {
        self.on_window(w);
    }

    fn audio(&mut self, first_frame: u64, interleaved: &[f32]) {
        if let Some(r) = &mut self.recorder {
            r.audio(first_frame, interleaved);
        }
    }
}

impl Emitter {
    fn queue(&self, topic: &str, payload: Vec<u8>) {
        if let Some(p) = &self.publisher {
            p.send(ToPublisher::Queued(Record {
                topic: topic.to_string(),
                retain: false,
                payload,
            }));
        }
    }

    fn on_window(&mut self, w: WindowOut<'_>) {
        AudioCounters::add(&self.counters.counters.windows, 1);
        if let Ok(mut l) = self.latency.lock() {
            l.record_us(w.infer.as_micros() as u64);
        }
        let ts = rfc3339(stream_time(self.stream_start, w.start_s));
        let p = &w.prediction;
        let msg = PredictionMsg {
            v: payload::VERSION,
            seq: w.seq,
            ts: ts.clone(),
            start_s: round3(w.start_s),
            end_s: round3(w.end_s),
            source: self.source.clone(),
            model: self.model.clone(),
            top: p.top.iter().map(Into::into).collect(),
            top_source: serde_json::to_value(p.top_source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            level_dbfs: (w.level_dbfs * 10.0).round() / 10.0,
            neighbours: p
                .neighbours
                .as_ref()
                .map(|n| n.iter().map(Into::into).collect()),
            knn_top: match p.top_source {
                crate::classify::TopSource::Head => p
                    .knn_top
                    .as_ref()
                    .map(|v| v.iter().map(Into::into).collect()),
                _ => None,
            },
        };
        let json = serde_json::to_vec(&msg).expect("prediction serialises");
        match self.stdout {
            StdoutMode::Text => {
                let labels = if msg.top.is_empty() {
                    "(no labels)".to_string()
                } else {
                    p.top
                        .iter()
                        .map(|l| format!("{} {:.2}", l.short(), l.score))
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                println!(
                    "{:>4} {:>8.2}–{:<8.2}s  {:<48} {:>6.1} dBFS",
                    w.seq, w.start_s, w.end_s, labels, w.level_dbfs
                );
            }
            StdoutMode::Json => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&json);
                let _ = out.write_all(b"\n");
            }
            StdoutMode::Off | StdoutMode::Auto => {}
        }
        let prediction_topic = self.topics.prediction.clone();
        self.queue(&prediction_topic, json);
        match self.embedding {
            EmbeddingFormat::Json => {
                let e = EmbeddingMsg::new(
                    w.seq,
                    ts,
                    round3(w.start_s),
                    round3(w.end_s),
                    &self.model,
                    w.z,
                );
                let t = self.topics.embedding.clone();
                self.queue(&t, serde_json::to_vec(&e).expect("embedding serialises"));
            }
            EmbeddingFormat::Raw => {
                let t = self.topics.embedding.clone();
                self.queue(&t, payload::f32le(w.z));
            }
            EmbeddingFormat::Off => {}
        }
        if let Some(t) = &mut self.tracker {
            self.events.clear();
            t.observe(w.start_s, w.end_s, &p.top, &mut self.events);
        }
        if let Some(r) = &mut self.recorder {
            r.window(&p.top);
        }
        self.flush_events();
        self.poll_clips();
    }

    /// Publishes clips the recorder has finished since the last call.
    fn poll_clips(&mut self) {
        let Some(r) = &self.recorder else { return };
        let done: Vec<_> = r.written().collect();
        for c in done {
            self.clip_done(c);
        }
    }

    fn clip_done(&mut self, c: Result<ClipWritten, String>) {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                self.clip_errors += 1;
                log::error!("recording: {e}");
                return;
            }
        };
        self.clips += 1;
        let file = c
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for d in &c.deleted {
            log::info!("recording: retention deleted {}", d.display());
        }
        if self.stdout == StdoutMode::Text {
            println!("     clip  {} ({:.1} s)", c.path.display(), c.duration_s());
        } else {
            log::info!("recorded {} ({:.1} s)", c.path.display(), c.duration_s());
        }
        let rate = self.rate.max(1) as f64;
        let start_s = c.summary.start_frame as f64 / rate;
        let end_s = c.summary.end_frame as f64 / rate;
        let ids: Vec<String> = if c.summary.event_ids.is_empty() {
            vec![format!("{}-clip{}", self.run_id, self.clips)]
        } else {
            c.summary
                .event_ids
                .iter()
                .map(|id| format!("{}-{id}", self.run_id))
                .collect()
        };
        for id in ids {
            let m = payload::EventMsg::clip(
                id,
                c.summary.labels.first(),
                round3(start_s),
                round3(end_s),
                self.stream_start,
                &self.source,
                &self.model,
                file.clone(),
            );
            let t = self.topics.event.clone();
            self.queue(&t, serde_json::to_vec(&m).expect("event serialises"));
        }
    }

    fn flush_events(&mut self) {
        let events = std::mem::take(&mut self.events);
        for e in &events {
            let m = EventMsg::new(
                &self.run_id,
                e,
                self.stream_start,
                &self.source,
                &self.model,
            );
            if self.stdout == StdoutMode::Text {
                println!(
                    "     event {} {} {} peak {:.2}",
                    m.phase,
                    m.id,
                    m.catid.as_deref().unwrap_or(&m.label),
                    m.peak
                );
            }
            let t = self.topics.event.clone();
            self.queue(&t, serde_json::to_vec(&m).expect("event serialises"));
            if let Some(r) = &mut self.recorder {
                r.event(e);
            }
        }
        self.events = events;
        self.events.clear();
    }

    fn finish(&mut self) {
        if let Some(t) = &mut self.tracker {
            self.events.clear();
            t.finish(&mut self.events);
        }
        self.flush_events();
        if let Some(mut r) = self.recorder.take() {
            for c in r.finish() {
                self.clip_done(c);
            }
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn open_source(
    cfg: &Config,
    shared: Arc<SourceShared>,
) -> Result<(source::SourceInfo, rtrb::Consumer<f32>, source::Running)> {
    let i = &cfg.input;
    match InputSpec::parse(&i.source) {
        InputSpec::Stdin => source::stdin::open(
            i.stdin_format,
            i.stdin_rate,
            i.stdin_channels,
            !i.realtime,
            i.ring_s,
            shared,
        ),
        InputSpec::File(p) => source::file::open(&p, i.realtime, i.ring_s, shared),
        #[cfg(feature = "capture")]
        spec => source::capture::open(
            &spec,
            i.capture_rate,
            i.capture_channels,
            i.ring_s,
            shared,
        ),
        #[cfg(not(feature = "capture"))]
        spec => Err(anyhow!(
            "input {spec:?} is a capture device, but this sfxtag was built without the `capture` feature (ALSA); use a file or '-' for stdin"
        )),
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let cfg = effective_config(&args)?;
    let shutdown = service::shutdown_flag()?;
    let dir = crate::model::resolve(cfg.model.dir.as_deref())?;
    let model = Model::load(
        &dir,
        &LoadOptions {
            precision: cfg.model.precision,
            refs: cfg.model.refs.as_deref(),
            top_k: cfg.classify.top_k,
            knn_k: cfg.classify.knn_k,
        },
    )?;
    let model_name = model.name.clone();
    log::info!("model {} from {}", model_name, dir.display());
    if model.classifier.can_label() {
        log::info!("classification: {}", model.classifier.describe());
    } else {
        eprintln!("sfxtag: warning: {}", model.classifier.describe());
    }
    let dim = model.manifest.encoder.embedding_dim;

    let shared = Arc::new(SourceShared::default());
    let (info, consumer, running) = open_source(&cfg, shared.clone())?;
    log::info!(
        "input {} at {} Hz × {} ch{}",
        info.name,
        info.rate,
        info.channels,
        if info.lossless { " (lossless)" } else { "" }
    );

    let latency = Arc::new(Mutex::new(LatencyRing::new(1024)));
    let started = Instant::now();
    let topics = Topics::new(&cfg.base_topic());
    let publisher = if cfg.mqtt.enabled {
        let url = BrokerUrl::parse(cfg.mqtt.url.as_deref().unwrap_or_default())
            .map_err(|m| UsageError(format!("config field mqtt.url: {m}")))?;
        let qdir = cfg.queue_dir();
        let queue = DiskQueue::open(
            &qdir,
            QueueConfig {
                max_bytes: cfg.queue.max_bytes,
                segment_bytes: cfg.queue.segment_bytes,
                policy: cfg.queue.policy,
                ack_sync: Duration::from_secs(1),
            },
        )
        .with_context(|| format!("cannot open the offline queue in {}", qdir.display()))?;
        if queue.stats().recovered > 0 {
            log::info!(
                "offline queue {}: {} undelivered messages from an earlier run will be sent first",
                qdir.display(),
                queue.stats().recovered
            );
        }
        let settings = MqttSettings {
            url,
            client_id: cfg
                .mqtt
                .client_id
                .clone()
                .unwrap_or_else(|| format!("sfxtag-{}", cfg.device_id)),
            username: cfg.mqtt.username.clone(),
            password: cfg.mqtt_password().map_err(|e| UsageError(e.to_string()))?,
            ca_file: cfg.mqtt.ca_file.clone(),
            cert_file: cfg.mqtt.cert_file.clone(),
            key_file: cfg.mqtt.key_file.clone(),
            keep_alive: Duration::from_secs(cfg.mqtt.keep_alive_s),
            topics: topics.clone(),
            device_id: cfg.device_id.clone(),
            model: model_name.clone(),
            ha_discovery: cfg
                .mqtt
                .ha_discovery
                .then(|| cfg.mqtt.discovery_prefix.clone()),
            stats_interval: Duration::from_secs_f64(cfg.mqtt.stats_interval_s),
            inflight: cfg.mqtt.inflight,
            reconnect_min: Duration::from_secs_f64(cfg.mqtt.reconnect_min_s),
            reconnect_max: Duration::from_secs_f64(cfg.mqtt.reconnect_max_s),
            flush_timeout: Duration::from_secs_f64(cfg.mqtt.flush_timeout_s),
            max_bytes: cfg.queue.max_bytes,
            policy: policy_name(cfg.queue.policy).into(),
        };
        let stats_shared = shared.clone();
        let stats_latency = latency.clone();
        let (src_name, rate, channels) = (info.name.clone(), info.rate, info.channels);
        let (max_bytes, policy) = (cfg.queue.max_bytes, policy_name(cfg.queue.policy));
        let model_for_stats = model_name.clone();
        let stats_fn: crate::mqtt::StatsFn = Box::new(move |q, published, reconnects| {
            let c = &stats_shared.counters;
            let per_s = (rate as f64 * channels as f64).max(1.0);
            let (p50, p95, max) = stats_latency
                .lock()
                .map(|mut l| (l.percentile_us(50.0), l.percentile_us(95.0), l.max_us()))
                .unwrap_or_default();
            StatsMsg {
                v: payload::VERSION,
                ts: rfc3339(SystemTime::now()),
                uptime_s: round3(started.elapsed().as_secs_f64()),
                windows: AudioCounters::get(&c.windows),
                audio: AudioStats {
                    rate,
                    channels: channels as u16,
                    overruns: AudioCounters::get(&c.overruns),
                    dropped_s: round3(
                        (AudioCounters::get(&c.overrun_samples)
                            + AudioCounters::get(&c.dropped_samples))
                            as f64
                            / per_s,
                    ),
                    backlog_s: round3(AudioCounters::get(&c.backlog_samples) as f64 / per_s),
                    non_finite: AudioCounters::get(&c.non_finite),
                },
                queue: QueueStatsMsg {
                    depth: q.depth,
                    bytes: q.bytes,
                    max_bytes,
                    policy: policy.into(),
                    dropped: q.dropped,
                    recovered: q.recovered,
                },
                inference_ms: LatencyMsg {
                    p50: p50 as f64 / 1000.0,
                    p95: p95 as f64 / 1000.0,
                    max: max as f64 / 1000.0,
                },
                published,
                reconnects,
                source: src_name.clone(),
                model: model_for_stats.clone(),
            }
        });
        Some(Publisher::start(settings, queue, stats_fn)?)
    } else {
        None
    };

    let stdout = match cfg.output.stdout {
        StdoutMode::Auto if publisher.is_none() => StdoutMode::Text,
        StdoutMode::Auto => StdoutMode::Off,
        m => m,
    };
    let recorder = if cfg.record.enabled {
        let settings = cfg.record_settings();
        log::info!(
            "recording {} clips into {} ({} Hz × {} ch)",
            match cfg.record.mode {
                crate::config::RecordMode::Events => "event",
                crate::config::RecordMode::Continuous => "continuous",
            },
            settings.dir.display(),
            info.rate,
            info.channels
        );
        Some(Recorder::start(
            settings,
            info.rate,
            info.channels,
            model_name.clone(),
        )?)
    } else {
        None
    };
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let mut emitter = Emitter {
        topics: topics.clone(),
        publisher: publisher.as_ref().map(|p| p.handle.clone()),
        embedding: cfg.mqtt.embedding,
        stdout,
        source: info.name.clone(),
        model: model_name.clone(),
        run_id,
        stream_start: SystemTime::now(),
        tracker: cfg.events.enabled.then(|| {
            EventTracker::new(EventParams {
                on: cfg.events.on,
                off: cfg.events.off,
                hold_s: cfg.events.hold_s,
            })
        }),
        events: Vec::with_capacity(16),
        latency: latency.clone(),
        counters: shared.clone(),
        recorder,
        rate: info.rate,
        clips: 0,
        clip_errors: 0,
    };
    let _ = dim;

    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat();
    let params = WorkerParams {
        max_backlog_s: cfg.input.max_backlog_s,
        backlog_target_s: (cfg.input.max_backlog_s / 4.0).min(0.5),
    };
    let mut worker = Worker::new(
        Processor::new(model),
        consumer,
        info.clone(),
        shared.clone(),
        params,
    )?;
    let w_shared = shared.clone();
    let w_hb = heartbeat.clone();
    let worker_thread = std::thread::Builder::new()
        .name("sfxtag-worker".into())
        .spawn(move || {
            let stop = || w_shared.stopping();
            let beat = || w_hb.beat();
            emitter.stream_start = SystemTime::now();
            if let Some(r) = &mut emitter.recorder {
                r.set_stream_start(emitter.stream_start);
            }
            let r = worker.run(&stop, &beat, &mut emitter);
            AudioCounters::add(&w_shared.counters.non_finite, worker.processor.non_finite());
            emitter.finish();
            (r, emitter.clips, emitter.clip_errors)
        })
        .context("cannot start the worker thread")?;

    service::notify_ready(&format!("listening to {}", info.name));
    let watchdog = service::watchdog_interval();
    let mut last_watchdog = Instant::now();
    let mut publisher_failed = false;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if shutdown.load(Ordering::Relaxed) {
            log::info!("shutting down");
            service::notify_stopping();
            break;
        }
        if worker_thread.is_finished() {
            break;
        }
        if publisher.as_ref().is_some_and(|p| p.is_finished()) {
            publisher_failed = true;
            break;
        }
        if let Some(iv) = watchdog {
            if last_watchdog.elapsed() >= iv {
                last_watchdog = Instant::now();
                service::feed_watchdog(&heartbeat, Duration::from_secs(30));
            }
        }
    }
    shared.stop.store(true, Ordering::Release);
    drop(running);
    let (worker_result, clips, clip_errors) = worker_thread
        .join()
        .map_err(|_| anyhow!("the worker thread panicked"))?;
    let c = &shared.counters;
    let per_s = (info.rate as f64 * info.channels as f64).max(1.0);
    let dropped_s = (AudioCounters::get(&c.overrun_samples)
        + AudioCounters::get(&c.dropped_samples)) as f64
        / per_s;
    let windows = AudioCounters::get(&c.windows);
    let pub_result = match publisher {
        Some(p) if publisher_failed => Some(p.join()),
        Some(p) => Some(p.shutdown()),
        None => None,
    };
    let mut summary = format!("sfxtag: {windows} windows from {}", info.name);
    if dropped_s > 0.0 {
        summary += &format!(
            ", {:.2} s of audio dropped ({} overruns)",
            dropped_s,
            AudioCounters::get(&c.overruns)
        );
    }
    if cfg.record.enabled {
        summary += &format!(", {clips} clips recorded in {}", cfg.record_dir().display());
        if clip_errors > 0 {
            summary += &format!(" ({clip_errors} could not be written)");
        }
    }
    if let Some(Ok(r)) = &pub_result {
        summary += &format!(", {} messages published", r.published);
        if r.left_in_queue > 0 {
            summary += &format!(
                ", {} undelivered messages kept in the offline queue",
                r.left_in_queue
            );
        }
        if r.dropped > 0 {
            summary += &format!(", {} dropped by the queue bound", r.dropped);
        }
    }
    eprintln!("{summary}");
    if let Some(Err(e)) = pub_result {
        return Err(e);
    }
    match worker_result? {
        WorkerEnd::EndOfStream | WorkerEnd::Stopped => Ok(()),
    }
}
