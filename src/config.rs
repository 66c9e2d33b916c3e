//! The daemon's configuration: one TOML file (see `firmware-config/sfxtag.toml`, every field
//! documented there), `SFXTAG_<SECTION>_<FIELD>` environment overrides, then command-line
//! options. Unknown fields are errors; `validate` names the field and the fix.

use crate::cli::RunArgs;
use crate::mqtt::BrokerUrl;
use crate::queue::DropPolicy;
use crate::source::stdin::PcmFormat;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingFormat {
    /// JSON with the z-scored embedding as base64 of little-endian f32.
    Json,
    /// The raw `dim × 4` bytes of little-endian f32.
    Raw,
    /// Do not publish embeddings.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StdoutMode {
    /// `text` when MQTT is off, else `off`.
    Auto,
    /// One human-readable line per window.
    Text,
    /// The prediction JSON per line.
    Json,
    Off,
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
}

impl Default for QueueCfg {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 64 * 1024 * 1024,
            segment_bytes: 1024 * 1024,
            policy: DropPolicy::DropOldest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// A clip per event (overlapping events share one), with pre- and post-roll.
    Events,
    /// Back-to-back takes of `take_minutes`, each tagged with the labels found in it.
    Continuous,
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
const SECTIONS: [&str; 8] = [
    "model", "input", "classify", "events", "mqtt", "queue", "record", "output",
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
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: origin.into(),
                message: e.to_string(),
            })?;
        Self::from_table(table, origin)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
            origin: origin.into(),
            message: e.message().to_string(),
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
                let t: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Parse {
                            origin: p.display().to_string(),
                            message: e.to_string(),
                        })?;
                (t, p.display().to_string())
            }
            None => (toml::Table::new(), "(defaults)".to_string()),
        };
        apply_env(&mut table, env)?;
        Self::from_table(table, &format!("{origin} + SFXTAG_* environment"))
    }

    /// Command-line overrides.
    pub fn apply_cli(&mut self, a: &RunArgs) {
        if let Some(v) = &a.input {
            self.input.source = v.clone();
        }
        if a.fast {
            self.input.realtime = false;
        }
        if let Some(v) = a.stdin_format {
            self.input.stdin_format = v;
        }
        if let Some(v) = a.stdin_rate {
            self.input.stdin_rate = v;
        }
        if let Some(v) = a.stdin_channels {
            self.input.stdin_channels = v;
        }
        if let Some(v) = a.capture_rate {
            self.input.capture_rate = Some(v);
        }
        if let Some(v) = a.capture_channels {
            self.input.capture_channels = Some(v);
        }
        if let Some(v) = &a.device_id {
            self.device_id = v.clone();
        }
        if let Some(v) = &a.mqtt_url {
            self.mqtt.url = Some(v.clone());
            self.mqtt.enabled = true;
        }
        if a.no_mqtt {
            self.mqtt.enabled = false;
        }
        macro_rules! opt {
            ($src:expr, $dst:expr) => {
                if let Some(v) = &$src {
                    $dst = Some(v.clone());
                }
            };
        }
        opt!(a.mqtt_username, self.mqtt.username);
        opt!(a.mqtt_password, self.mqtt.password);
        opt!(a.mqtt_password_file, self.mqtt.password_file);
        opt!(a.mqtt_ca, self.mqtt.ca_file);
        opt!(a.mqtt_cert, self.mqtt.cert_file);
        opt!(a.mqtt_key, self.mqtt.key_file);
        opt!(a.base_topic, self.mqtt.base_topic);
        opt!(a.queue_dir, self.queue.dir);
        opt!(a.model.model, self.model.dir);
        opt!(a.model.refs, self.model.refs);
        if let Some(p) = a.model.precision {
            self.model.precision = p;
        }
        if let Some(v) = a.embedding_format {
            self.mqtt.embedding = v;
        }
        if a.ha_discovery {
            self.mqtt.ha_discovery = true;
        }
        if let Some(v) = a.stats_interval {
            self.mqtt.stats_interval_s = v;
        }
        if let Some(v) = a.stdout {
            self.output.stdout = v;
        }
        if let Some(d) = &a.record {
            self.record.enabled = true;
            self.record.dir = Some(d.clone());
        }
        if let Some(m) = a.record_mode {
            self.record.mode = m;
        }
        if let Some(v) = a.model.top_k {
            self.classify.top_k = v;
        }
        if let Some(v) = a.model.knn_k {
            self.classify.knn_k = Some(v);
        }
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
            match &m.url {
                None => {
                    return Err(invalid(
                        "mqtt.url",
                        "not set: give --mqtt-url mqtt://host:1883 (or mqtt.url in the config), or --no-mqtt to only print",
                    ))
                }
                Some(u) => {
                    BrokerUrl::parse(u).map_err(|msg| invalid("mqtt.url", msg))?;
                }
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
        Ok(())
    }

    /// `sfxtag/<device_id>` unless set.
    pub fn base_topic(&self) -> String {
        self.mqtt
            .base_topic
            .clone()
            .unwrap_or_else(|| format!("sfxtag/{}", self.device_id))
    }

    /// `queue.dir`, else `$STATE_DIRECTORY/queue-<id>` (systemd), else
    /// `$XDG_STATE_HOME/sfxtag/queue-<id>` or `~/.local/state/sfxtag/queue-<id>`, else a temp dir.
    pub fn queue_dir(&self) -> PathBuf {
        match &self.queue.dir {
            Some(d) => d.clone(),
            None => state_path(&format!("queue-{}", self.device_id)),
        }
    }

    /// `record.dir`, else `clips-<id>` in the same state directory as the queue.
    pub fn record_dir(&self) -> PathBuf {
        match &self.record.dir {
            Some(d) => d.clone(),
            None => state_path(&format!("clips-{}", self.device_id)),
        }
    }

    /// `[record]` resolved for the recorder.
    pub fn record_settings(&self) -> crate::record::recorder::RecordSettings {
        let r = &self.record;
        crate::record::recorder::RecordSettings {
            dir: self.record_dir(),
            format: r.format,
            pre_roll_s: r.pre_roll_s,
            post_roll_s: r.post_roll_s,
            max_clip_s: r.max_clip_s,
            take_s: r.take_minutes * 60.0,
            mode: match r.mode {
                RecordMode::Events => crate::record::planner::RecordMode::Events,
                RecordMode::Continuous => crate::record::planner::RecordMode::Continuous,
            },
            label_threshold: r.label_threshold.unwrap_or(self.events.on),
            hold_s: self.events.hold_s,
            tags: crate::record::tagging::TagSettings {
                creator_id: r.creator_id.clone(),
                source_id: r
                    .source_id
                    .clone()
                    .unwrap_or_else(|| self.device_id.clone()),
                designer: r.designer.clone(),
                library: r.library.clone(),
                location: r.location.clone(),
                fallback_catid: r.fallback_catid.clone(),
            },
            retention: crate::record::retention::RetentionPolicy {
                max_bytes: r.max_disk_mb * 1024 * 1024,
                keep_per_category: r.keep_per_category,
            },
        }
    }
}

