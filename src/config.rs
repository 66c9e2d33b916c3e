//! The daemon's configuration file: one TOML file (see `firmware-config/sfxtag.toml`, every
//! field documented there) with `SFXTAG_<SECTION>_<FIELD>` environment overrides. Unknown fields
//! are errors; `validate` names the field and the fix.
//!
//! Config flows one way: file → environment (here) → command line (`cli`) → the settings of each
//! component (`settings`). The value types of fields (`DropPolicy`, `PcmFormat`, …) belong to the
//! components that use them; this module only describes the file.

use crate::delivery::DropPolicy;
use crate::emitter::{EmbeddingFormat, StdoutMode};
use crate::record::planner::RecordMode;
use crate::source::stdin::PcmFormat;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {origin}")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("config field {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// `record.mode` as the file (and `--record-mode`) spells it, with what each does.
pub const RECORD_MODES: [(&str, RecordMode, &str); 2] = [
    (
        "events",
        RecordMode::Events,
        "A clip per event (overlapping events share one), with pre- and post-roll.",
    ),
    (
        "continuous",
        RecordMode::Continuous,
        "Back-to-back takes of `take_minutes`, each tagged with the labels found in it.",
    ),
];

const RECORD_MODE_NAMES: [&str; 2] = [RECORD_MODES[0].0, RECORD_MODES[1].0];

/// The one `RecordMode` (the planner's), read and written by its name in [`RECORD_MODES`].
impl Serialize for RecordMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (name, ..) = RECORD_MODES
            .iter()
            .find(|(_, m, _)| m == self)
            .expect("every mode is named");
        s.serialize_str(name)
    }
}

impl<'de> Deserialize<'de> for RecordMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        RECORD_MODES
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, m, _)| *m)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &RECORD_MODE_NAMES))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub device_id: String,
    pub model: ModelCfg,
    pub input: InputCfg,
    pub classify: ClassifyCfg,
    pub events: EventsCfg,
    pub mqtt: MqttCfg,
    pub queue: QueueCfg,
    pub record: RecordCfg,
    pub output: OutputCfg,
    pub labels: LabelsCfg,
    pub silence: SilenceCfg,
    pub privacy: PrivacyCfg,
}

/// `[labels]`: which labels the daemon may give and when a label counts as confident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsCfg {
    /// Only these UCS Categories may be predicted (empty: all).
    pub categories: Vec<String>,
    /// One confidence threshold for every label, replacing the model's per-label ones.
    pub threshold: Option<f32>,
    /// Thresholds of single labels (Category, CatID or custom label).
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// Your own reference set (`sfxtag enroll --ucs-library`), labelled first.
    pub user_refs: Option<PathBuf>,
    /// Weight of `user_refs` against the model, 0–1.
    pub user_weight: f32,
}

impl Default for LabelsCfg {
    fn default() -> Self {
        Self {
            categories: Vec::new(),
            threshold: None,
            thresholds: Default::default(),
            user_refs: None,
            user_weight: crate::classify::DEFAULT_USER_WEIGHT,
        }
    }
}

/// `[silence]`: windows below a level are not classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceCfg {
    pub enabled: bool,
    /// Windows quieter than this (RMS, dBFS) skip the encoder.
    pub floor_dbfs: f32,
    /// While silent, a `silence` prediction is published this often (and on every change).
    pub heartbeat_s: f64,
}

impl Default for SilenceCfg {
    fn default() -> Self {
        Self {
            enabled: true,
            floor_dbfs: crate::pipeline::DEFAULT_SILENCE_FLOOR_DBFS,
            heartbeat_s: 60.0,
        }
    }
}

/// `[privacy]`: Categories whose windows are never recorded and whose embeddings and scores are
/// never published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyCfg {
    pub enabled: bool,
    pub categories: Vec<String>,
    /// A window is private when one of `categories` has at least this probability in its top
    /// labels (low: it errs on the side of privacy).
    pub min_score: f32,
    /// Event clips: silence private passages instead of not writing the clip.
    pub redact: bool,
}

