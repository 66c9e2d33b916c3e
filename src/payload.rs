//! The MQTT contract v1 (docs/architecture.md §6): topics and payloads, built with serde.
//!
//! | topic | payload | retained |
//! | --- | --- | --- |
//! | `<base>/status` | `online` / `offline` (plain text; `offline` is also the last will) | yes |
//! | `<base>/prediction` | [`PredictionMsg`] JSON, one per window | no |
//! | `<base>/embedding` | [`EmbeddingMsg`] JSON, or the raw `dim × 4` bytes of f32le | no |
//! | `<base>/event` | [`EventMsg`] JSON: debounced start / update / end; `clip` when recorded | no |
//! | `<base>/stats` | [`StatsMsg`] JSON, periodic | no |
//! | `<prefix>/<component>/sfxtag_<id>/<object>/config` | Home Assistant discovery | yes |
//!
//! Everything is QoS 1. JSON payloads carry `"v": 1`; fields are only ever added within v1.
//!
//! Every payload is built here, by pure constructors from what the pipeline, the event tracker,
//! the recorder and the delivery state machine report ([`PredictionMsg::new`] from a window,
//! [`EventMsg::clips`] from a recorded clip, [`StatsMsg::new`] from counters, …): the contract
//! lives in this one module. A new optional field is declared on its struct with
//! `skip_serializing_if` and filled in its constructor, nowhere else.

use crate::classify::{Label, TopSource};
use crate::delivery::{DeliveryStats, DropPolicy};
use crate::events::Event;
use crate::pipeline::WindowOut;
use crate::queue::Record;
use crate::record::planner::ClipSummary;
use crate::refs::Neighbour;
use crate::stats::{AudioSnapshot, LatencySummary};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const VERSION: u32 = 1;

pub const STATUS_ONLINE: &str = "online";
pub const STATUS_OFFLINE: &str = "offline";

/// Topic names under one base.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub status: String,
    pub prediction: String,
    pub embedding: String,
    pub event: String,
    pub stats: String,
}

impl Topics {
    pub fn new(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            status: format!("{base}/status"),
            prediction: format!("{base}/prediction"),
            embedding: format!("{base}/embedding"),
            event: format!("{base}/event"),
            stats: format!("{base}/stats"),
            base,
        }
    }
}

/// RFC 3339 UTC with millisecond precision, e.g. `2025-01-02T03:04:05.678Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let dt = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    format!(
        "{}.{:03}Z",
        dt.format(&f).unwrap_or_default(),
        d.subsec_millis()
    )
}

/// `wall clock at stream start + stream seconds`.
pub fn stream_time(start: SystemTime, s: f64) -> SystemTime {
    start + Duration::from_secs_f64(s.max(0.0))
}

/// What every message of one run shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// `file:<name>`, `stdin`, `alsa:<device>`.
    pub source: String,
    /// `<id>@<version>` of the model.
    pub model: String,
    /// Prefixes event ids: unique across restarts.
    pub run_id: String,
    /// Wall clock at stream second 0.
    pub stream_start: SystemTime,
}

impl RunContext {
    /// RFC 3339 of stream second `s`.
    pub fn ts(&self, s: f64) -> String {
        rfc3339(stream_time(self.stream_start, s))
    }
}

/// Serialises a payload (these structs always serialise).
fn json<T: Serialize>(m: &T) -> Vec<u8> {
    serde_json::to_vec(m).expect("payload structs serialise")
}

