//! The settings of each daemon component, built in one place from the effective [`Config`]
//! (file, environment and command line already applied). Components take these, never sections
//! of the config file; this is where defaults that depend on other fields are resolved (topics
//! and client id from the device id, state directories, `stdout = "auto"`, the recorder's
//! threshold) and where strings become typed values (the broker URL, the password file).

use crate::classify::LabelPolicy;
use crate::config::Config;
use crate::emitter::{OutputSettings, StdoutMode};
use crate::events::EventParams;
use crate::model::{LoadOptions, Precision};
use crate::mqtt::{BrokerUrl, BrokerUrlError, MqttSettings, QueueSettings};
use crate::payload::Topics;
use crate::pipeline::WorkerParams;
use crate::queue::FileStoreConfig;
use crate::record::recorder::RecordSettings;
use crate::record::retention::RetentionPolicy;
use crate::record::tagging::TagSettings;
use crate::source::{InputSettings, InputSpec};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config field mqtt.url")]
    BrokerUrl(#[source] BrokerUrlError),
    #[error("config field mqtt.password_file: cannot read {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which model to load, and how.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub dir: Option<PathBuf>,
    pub refs: Option<PathBuf>,
    pub user_refs: Option<PathBuf>,
    pub precision: Precision,
    pub top_k: usize,
    pub knn_k: Option<usize>,
    pub policy: LabelPolicy,
}

impl ModelSettings {
    pub fn load_options(&self) -> LoadOptions<'_> {
        LoadOptions {
            precision: self.precision,
            refs: self.refs.as_deref(),
            user_refs: self.user_refs.as_deref(),
            top_k: self.top_k,
            knn_k: self.knn_k,
            policy: self.policy.clone(),
        }
    }
}

/// The silence gate: windows below `floor_dbfs` are not classified; while silent, a `silence`
/// prediction goes out on every change and every `heartbeat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceSettings {
    pub floor_dbfs: f32,
    pub heartbeat: Duration,
}

/// The privacy filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacySettings {
    pub categories: Vec<String>,
    pub min_score: f32,
    pub redact: bool,
}

/// Everything `sfxtag run` starts, configured.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub device_id: String,
    pub topics: Topics,
    pub model: ModelSettings,
    pub input: InputSettings,
    pub worker: WorkerParams,
    /// `None`: events off.
    pub events: Option<EventParams>,
    pub output: OutputSettings,
    /// `None`: MQTT off (print only).
    pub mqtt: Option<MqttSettings>,
    /// `None`: not recording.
    pub record: Option<RecordSettings>,
    /// `None`: every window is classified.
    pub silence: Option<SilenceSettings>,
    /// `None`: the privacy filter is off.
    pub privacy: Option<PrivacySettings>,
}

impl DaemonSettings {
    /// Resolves a validated config.
    pub fn from_config(c: &Config) -> Result<Self, SettingsError> {
        let topics = Topics::new(&base_topic(c));
        let mqtt = if c.mqtt.enabled {
            Some(mqtt_settings(c, &topics)?)
        } else {
            None
        };
        let e = &c.events;
        let i = &c.input;
        Ok(Self {
            device_id: c.device_id.clone(),
            model: ModelSettings {
                dir: c.model.dir.clone(),
                refs: c.model.refs.clone(),
                user_refs: c.labels.user_refs.clone(),
                precision: c.model.precision,
                top_k: c.classify.top_k,
                knn_k: c.classify.knn_k,
                policy: LabelPolicy {
                    threshold: c.labels.threshold,
                    thresholds: c.labels.thresholds.clone(),
                    categories: (!c.labels.categories.is_empty())
                        .then(|| c.labels.categories.clone()),
                    user_weight: c.labels.user_weight,
                },
            },
            silence: c.silence.enabled.then_some(SilenceSettings {
                floor_dbfs: c.silence.floor_dbfs,
                heartbeat: Duration::from_secs_f64(c.silence.heartbeat_s),
            }),
            privacy: c.privacy.enabled.then(|| PrivacySettings {
                categories: c.privacy.categories.clone(),
                min_score: c.privacy.min_score,
                redact: c.privacy.redact,
            }),
            input: InputSettings {
                spec: InputSpec::parse(&i.source),
                realtime: i.realtime,
                stdin_format: i.stdin_format,
                stdin_rate: i.stdin_rate,
                stdin_channels: i.stdin_channels,
                capture_rate: i.capture_rate,
                capture_channels: i.capture_channels,
                ring_s: i.ring_s,
            },
            worker: WorkerParams {
                max_backlog_s: i.max_backlog_s,
                // Catch up to a little backlog, not to none: the next chunk is on its way.
                backlog_target_s: (i.max_backlog_s / 4.0).min(0.5),
            },
            events: e.enabled.then_some(EventParams {
                on: e.on,
                off: e.off,
                hold_s: e.hold_s,
            }),
            output: OutputSettings {
                embedding: c.mqtt.embedding,
                stdout: match c.output.stdout {
                    StdoutMode::Auto if mqtt.is_none() => StdoutMode::Text,
                    StdoutMode::Auto => StdoutMode::Off,
                    m => m,
                },
            },
            record: c.record.enabled.then(|| record_settings(c)),
            topics,
            mqtt,
        })
    }
}