/// `$STATE_DIRECTORY/<leaf>` (systemd), else `$XDG_STATE_HOME/sfxtag/<leaf>` or
/// `~/.local/state/sfxtag/<leaf>`, else a temp dir.
fn state_path(leaf: &str) -> PathBuf {
    if let Ok(s) = std::env::var("STATE_DIRECTORY") {
        if let Some(first) = s.split(':').next().filter(|s| !s.is_empty()) {
            return PathBuf::from(first).join(leaf);
        }
    }
    if let Ok(x) = std::env::var("XDG_STATE_HOME") {
        return PathBuf::from(x).join("sfxtag").join(leaf);
    }
    if let Ok(h) = std::env::var("HOME") {
        return PathBuf::from(h).join(".local/state/sfxtag").join(leaf);
    }
    std::env::temp_dir().join("sfxtag").join(leaf)
}

impl Config {
    /// The password from `mqtt.password` or `mqtt.password_file`.
    pub fn mqtt_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.mqtt.password_file {
            let s = std::fs::read_to_string(p).map_err(|e| {
                invalid(
                    "mqtt.password_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            return Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()));
        }
        Ok(self.mqtt.password.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = Config::from_toml("[mqtt]\nurll = \"x\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        let err = Config::from_toml("[mqt]\n", "t").unwrap_err();
        assert!(err.to_string().contains("mqt"), "{err}");
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
        let err = Config::load(None, env(&[("SFXTAG_MQTT_NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn validation_names_field_and_fix() {
        let mut c = Config::default();
        c.mqtt.url = None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mqtt.url") && e.contains("--no-mqtt"), "{e}");
        c.mqtt.url = Some("localhost:1883".into());
        assert!(c.validate().unwrap_err().to_string().contains("mqtt://"));
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
    fn cli_overrides_everything() {
        let mut c = Config::default();
        let a = RunArgs {
            input: Some("-".into()),
            no_mqtt: true,
            fast: true,
            device_id: Some("x".into()),
            ..Default::default()
        };
        c.apply_cli(&a);
        assert_eq!(c.input.source, "-");
        assert!(!c.mqtt.enabled && !c.input.realtime);
        assert_eq!(c.base_topic(), "sfxtag/x");
        c.validate().unwrap();
    }

    #[test]
    fn record_section_is_validated_and_resolved() {
        let mut c = Config::default();
        c.mqtt.enabled = false;
        let a = RunArgs {
            record: Some("/tmp/clips".into()),
            ..Default::default()
        };
        c.apply_cli(&a);
        assert!(c.record.enabled);
        c.validate().unwrap();
        let r = c.record_settings();
        assert_eq!(r.dir, PathBuf::from("/tmp/clips"));
        assert_eq!(
            r.tags.source_id, c.device_id,
            "source_id defaults to the device id"
        );
        assert_eq!(r.retention.max_bytes, 4096 * 1024 * 1024);
        assert_eq!(r.label_threshold, c.events.on);
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
}