fn round1(x: f32) -> f32 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One entry of `top` (and of `knn_top`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopEntry {
    pub catid: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    /// The label in the model's / reference set's own taxonomy.
    pub label: String,
    pub score: f32,
}

impl From<&Label> for TopEntry {
    fn from(l: &Label) -> Self {
        Self {
            catid: l.catid.clone(),
            category: l.category.clone(),
            subcategory: l.subcategory.clone(),
            label: l.label.clone(),
            score: round4(l.score),
        }
    }
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourEntry {
    pub catid: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub label: String,
    /// Cosine similarity.
    pub score: f32,
    pub source: String,
    pub window: u64,
}

impl From<&Neighbour> for NeighbourEntry {
    fn from(n: &Neighbour) -> Self {
        Self {
            catid: n.catid.clone(),
            category: n.category.clone(),
            subcategory: n.subcategory.clone(),
            label: n.label.clone(),
            score: round4(n.score),
            source: n.source.clone(),
            window: n.window,
        }
    }
}

/// `<base>/prediction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionMsg {
    pub v: u32,
    /// Window counter of this run, from 0; shared with the embedding of the same window.
    pub seq: u64,
    /// RFC 3339 UTC of the window start.
    pub ts: String,
    pub start_s: f64,
    pub end_s: f64,
    pub source: String,
    pub model: String,
    pub top: Vec<TopEntry>,
    /// `head`, `knn` or `none`.
    pub top_source: String,
    pub level_dbfs: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<Vec<NeighbourEntry>>,
    /// kNN votes when both a labelled head and references exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top: Option<Vec<TopEntry>>,
    /// `top[0]` passed its confidence threshold (additive field: absent in older messages).
    #[serde(default)]
    pub confident: bool,
    /// The confident label; null when the window is "unknown" (or silent, or private).
    #[serde(default)]
    pub label: Option<TopEntry>,
    /// The window was below the silence floor and not classified (sent on a change to silence
    /// and as a heartbeat while silent, not for every silent window).
    #[serde(default)]
    pub silence: bool,
    /// The privacy filter covered this window: only its Category is published (no scores,
    /// no embedding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_category: Option<String>,
}

/// `head`, `knn`, … as the enum serialises.
fn top_source_name(t: TopSource) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl PredictionMsg {
    /// The prediction of one window.
    pub fn new(ctx: &RunContext, w: &WindowOut<'_>) -> Self {
        let p = &w.prediction;
        Self {
            v: VERSION,
            seq: w.seq,
            ts: ctx.ts(w.start_s),
            start_s: round3(w.start_s),
            end_s: round3(w.end_s),
            source: ctx.source.clone(),
            model: ctx.model.clone(),
            top: p.top.iter().map(Into::into).collect(),
            top_source: top_source_name(p.top_source),
            level_dbfs: round1(w.level_dbfs),
            neighbours: p
                .neighbours
                .as_ref()
                .map(|n| n.iter().map(Into::into).collect()),
            knn_top: match p.top_source {
                TopSource::Head => p
                    .knn_top
                    .as_ref()
                    .map(|v| v.iter().map(Into::into).collect()),
                _ => None,
            },
            confident: p.confident,
            label: p.label().map(Into::into),
            silence: w.silent,
            private_category: None,
        }
    }

    /// The prediction of a window the privacy filter covers: its Category and nothing that
    /// would describe the sound further (no labels, scores, neighbours).
    pub fn private(ctx: &RunContext, w: &WindowOut<'_>, category: &str) -> Self {
        let mut m = Self::new(ctx, w);
        m.top.clear();
        m.neighbours = None;
        m.knn_top = None;
        m.confident = false;
        m.label = None;
        m.private_category = Some(category.to_string());
        m
    }

    pub fn to_json(&self) -> Vec<u8> {
        json(self)
    }
}

/// `<base>/embedding` in JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingMsg {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub start_s: f64,
    pub end_s: f64,
    pub model: String,
    pub dim: usize,
    /// Always `f32le-base64`.
    pub encoding: String,
    /// Always true: `(raw - embedding_mean) / embedding_std` of the manifest.
    pub zscored: bool,
    pub data: String,
}

pub const EMBEDDING_ENCODING: &str = "f32le-base64";

