//! The MQTT contract v1 (DESIGN §5): topics and payloads, built with serde.
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

use crate::classify::Label;
use crate::events::Event;
use crate::refs::Neighbour;
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(seq: u64, ts: String, start_s: f64, end_s: f64, model: &str, z: &[f32]) -> Self {
        Self {
            v: VERSION,
            seq,
            ts,
            start_s,
            end_s,
            model: model.into(),
            dim: z.len(),
            encoding: EMBEDDING_ENCODING.into(),
            zscored: true,
            data: base64::engine::general_purpose::STANDARD.encode(f32le(z)),
        }
    }
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
    /// A recorded clip is on disk: `id` is the event's id (or the take's, in continuous mode),
    /// the label is the clip's best, times are the clip's.
    #[allow(clippy::too_many_arguments)]
    pub fn clip(
        id: String,
        best: Option<&Label>,
        start_s: f64,
        end_s: f64,
        stream_start: SystemTime,
        source: &str,
        model: &str,
        file: String,
    ) -> Self {
        let score = best.map(|l| round4(l.score)).unwrap_or(0.0);
        Self {
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
            ts_start: rfc3339(stream_time(stream_start, start_s)),
            ts_end: Some(rfc3339(stream_time(stream_start, end_s))),
            source: source.into(),
            model: model.into(),
            clip_s: Some(((end_s - start_s) * 1000.0).round() / 1000.0),
            clip: Some(file),
        }
    }

    pub fn new(
        run_id: &str,
        e: &Event,
        stream_start: SystemTime,
        source: &str,
        model: &str,
    ) -> Self {
        Self {
            v: VERSION,
            id: format!("{run_id}-{}", e.id),
            phase: e.phase.as_str().into(),
            catid: e.label.catid.clone(),
            category: e.label.category.clone(),
            subcategory: e.label.subcategory.clone(),
            label: e.label.label.clone(),
            score: round4(e.score),
            peak: round4(e.peak),
            start_s: e.start_s,
            end_s: e.end_s,
            ts_start: rfc3339(stream_time(stream_start, e.start_s)),
            ts_end: e.end_s.map(|s| rfc3339(stream_time(stream_start, s))),
            source: source.into(),
            model: model.into(),
            clip: None,
            clip_s: None,
        }
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
    pub audio: AudioStats,
    pub queue: QueueStatsMsg,
    /// Encoder time per window, milliseconds.
    pub inference_ms: LatencyMsg,
    pub published: u64,
    pub reconnects: u64,
    pub source: String,
    pub model: String,
}

/// One Home Assistant discovery message (topic, retained JSON).
pub fn ha_discovery(
    prefix: &str,
    device_id: &str,
    topics: &Topics,
    model: &str,
) -> Vec<(String, String)> {
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
    vec![
        (
            format!("{prefix}/sensor/{node}/label/config"),
            label.to_string(),
        ),
        (
            format!("{prefix}/sensor/{node}/level/config"),
            level.to_string(),
        ),
        (
            format!("{prefix}/binary_sensor/{node}/event/config"),
            event.to_string(),
        ),
    ]
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
    use crate::events::Phase;
    use sfxtag_core::manifest::Taxonomy;

    #[test]
    fn rfc3339_is_utc_with_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn prediction_round_trips_and_has_the_contract_fields() {
        let m = PredictionMsg {
            v: VERSION,
            seq: 3,
            ts: rfc3339(UNIX_EPOCH),
            start_s: 1.0,
            end_s: 3.3,
            source: "file:x.wav".into(),
            model: "m@1".into(),
            top: vec![(&Label::new("DOORWood", Taxonomy::UcsCatId, 0.812_345)).into()],
            top_source: "head".into(),
            level_dbfs: -20.0,
            neighbours: None,
            knn_top: None,
        };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        for k in [
            "v",
            "seq",
            "ts",
            "start_s",
            "end_s",
            "source",
            "model",
            "top",
            "level_dbfs",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v.get("neighbours").is_none());
        assert_eq!(v["top"][0]["catid"], "DOORWood");
        assert_eq!(v["top"][0]["subcategory"], "WOOD");
        assert_eq!(v["top"][0]["score"].as_f64().unwrap() as f32, 0.8123);
        let back: PredictionMsg = serde_json::from_value(v).unwrap();
        assert_eq!(back.seq, 3);
    }

    #[test]
    fn embedding_base64_round_trips() {
        let z = [1.0f32, -2.5, 0.125];
        let m = EmbeddingMsg::new(1, "t".into(), 0.0, 1.0, "m", &z);
        assert_eq!(m.dim, 3);
        assert_eq!(decode_f32le_base64(&m.data).unwrap(), z);
        assert_eq!(f32le(&z).len(), 12);
    }

    #[test]
    fn event_ids_carry_the_run() {
        let e = Event {
            id: 7,
            phase: Phase::End,
            label: Label::new("DOORKnck", Taxonomy::UcsCatId, 0.9),
            score: 0.1,
            peak: 0.9,
            start_s: 1.0,
            end_s: Some(4.0),
        };
        let m = EventMsg::new("abc", &e, UNIX_EPOCH, "s", "m");
        assert_eq!(m.id, "abc-7");
        assert_eq!(m.phase, "end");
        assert_eq!(m.ts_end.as_deref(), Some("1970-01-01T00:00:04.000Z"));
    }

    #[test]
    fn discovery_is_retained_config_under_prefix() {
        let t = Topics::new("sfxtag/pi 1");
        let d = ha_discovery("homeassistant", "pi 1", &t, "aisfx");
        assert_eq!(d.len(), 3);
        for (topic, json) in &d {
            assert!(topic.starts_with("homeassistant/") && topic.ends_with("/config"));
            assert!(topic.contains("sfxtag_pi_1"));
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["availability_topic"], "sfxtag/pi 1/status");
            assert!(v["unique_id"].as_str().unwrap().starts_with("sfxtag_pi_1"));
        }
    }
}