impl Default for PrivacyCfg {
    fn default() -> Self {
        Self {
            enabled: false,
            categories: vec!["VOICES".into()],
            min_score: 0.25,
            redact: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelCfg {
    pub dir: Option<PathBuf>,
    pub refs: Option<PathBuf>,
    /// Which encoder file of the model runs: see [`crate::model::Precision`].
    pub precision: crate::model::Precision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputCfg {
    pub source: String,
    pub realtime: bool,
    pub stdin_format: PcmFormat,
    pub stdin_rate: u32,
    pub stdin_channels: usize,
    pub capture_rate: Option<u32>,
    pub capture_channels: Option<u16>,
    pub ring_s: f64,
    pub max_backlog_s: f64,
}

impl Default for InputCfg {
    fn default() -> Self {
        Self {
            source: "default".into(),
            realtime: true,
            stdin_format: PcmFormat::S16le,
            stdin_rate: 48_000,
            stdin_channels: 1,
            capture_rate: None,
            capture_channels: None,
            ring_s: 10.0,
            max_backlog_s: 4.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyCfg {
    pub top_k: usize,
    pub knn_k: Option<usize>,
}

impl Default for ClassifyCfg {
    fn default() -> Self {
        Self {
            top_k: 3,
            knn_k: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsCfg {
    pub enabled: bool,
    pub on: f32,
    pub off: f32,
    pub hold_s: f64,
}

impl Default for EventsCfg {
    fn default() -> Self {
        let p = crate::events::EventParams::default();
        Self {
            enabled: true,
            on: p.on,
            off: p.off,
            hold_s: p.hold_s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttCfg {
    pub enabled: bool,
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub base_topic: Option<String>,
    pub keep_alive_s: u64,
    pub embedding: EmbeddingFormat,
    pub stats_interval_s: f64,
    pub ha_discovery: bool,
    pub discovery_prefix: String,
    pub inflight: usize,
    pub reconnect_min_s: f64,
    pub reconnect_max_s: f64,
    pub flush_timeout_s: f64,
}

impl Default for MqttCfg {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            base_topic: None,
            keep_alive_s: 30,
            embedding: EmbeddingFormat::Json,
            stats_interval_s: 60.0,
            ha_discovery: false,
            discovery_prefix: "homeassistant".into(),
            inflight: 32,
            reconnect_min_s: 0.5,
            reconnect_max_s: 30.0,
            flush_timeout_s: 10.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueCfg {
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub policy: DropPolicy,
    /// Group commit: seconds between `fdatasync`s of the queue (0: after every message).
    pub sync_interval_s: f64,
}

impl Default for QueueCfg {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 64 * 1024 * 1024,
            segment_bytes: 1024 * 1024,
            policy: DropPolicy::DropOldest,
            sync_interval_s: 1.0,
        }
    }
}

/// `[record]`: tag on capture (off by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordCfg {
    pub enabled: bool,
    pub dir: Option<PathBuf>,
    pub mode: RecordMode,
    pub format: crate::record::bwf::SampleFormat,
    pub pre_roll_s: f64,
    pub post_roll_s: f64,
    pub max_clip_s: f64,
    pub take_minutes: f64,
    /// Continuous mode: a window's top label is kept when its score reaches this (default:
    /// events.on).
    pub label_threshold: Option<f32>,
    pub creator_id: String,
    /// Default: the device id.
    pub source_id: Option<String>,
    pub designer: String,
    pub library: String,
    pub location: String,
    pub fallback_catid: String,
    /// Bound on the clips' total size in MiB (0: no bound).
    pub max_disk_mb: u64,
    pub keep_per_category: usize,
}

impl Default for RecordCfg {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: None,
            mode: RecordMode::Events,
            format: crate::record::bwf::SampleFormat::Pcm24,
            pre_roll_s: 2.0,
            post_roll_s: 2.0,
            max_clip_s: 120.0,
            take_minutes: 10.0,
            label_threshold: None,
            creator_id: "SFXTAG".into(),
            source_id: None,
            designer: String::new(),
            library: String::new(),
            location: String::new(),
            fallback_catid: "AMBMisc".into(),
            max_disk_mb: 4096,
            keep_per_category: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputCfg {
    pub stdout: StdoutMode,
}

impl Default for OutputCfg {
    fn default() -> Self {
        Self {
            stdout: StdoutMode::Auto,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_id: default_device_id(),
            model: ModelCfg::default(),
            input: InputCfg::default(),
            classify: ClassifyCfg::default(),
            events: EventsCfg::default(),
            mqtt: MqttCfg::default(),
            queue: QueueCfg::default(),
            record: RecordCfg::default(),
            output: OutputCfg::default(),
            labels: LabelsCfg::default(),
            silence: SilenceCfg::default(),
            privacy: PrivacyCfg::default(),
        }
    }
}

/// The host name, made topic-safe; `sfxtag` if unknown.
pub fn default_device_id() -> String {
    let h = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if h.is_empty() {
        "sfxtag".into()
    } else {
        h
    }
}

/// Sections of the file (for mapping environment variables).
const SECTIONS: [&str; 11] = [
    "model", "input", "classify", "events", "mqtt", "queue", "record", "output", "labels",
    "silence", "privacy",
];

/// Top-level (section-less) fields that the environment may set.
const TOP_LEVEL_FIELDS: [&str; 1] = ["device_id"];

/// Applies `SFXTAG_<SECTION>_<FIELD>=value` (or `SFXTAG_<FIELD>` for top-level fields) to the
/// parsed TOML table. Values are parsed as TOML values when they can be (numbers, booleans), else
/// taken as strings. A variable naming a section is strict (an unknown field is an error, so a
/// typo is caught); other `SFXTAG_*` variables (`SFXTAG_CONFIG`, `SFXTAG_LOG`, the build and test
/// scripts' own settings) are not config fields and are ignored.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("SFXTAG_") else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let (section, field) = match SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        {
            Some(s) => (Some(*s), lower[s.len() + 1..].to_string()),
            None if TOP_LEVEL_FIELDS.contains(&lower.as_str()) => (None, lower.clone()),
            None => continue,
        };
        let parsed: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let target = match section {
            Some(s) => {
                let entry = table
                    .entry(s.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    _ => {
                        return Err(ConfigError::Env {
                            var,
                            message: format!("[{s}] in the config file is not a table"),
                        })
                    }
                }
            }
            None => &mut *table,
        };
        target.insert(field, parsed);
    }
    Ok(())
}

impl Config {
    /// Parses TOML text (no environment).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
            origin: origin.into(),
            source,
        })?;
        Self::from_table(table, origin)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        Config::deserialize(toml::Value::Table(table)).map_err(|source| ConfigError::Parse {
            origin: origin.into(),
            source,
        })
    }

    /// File (optional) + environment.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let t: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                    origin: p.display().to_string(),
                    source,
                })?;
                (t, p.display().to_string())
            }
            None => (toml::Table::new(), "(defaults)".to_string()),
        };
        apply_env(&mut table, env)?;
        Self::from_table(table, &format!("{origin} + SFXTAG_* environment"))
    }

    /// Checks values; each error names the field and how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if !id_ok(&self.device_id) {
            return Err(invalid(
                "device_id",
                format!(
                    "'{}' may only hold letters, digits, '-', '_' and '.' (it becomes an MQTT topic level); set e.g. device_id = \"garden-pi\"",
                    self.device_id
                ),
            ));
        }
        let i = &self.input;
        if i.source.trim().is_empty() {
            return Err(invalid(
                "input.source",
                "empty; use '-', a file, a device name or index, or 'default'",
            ));
        }
        if !(sfxtag_core::audio::MIN_RATE..=sfxtag_core::audio::MAX_RATE).contains(&i.stdin_rate) {
            return Err(invalid(
                "input.stdin_rate",
                format!("{} Hz is outside 4000–768000", i.stdin_rate),
            ));
        }
        if !(1..=64).contains(&i.stdin_channels) {
            return Err(invalid("input.stdin_channels", "must be 1–64"));
        }
        if !(i.ring_s >= 1.0 && i.ring_s <= 600.0) {
            return Err(invalid("input.ring_s", "must be 1–600 seconds"));
        }
        if !(i.max_backlog_s > 0.0 && i.max_backlog_s < i.ring_s) {
            return Err(invalid(
                "input.max_backlog_s",
                format!("must be > 0 and below input.ring_s ({})", i.ring_s),
            ));
        }
        if !(1..=100).contains(&self.classify.top_k) {
            return Err(invalid("classify.top_k", "must be 1–100"));
        }
        if self.classify.knn_k == Some(0) {
            return Err(invalid(
                "classify.knn_k",
                "must be ≥ 1 (or left out for the model's default)",
            ));
        }
        let cats = sfxtag_core::ucs::label_categories();
        let l = &self.labels;
        for (field, list) in [
            ("labels.categories", &l.categories),
            ("privacy.categories", &self.privacy.categories),
        ] {
            if let Some(bad) = list.iter().find(|c| !cats.contains(&c.as_str())) {
                return Err(invalid(
                    field,
                    format!("'{bad}' is not a UCS Category (e.g. ANIMALS, DOORS, VOICES)"),
                ));
            }
        }
        if l.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return Err(invalid("labels.threshold", "must be a probability in 0–1"));
        }
        if let Some((k, _)) = l.thresholds.iter().find(|(_, t)| !(0.0..=1.0).contains(*t)) {
            return Err(invalid(
                "labels.thresholds",
                format!("'{k}': must be a probability in 0–1"),
            ));
        }
        if !(0.0..=1.0).contains(&l.user_weight) {
            return Err(invalid("labels.user_weight", "must be 0–1"));
        }
        if !(-120.0..=0.0).contains(&self.silence.floor_dbfs) {
            return Err(invalid("silence.floor_dbfs", "must be −120–0 dBFS"));
        }
        if self.silence.heartbeat_s.is_nan() || self.silence.heartbeat_s <= 0.0 {
            return Err(invalid("silence.heartbeat_s", "must be > 0 seconds"));
        }
        let pv = &self.privacy;
        if pv.enabled && pv.categories.is_empty() {
            return Err(invalid(
                "privacy.categories",
                "empty, but privacy.enabled is true (e.g. [\"VOICES\"])",
            ));
        }
        if !(0.0..=1.0).contains(&pv.min_score) {
            return Err(invalid("privacy.min_score", "must be a probability in 0–1"));
        }
        let e = &self.events;
        if !(0.0..=1.0).contains(&e.on) || !(0.0..=1.0).contains(&e.off) || e.off > e.on {
            return Err(invalid(
                "events.off",
                format!("need 0 ≤ off ≤ on ≤ 1 (on = {}, off = {})", e.on, e.off),
            ));
        }
        if e.hold_s.is_nan() || e.hold_s < 0.0 {
            return Err(invalid("events.hold_s", "must be ≥ 0 seconds"));
        }
        let m = &self.mqtt;
        if m.enabled {
            // Parsed with the rest of the MQTT settings (`settings`).
            if m.url.is_none() {
                return Err(invalid(
                    "mqtt.url",
                    "not set: give --mqtt-url mqtt://host:1883 (or mqtt.url in the config), or --no-mqtt to only print",
                ));
            }
            if m.password.is_some() && m.password_file.is_some() {
                return Err(invalid(
                    "mqtt.password",
                    "give mqtt.password or mqtt.password_file, not both",
                ));
            }
            if (m.password.is_some() || m.password_file.is_some()) && m.username.is_none() {
                return Err(invalid("mqtt.username", "a password needs a username"));
            }
            if m.cert_file.is_some() != m.key_file.is_some() {
                return Err(invalid(
                    "mqtt.key_file",
                    "mqtt.cert_file and mqtt.key_file go together",
                ));
            }
            if let Some(b) = &m.base_topic {
                if b.is_empty() || b.contains('+') || b.contains('#') || b.starts_with('/') {
                    return Err(invalid(
                        "mqtt.base_topic",
                        format!("'{b}' must be a topic without wildcards (+, #) or leading '/'"),
                    ));
                }
            }
            if m.stats_interval_s.is_nan() || m.stats_interval_s < 1.0 {
                return Err(invalid("mqtt.stats_interval_s", "must be ≥ 1 second"));
            }
            if !(1..=1000).contains(&m.inflight) {
                return Err(invalid("mqtt.inflight", "must be 1–1000"));
            }
            if !(m.reconnect_min_s > 0.0 && m.reconnect_max_s >= m.reconnect_min_s) {
                return Err(invalid(
                    "mqtt.reconnect_max_s",
                    "need 0 < reconnect_min_s ≤ reconnect_max_s",
                ));
            }
            if m.flush_timeout_s.is_nan() || m.flush_timeout_s < 0.0 {
                return Err(invalid("mqtt.flush_timeout_s", "must be ≥ 0"));
            }
            if !(5..=3600).contains(&m.keep_alive_s) {
                return Err(invalid("mqtt.keep_alive_s", "must be 5–3600 seconds"));
            }
        }
        let r = &self.record;
        if r.enabled {
            let range = |field: &str, v: f64, lo: f64, hi: f64| {
                if v.is_nan() || v < lo || v > hi {
                    Err(invalid(field, format!("{v} is outside {lo}–{hi}")))
                } else {
                    Ok(())
                }
            };
            range("record.pre_roll_s", r.pre_roll_s, 0.0, 30.0)?;
            range("record.post_roll_s", r.post_roll_s, 0.0, 60.0)?;
            range("record.max_clip_s", r.max_clip_s, 1.0, 4.0 * 3600.0)?;
            range("record.take_minutes", r.take_minutes, 0.05, 24.0 * 60.0)?;
            if let Some(t) = r.label_threshold {
                range("record.label_threshold", t as f64, 0.0, 1.0)?;
            }
            if r.mode == RecordMode::Events && !self.events.enabled {
                return Err(invalid(
                    "record.mode",
                    "\"events\" needs events.enabled = true (or use mode = \"continuous\")",
                ));
            }
            if sfxtag_core::ucs::validate_cat_id(&r.fallback_catid).is_err() {
                return Err(invalid(
                    "record.fallback_catid",
                    format!("'{}' is not a UCS CatID (e.g. AMBMisc)", r.fallback_catid),
                ));
            }
            for (field, v) in [
                ("record.creator_id", Some(&r.creator_id)),
                ("record.source_id", r.source_id.as_ref()),
            ] {
                if v.is_some_and(|v| sfxtag_core::ucs::sanitize_block(v).is_empty()) {
                    return Err(invalid(
                        field,
                        "must not be empty (it is a block of the UCS file name)",
                    ));
                }
            }
        }
        let q = &self.queue;
        if q.max_bytes < 64 * 1024 {
            return Err(invalid("queue.max_bytes", "must be at least 65536 bytes"));
        }
        if q.segment_bytes < 4096 || q.segment_bytes > q.max_bytes {
            return Err(invalid(
                "queue.segment_bytes",
                "must be ≥ 4096 and ≤ queue.max_bytes",
            ));
        }
        if !(0.0..=3600.0).contains(&q.sync_interval_s) {
            return Err(invalid(
                "queue.sync_interval_s",
                "must be 0–3600 seconds (0: sync after every message)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error with its causes, as the CLI prints it.
    fn chain(e: ConfigError) -> String {
        format!("{:#}", anyhow::Error::from(e))
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../firmware-config/sfxtag.toml");
        let c = Config::from_toml(text, "sfxtag.toml").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = chain(Config::from_toml("[mqtt]\nurll = \"x\"\n", "t").unwrap_err());
        assert!(
            err.starts_with("config t: ") && err.contains("urll"),
            "{err}"
        );
        let err = chain(Config::from_toml("[mqt]\n", "t").unwrap_err());
        assert!(err.contains("mqt"), "{err}");
    }

    #[test]
    fn environment_overrides_file_and_parses_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "device_id = \"a\"\n[mqtt]\nurl = \"mqtt://x:1\"\ninflight = 4\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&p),
            env(&[
                ("SFXTAG_DEVICE_ID", "b"),
                ("SFXTAG_MQTT_INFLIGHT", "8"),
                ("SFXTAG_MQTT_HA_DISCOVERY", "true"),
                ("SFXTAG_QUEUE_POLICY", "drop-newest"),
                ("SFXTAG_TEST_MQTT", "127.0.0.1:1883"),
                ("SFXTAG_CONFIG", "ignored"),
                ("SFXTAG_CROSS_TARGET_DIR", "/tmp/x"),
                ("SFXTAG_REQUIRE_AISFX", "1"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.device_id, "b");
        assert_eq!(c.mqtt.inflight, 8);
        assert!(c.mqtt.ha_discovery);
        assert_eq!(c.queue.policy, DropPolicy::DropNewest);
        assert_eq!(c.mqtt.url.as_deref(), Some("mqtt://x:1"));
        let err = chain(Config::load(None, env(&[("SFXTAG_MQTT_NOPE", "1")])).unwrap_err());
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn validation_names_field_and_fix() {
        let mut c = Config::default();
        c.mqtt.url = None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mqtt.url") && e.contains("--no-mqtt"), "{e}");
        c.mqtt.url = Some("mqtt://localhost:1883".into());
        c.validate().unwrap();
        c.events.off = 0.9;
        assert!(c.validate().unwrap_err().to_string().contains("events.off"));
        c.events.off = 0.3;
        c.device_id = "a/b".into();
        assert!(c.validate().unwrap_err().to_string().contains("device_id"));
        c.device_id = "ok".into();
        c.mqtt.password = Some("p".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mqtt.username"));
    }

    #[test]
    fn record_section_is_validated() {
        let mut c = Config::default();
        c.mqtt.enabled = false;
        c.record.enabled = true;
        c.validate().unwrap();
        let err = |c: &Config| c.validate().unwrap_err().to_string();
        let mut e = c.clone();
        e.events.enabled = false;
        assert!(err(&e).contains("record.mode"), "{}", err(&e));
        e.record.mode = RecordMode::Continuous;
        e.validate().unwrap();
        let mut f = c.clone();
        f.record.fallback_catid = "NOPE".into();
        assert!(err(&f).contains("record.fallback_catid"));
        let mut g = c.clone();
        g.record.pre_roll_s = 99.0;
        assert!(err(&g).contains("record.pre_roll_s"));
        let mut h = c.clone();
        h.record.creator_id = "__".into();
        assert!(err(&h).contains("record.creator_id"));
        // Environment: SFXTAG_RECORD_* reaches the section.
        let c2 = Config::load(None, env(&[("SFXTAG_RECORD_TAKE_MINUTES", "2.5")])).unwrap();
        assert_eq!(c2.record.take_minutes, 2.5);
    }

    #[test]
    fn the_one_record_mode_reads_and_writes_by_name() {
        let c = Config::from_toml("[record]\nmode = \"continuous\"\n", "t").unwrap();
        assert_eq!(c.record.mode, RecordMode::Continuous);
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("mode = \"continuous\""), "{text}");
        let err = chain(Config::from_toml("[record]\nmode = \"takes\"\n", "t").unwrap_err());
        assert!(err.contains("takes"), "{err}");
    }

    #[test]
    fn the_queue_sync_interval_is_bounded() {
        let mut c = Config::default();
        c.mqtt.enabled = false;
        c.queue.sync_interval_s = 0.0;
        c.validate().unwrap();
        c.queue.sync_interval_s = -1.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("queue.sync_interval_s"), "{e}");
    }
}