/// Little-endian f32 bytes.
pub fn f32le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes an [`EmbeddingMsg::data`] field.
pub fn decode_f32le_base64(s: &str) -> Option<Vec<f32>> {
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (b.len() % 4 == 0).then(|| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

impl EmbeddingMsg {
    /// The z-scored embedding of one window (same `seq` and `ts` as its prediction).
    pub fn new(ctx: &RunContext, w: &WindowOut<'_>) -> Self {
        Self {
            v: VERSION,
            seq: w.seq,
            ts: ctx.ts(w.start_s),
            start_s: round3(w.start_s),
            end_s: round3(w.end_s),
            model: ctx.model.clone(),
            dim: w.z.len(),
            encoding: EMBEDDING_ENCODING.into(),
            zscored: true,
            data: base64::engine::general_purpose::STANDARD.encode(f32le(w.z)),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        json(self)
    }
}

/// The raw form of `<base>/embedding`: the z-scored embedding's `dim × 4` bytes of f32le.
pub fn embedding_raw(w: &WindowOut<'_>) -> Vec<u8> {
    f32le(w.z)
}

/// `<base>/event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMsg {
    pub v: u32,
    /// `<run id>-<counter>`: unique across restarts.
    pub id: String,
    /// `start`, `update`, `end`, or `clip` once a recorded clip of the event is on disk.
    pub phase: String,
    pub catid: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub label: String,
    /// Score of the window that caused this message.
    pub score: f32,
    pub peak: f32,
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub ts_start: String,
    pub ts_end: Option<String>,
    pub source: String,
    pub model: String,
    /// `clip` messages: the recorded file's name (in the recording directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<String>,
    /// `clip` messages: the clip's length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_s: Option<f64>,
}

impl EventMsg {
    /// A start / update / end of the event tracker.
    pub fn new(ctx: &RunContext, e: &Event) -> Self {
        Self {
            v: VERSION,
            id: format!("{}-{}", ctx.run_id, e.id),
            phase: e.phase.as_str().into(),
            catid: e.label.catid.clone(),
            category: e.label.category.clone(),
            subcategory: e.label.subcategory.clone(),
            label: e.label.label.clone(),
            score: round4(e.score),
            peak: round4(e.peak),
            start_s: e.start_s,
            end_s: e.end_s,
            ts_start: ctx.ts(e.start_s),
            ts_end: e.end_s.map(|s| ctx.ts(s)),
            source: ctx.source.clone(),
            model: ctx.model.clone(),
            clip: None,
            clip_s: None,
        }
    }

    /// A recorded clip is on disk (`file`, in the recording directory): one `clip` message per
    /// event it covers, with that event's id, or one for the take (`<run>-clip<take>`, continuous
    /// mode). The label is the clip's best; times are the clip's, from its frames at `rate`.
    pub fn clips(
        ctx: &RunContext,
        clip: &ClipSummary,
        rate: u32,
        file: &str,
        take: u64,
    ) -> Vec<Self> {
        let rate = rate.max(1) as f64;
        let start_s = round3(clip.start_frame as f64 / rate);
        let end_s = round3(clip.end_frame as f64 / rate);
        let best = clip.labels.first();
        let score = best.map(|l| round4(l.score)).unwrap_or(0.0);
        let ids: Vec<String> = if clip.event_ids.is_empty() {
            vec![format!("{}-clip{take}", ctx.run_id)]
        } else {
            let run = &ctx.run_id;
            clip.event_ids
                .iter()
                .map(|id| format!("{run}-{id}"))
                .collect()
        };
        ids.into_iter()
            .map(|id| Self {
                v: VERSION,
                id,
                phase: "clip".into(),
                catid: best.and_then(|l| l.catid.clone()),
                category: best.and_then(|l| l.category.clone()),
                subcategory: best.and_then(|l| l.subcategory.clone()),
                label: best.map(|l| l.label.clone()).unwrap_or_default(),
                score,
                peak: score,
                start_s,
                end_s: Some(end_s),
                ts_start: ctx.ts(start_s),
                ts_end: Some(ctx.ts(end_s)),
                source: ctx.source.clone(),
                model: ctx.model.clone(),
                clip_s: Some(round3(end_s - start_s)),
                clip: Some(file.to_string()),
            })
            .collect()
    }

    pub fn to_json(&self) -> Vec<u8> {
        json(self)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioStats {
    /// Sample rate and channels of the source.
    pub rate: u32,
    pub channels: u16,
    /// Times the capture side found the ring full (audio lost at the source).
    pub overruns: u64,
    /// Seconds of audio dropped in all (ring full, or oldest audio dropped to catch up).
    pub dropped_s: f64,
    /// Audio waiting in the ring, seconds.
    pub backlog_s: f64,
    /// Non-finite samples replaced by silence.
    pub non_finite: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueStatsMsg {
    /// Messages waiting for the broker's acknowledgement.
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// `drop-oldest` or `drop-newest`.
    pub policy: String,
    /// Messages dropped because of the bound, since start.
    pub dropped: u64,
    /// Undelivered messages found on disk at start.
    pub recovered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyMsg {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// `<base>/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsMsg {
    pub v: u32,
    pub ts: String,
    pub uptime_s: f64,
    pub windows: u64,
    /// Windows below the silence floor, not run through the model (additive field).
    #[serde(default)]
    pub silent_windows: u64,
    /// Windows the privacy filter covered (additive field).
    #[serde(default)]
    pub private_windows: u64,
    pub audio: AudioStats,
    pub queue: QueueStatsMsg,
    /// Encoder time per window, milliseconds.
    pub inference_ms: LatencyMsg,
    pub published: u64,
    pub reconnects: u64,
    pub source: String,
    pub model: String,
}

/// What stays the same in every stats message of a run.
#[derive(Debug, Clone)]
pub struct StatsContext {
    pub source: String,
    pub model: String,
    /// Sample rate and channels of the source.
    pub rate: u32,
    pub channels: usize,
    /// The offline queue's bound and policy.
    pub max_bytes: u64,
    pub policy: DropPolicy,
}

/// The audio path's health, read when a stats message is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub uptime: Duration,
    pub audio: AudioSnapshot,
    pub latency: LatencySummary,
}

impl StatsMsg {
    pub fn new(ctx: &StatsContext, h: &Health, d: &DeliveryStats, now: SystemTime) -> Self {
        let a = &h.audio;
        // Interleaved samples → seconds of audio.
        let per_s = (ctx.rate as f64 * ctx.channels as f64).max(1.0);
        let ms = |us: u32| us as f64 / 1000.0;
        Self {
            v: VERSION,
            ts: rfc3339(now),
            uptime_s: round3(h.uptime.as_secs_f64()),
            windows: a.windows,
            silent_windows: a.silent_windows,
            private_windows: a.private_windows,
            audio: AudioStats {
                rate: ctx.rate,
                channels: ctx.channels as u16,
                overruns: a.overruns,
                dropped_s: round3((a.overrun_samples + a.dropped_samples) as f64 / per_s),
                backlog_s: round3(a.backlog_samples as f64 / per_s),
                non_finite: a.non_finite,
            },
            queue: QueueStatsMsg {
                depth: d.queue.depth,
                bytes: d.queue.bytes,
                max_bytes: ctx.max_bytes,
                policy: ctx.policy.as_str().into(),
                dropped: d.dropped,
                recovered: d.queue.recovered,
            },
            inference_ms: LatencyMsg {
                p50: ms(h.latency.p50_us),
                p95: ms(h.latency.p95_us),
                max: ms(h.latency.max_us),
            },
            published: d.published,
            reconnects: d.reconnects,
            source: ctx.source.clone(),
            model: ctx.model.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        json(self)
    }
}

/// `<base>/status`, retained: `online`, or `offline` (also the last will).
pub fn status(topics: &Topics, online: bool) -> Record {
    let text = if online {
        STATUS_ONLINE
    } else {
        STATUS_OFFLINE
    };
    Record::retained(topics.status.clone(), text.as_bytes().to_vec())
}

/// The Home Assistant discovery messages (retained JSON configs).
pub fn ha_discovery(prefix: &str, device_id: &str, topics: &Topics, model: &str) -> Vec<Record> {
    let node = format!("sfxtag_{}", sanitize_id(device_id));
    let device = serde_json::json!({
        "identifiers": [node.clone()],
        "name": format!("sfxtag {device_id}"),
        "manufacturer": "sfxtag",
        "model": model,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let avail = |mut v: serde_json::Value| {
        v["availability_topic"] = topics.status.clone().into();
        v["payload_available"] = STATUS_ONLINE.into();
        v["payload_not_available"] = STATUS_OFFLINE.into();
        v["device"] = device.clone();
        v["qos"] = 1.into();
        v
    };
    let label = avail(serde_json::json!({
        "name": "Sound",
        "unique_id": format!("{node}_label"),
        "object_id": format!("{node}_label"),
        "state_topic": topics.prediction,
        "value_template": "{{ (value_json.top[0].catid or value_json.top[0].label) if value_json.top else 'none' }}",
        "json_attributes_topic": topics.prediction,
        "json_attributes_template": "{{ {'score': (value_json.top[0].score if value_json.top else 0), 'category': (value_json.top[0].category if value_json.top else none), 'start_s': value_json.start_s} | tojson }}",
        "icon": "mdi:waveform",
    }));
    let level = avail(serde_json::json!({
        "name": "Sound level",
        "unique_id": format!("{node}_level"),
        "object_id": format!("{node}_level"),
        "state_topic": topics.prediction,
        "value_template": "{{ value_json.level_dbfs }}",
        "unit_of_measurement": "dBFS",
        "state_class": "measurement",
        "icon": "mdi:volume-high",
    }));
    let event = avail(serde_json::json!({
        "name": "Sound event",
        "unique_id": format!("{node}_event"),
        "object_id": format!("{node}_event"),
        "state_topic": topics.event,
        // `clip` messages render empty, which Home Assistant ignores.
        "value_template": "{% if value_json.phase == 'end' %}OFF{% elif value_json.phase in ['start', 'update'] %}ON{% endif %}",
        "json_attributes_topic": topics.event,
        "device_class": "sound",
    }));
    [
        (format!("{prefix}/sensor/{node}/label/config"), label),
        (format!("{prefix}/sensor/{node}/level/config"), level),
        (format!("{prefix}/binary_sensor/{node}/event/config"), event),
    ]
    .into_iter()
    .map(|(topic, v)| Record::retained(topic, v.to_string().into_bytes()))
    .collect()
}

/// `[A-Za-z0-9_-]` only (Home Assistant node ids).
pub fn sanitize_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Prediction;
    use crate::events::Phase;
    use sfxtag_core::manifest::Taxonomy;

    fn ctx() -> RunContext {
        RunContext {
            source: "file:x.wav".into(),
            model: "m@1".into(),
            run_id: "abc".into(),
            stream_start: UNIX_EPOCH,
        }
    }

    fn label(catid: &str, score: f32) -> Label {
        Label::new(catid, Taxonomy::UcsCatId, score)
    }

    /// A window as the pipeline reports it.
    fn window(z: &[f32], top: Vec<Label>, knn_top: Option<Vec<Label>>) -> WindowOut<'_> {
        WindowOut {
            seq: 3,
            start_s: 1.0,
            end_s: 3.321_95,
            level_dbfs: -20.04,
            raw: z,
            z,
            prediction: Prediction {
                top,
                top_source: TopSource::Head,
                knn_top,
                ..Prediction::empty()
            },
            silent: false,
            infer: Duration::from_millis(4),
        }
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn a_prediction_is_built_from_its_window() {
        let z = [0.5f32; 4];
        let w = window(&z, vec![label("DOORWood", 0.812_345)], None);
        let m = PredictionMsg::new(&ctx(), &w);
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        for k in [
            "v",
            "seq",
            "ts",
            "start_s",
            "end_s",
            "source",
            "model",
            "top",
            "top_source",
            "level_dbfs",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v.get("neighbours").is_none() && v.get("knn_top").is_none());
        assert_eq!(v["v"], 1);
        assert_eq!(v["seq"], 3);
        assert_eq!(v["ts"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["end_s"], 3.322);
        assert_eq!(v["level_dbfs"].as_f64().unwrap() as f32, -20.0);
        assert_eq!(v["source"], "file:x.wav");
        assert_eq!(v["top_source"], "head");
        assert_eq!(v["top"][0]["catid"], "DOORWood");
        assert_eq!(v["top"][0]["subcategory"], "WOOD");
        assert_eq!(v["top"][0]["score"].as_f64().unwrap() as f32, 0.8123);
        let back: PredictionMsg = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn knn_votes_ride_along_only_when_the_head_labelled() {
        let z = [0.0f32; 2];
        let votes = Some(vec![label("ANMLFarm", 0.6)]);
        let mut w = window(&z, vec![label("DOORWood", 0.9)], votes);
        let m = PredictionMsg::new(&ctx(), &w);
        assert_eq!(m.knn_top.unwrap()[0].catid.as_deref(), Some("ANMLFarm"));
        w.prediction.top_source = TopSource::Knn;
        let m = PredictionMsg::new(&ctx(), &w);
        assert_eq!(m.top_source, "knn");
        assert!(m.knn_top.is_none(), "kNN already fills top");
    }

    #[test]
    fn an_embedding_shares_its_predictions_seq_and_time() {
        let z = [1.0f32, -2.5, 0.125];
        let w = window(&z, Vec::new(), None);
        let m = EmbeddingMsg::new(&ctx(), &w);
        let p = PredictionMsg::new(&ctx(), &w);
        assert_eq!((m.seq, &m.ts, m.start_s), (p.seq, &p.ts, p.start_s));
        assert_eq!(m.dim, 3);
        assert!(m.zscored && m.encoding == EMBEDDING_ENCODING);
        assert_eq!(decode_f32le_base64(&m.data).unwrap(), z);
        assert_eq!(embedding_raw(&w), f32le(&z));
        assert_eq!(embedding_raw(&w).len(), 12);
    }

    #[test]
    fn event_ids_carry_the_run() {
        let e = Event {
            id: 7,
            phase: Phase::End,
            label: label("DOORKnck", 0.9),
            score: 0.1,
            peak: 0.9,
            start_s: 1.0,
            end_s: Some(4.0),
        };
        let m = EventMsg::new(&ctx(), &e);
        assert_eq!(m.id, "abc-7");
        assert_eq!(m.phase, "end");
        assert_eq!(m.ts_end.as_deref(), Some("1970-01-01T00:00:04.000Z"));
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert!(v.get("clip").is_none(), "clip fields only on clip messages");
    }

    #[test]
    fn a_clip_is_announced_once_per_event_it_covers_or_once_per_take() {
        let clip = ClipSummary {
            start_frame: 48_000,
            end_frame: 168_000,
            labels: vec![label("DOORWood", 0.876_54), label("DOORWood", 0.5)],
            event_ids: vec![4, 5],
            continued: false,
        };
        let m = EventMsg::clips(&ctx(), &clip, 48_000, "DOGBark_x.wav", 9);
        assert_eq!(
            m.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["abc-4", "abc-5"]
        );
        assert_eq!(m[0].phase, "clip");
        assert_eq!(m[0].catid.as_deref(), Some("DOORWood"));
        assert_eq!((m[0].score, m[0].peak), (0.8765, 0.8765));
        assert_eq!((m[0].start_s, m[0].end_s), (1.0, Some(3.5)));
        assert_eq!(m[0].clip_s, Some(2.5));
        assert_eq!(m[0].clip.as_deref(), Some("DOGBark_x.wav"));
        let take = ClipSummary {
            event_ids: Vec::new(),
            labels: Vec::new(),
            ..clip
        };
        let m = EventMsg::clips(&ctx(), &take, 48_000, "AMBMisc_y.wav", 9);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "abc-clip9");
        assert_eq!((m[0].label.as_str(), m[0].score), ("", 0.0));
    }

    #[test]
    fn stats_turn_counters_into_seconds_and_milliseconds() {
        let sctx = StatsContext {
            source: "stdin".into(),
            model: "m@1".into(),
            rate: 48_000,
            channels: 2,
            max_bytes: 1 << 20,
            policy: DropPolicy::DropNewest,
        };
        let h = Health {
            uptime: Duration::from_millis(12_345),
            audio: AudioSnapshot {
                overruns: 2,
                overrun_samples: 48_000,
                dropped_samples: 144_000,
                backlog_samples: 9_600,
                windows: 40,
                silent_windows: 30,
                private_windows: 2,
                non_finite: 1,
            },
            latency: LatencySummary {
                p50_us: 1_500,
                p95_us: 2_000,
                max_us: 9_000,
            },
        };
        let d = DeliveryStats {
            queue: crate::queue::StoreStats {
                depth: 5,
                bytes: 900,
                recovered: 3,
                truncated_bytes: 0,
            },
            dropped: 7,
            published: 100,
            reconnects: 1,
        };
        let m = StatsMsg::new(&sctx, &h, &d, UNIX_EPOCH);
        assert_eq!(m.uptime_s, 12.345);
        assert_eq!(m.windows, 40);
        assert_eq!(m.audio.dropped_s, 2.0);
        assert_eq!(m.audio.backlog_s, 0.1);
        assert_eq!((m.audio.rate, m.audio.channels), (48_000, 2));
        assert_eq!(m.queue.policy, "drop-newest");
        assert_eq!(
            (m.queue.depth, m.queue.dropped, m.queue.recovered),
            (5, 7, 3)
        );
        assert_eq!(m.inference_ms.p50, 1.5);
        assert_eq!((m.published, m.reconnects), (100, 1));
        let back: StatsMsg = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn status_is_retained_plain_text() {
        let t = Topics::new("sfxtag/a/");
        let on = status(&t, true);
        assert_eq!(
            (on.topic.as_str(), on.payload.as_slice(), on.retain),
            ("sfxtag/a/status", &b"online"[..], true)
        );
        assert_eq!(status(&t, false).payload, b"offline");
    }

    #[test]
    fn discovery_is_retained_config_under_prefix() {
        let t = Topics::new("sfxtag/pi 1");
        let d = ha_discovery("homeassistant", "pi 1", &t, "aisfx");
        assert_eq!(d.len(), 3);
        for r in &d {
            assert!(r.retain);
            assert!(r.topic.starts_with("homeassistant/") && r.topic.ends_with("/config"));
            assert!(r.topic.contains("sfxtag_pi_1"));
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(v["availability_topic"], "sfxtag/pi 1/status");
            assert!(v["unique_id"].as_str().unwrap().starts_with("sfxtag_pi_1"));
        }
    }
}