/// `mqtt.base_topic`, else `sfxtag/<device_id>`.
fn base_topic(c: &Config) -> String {
    c.mqtt
        .base_topic
        .clone()
        .unwrap_or_else(|| format!("sfxtag/{}", c.device_id))
}

fn mqtt_settings(c: &Config, topics: &Topics) -> Result<MqttSettings, SettingsError> {
    let m = &c.mqtt;
    let url =
        BrokerUrl::parse(m.url.as_deref().unwrap_or_default()).map_err(SettingsError::BrokerUrl)?;
    let password = match &m.password_file {
        Some(p) => {
            let s = std::fs::read_to_string(p).map_err(|source| SettingsError::PasswordFile {
                path: p.clone(),
                source,
            })?;
            Some(s.trim_end_matches(['\n', '\r']).to_string())
        }
        None => m.password.clone(),
    };
    let q = &c.queue;
    Ok(MqttSettings {
        url,
        client_id: m
            .client_id
            .clone()
            .unwrap_or_else(|| format!("sfxtag-{}", c.device_id)),
        username: m.username.clone(),
        password,
        ca_file: m.ca_file.clone(),
        cert_file: m.cert_file.clone(),
        key_file: m.key_file.clone(),
        keep_alive: Duration::from_secs(m.keep_alive_s),
        topics: topics.clone(),
        device_id: c.device_id.clone(),
        ha_discovery: m.ha_discovery.then(|| m.discovery_prefix.clone()),
        stats_interval: Duration::from_secs_f64(m.stats_interval_s),
        inflight: m.inflight,
        reconnect_min: Duration::from_secs_f64(m.reconnect_min_s),
        reconnect_max: Duration::from_secs_f64(m.reconnect_max_s),
        flush_timeout: Duration::from_secs_f64(m.flush_timeout_s),
        queue: QueueSettings {
            dir: q
                .dir
                .clone()
                .unwrap_or_else(|| state_path(&format!("queue-{}", c.device_id))),
            store: FileStoreConfig {
                segment_bytes: q.segment_bytes,
                sync_interval: Duration::from_secs_f64(q.sync_interval_s),
            },
            max_bytes: q.max_bytes,
            policy: q.policy,
        },
    })
}

fn record_settings(c: &Config) -> RecordSettings {
    let r = &c.record;
    RecordSettings {
        dir: r
            .dir
            .clone()
            .unwrap_or_else(|| state_path(&format!("clips-{}", c.device_id))),
        format: r.format,
        pre_roll_s: r.pre_roll_s,
        post_roll_s: r.post_roll_s,
        max_clip_s: r.max_clip_s,
        take_s: r.take_minutes * 60.0,
        mode: r.mode,
        label_threshold: r.label_threshold.unwrap_or(c.events.on),
        hold_s: c.events.hold_s,
        tags: TagSettings {
            creator_id: r.creator_id.clone(),
            source_id: r.source_id.clone().unwrap_or_else(|| c.device_id.clone()),
            designer: r.designer.clone(),
            library: r.library.clone(),
            location: r.location.clone(),
            fallback_catid: r.fallback_catid.clone(),
        },
        retention: RetentionPolicy {
            max_bytes: r.max_disk_mb * 1024 * 1024,
            keep_per_category: r.keep_per_category,
        },
        privacy: c
            .privacy
            .enabled
            .then_some(crate::record::recorder::RecordPrivacy {
                redact: c.privacy.redact,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::planner::RecordMode;

    fn config() -> Config {
        let mut c = Config {
            device_id: "garden".into(),
            ..Config::default()
        };
        c.mqtt.url = Some("mqtt://broker:1884".into());
        c
    }

    fn chain(e: SettingsError) -> String {
        format!("{:#}", anyhow::Error::from(e))
    }

    #[test]
    fn names_follow_the_device_id() {
        let s = DaemonSettings::from_config(&config()).unwrap();
        assert_eq!(s.topics.status, "sfxtag/garden/status");
        let m = s.mqtt.unwrap();
        assert_eq!(m.client_id, "sfxtag-garden");
        assert_eq!((m.url.host.as_str(), m.url.port), ("broker", 1884));
        assert!(m.queue.dir.ends_with("queue-garden"), "{:?}", m.queue.dir);
        assert_eq!(m.queue.store.sync_interval, Duration::from_secs(1));
        assert_eq!(s.output.stdout, StdoutMode::Off, "auto: nothing with MQTT");
        assert!(s.events.is_some() && s.record.is_none());
        assert_eq!(s.worker.backlog_target_s, 0.5);
    }

    #[test]
    fn without_mqtt_auto_prints_text() {
        let mut c = config();
        c.mqtt.enabled = false;
        c.mqtt.base_topic = Some("x/y".into());
        let s = DaemonSettings::from_config(&c).unwrap();
        assert!(s.mqtt.is_none());
        assert_eq!(s.output.stdout, StdoutMode::Text);
        assert_eq!(s.topics.base, "x/y");
    }

    #[test]
    fn a_bad_broker_url_names_the_field_and_the_fix() {
        let mut c = config();
        c.mqtt.url = Some("localhost:1883".into());
        let e = chain(DaemonSettings::from_config(&c).unwrap_err());
        assert!(e.starts_with("config field mqtt.url: "), "{e}");
        assert!(e.contains("mqtt://"), "{e}");
    }

    #[test]
    fn the_password_file_is_read_and_its_failure_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pass");
        std::fs::write(&p, "s3cret\n").unwrap();
        let mut c = config();
        c.mqtt.username = Some("u".into());
        c.mqtt.password_file = Some(p.clone());
        let s = DaemonSettings::from_config(&c).unwrap();
        assert_eq!(s.mqtt.unwrap().password.as_deref(), Some("s3cret"));
        c.mqtt.password_file = Some(d.path().join("missing"));
        let e = DaemonSettings::from_config(&c).unwrap_err();
        assert!(matches!(&e, SettingsError::PasswordFile { .. }));
        let e = chain(e);
        assert!(
            e.contains("mqtt.password_file") && e.contains("missing"),
            "{e}"
        );
        assert!(
            e.to_lowercase().contains("no such file"),
            "the cause is kept: {e}"
        );
    }

    #[test]
    fn the_record_section_is_resolved() {
        let mut c = config();
        c.record.enabled = true;
        c.record.dir = Some("/tmp/clips".into());
        c.record.mode = RecordMode::Continuous;
        let r = DaemonSettings::from_config(&c).unwrap().record.unwrap();
        assert_eq!(r.dir, PathBuf::from("/tmp/clips"));
        assert_eq!(r.mode, RecordMode::Continuous);
        assert_eq!(
            r.tags.source_id, "garden",
            "source_id defaults to the device id"
        );
        assert_eq!(r.retention.max_bytes, 4096 * 1024 * 1024);
        assert_eq!(r.label_threshold, c.events.on);
        assert_eq!(r.take_s, 600.0);
    }
}
