//! Command line (clap derive). Every option of `run` overrides the config file and `SFXTAG_…`
//! environment variables (precedence: defaults < file < environment < command line):
//! [`RunArgs::apply`] is the last step before the config becomes settings.

use crate::config::{Config, RECORD_MODES};
use crate::emitter::{EmbeddingFormat, StdoutMode};
use crate::record::planner::RecordMode;
use crate::source::stdin::PcmFormat;
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const MODEL_HELP: &str = crate::model::MODEL_HELP;

#[derive(Parser, Debug)]
#[command(
    name = "sfxtag",
    version,
    about = "Always-on sound-effects tagger: audio in, UCS categories and embeddings out over MQTT",
    long_about = "Always-on sound-effects tagger. Audio from a microphone, a file or stdin goes \
through a log-mel frontend and an int8 CNN encoder every 2.3 s window (50 % overlap); windows are \
labelled with UCS categories (by the model's head or by kNN over enrolled references) and \
published over MQTT with their embeddings, debounced events and health stats.",
    after_help = "\
Examples:
  sfxtag classify data/fixtures/dog.mp3                  labels per file (table)
  sfxtag classify --format json --per-window FILES…      labels per window as JSON
  sfxtag run --input data/fixtures/cat.mp3 --no-mqtt     replay a file, print labels
  sfxtag run --input default --mqtt-url mqtt://localhost:1883 --device-id garden
  arecord -D hw:1 -f S16_LE -r 48000 -c 2 -t raw | sfxtag run --input - --stdin-format s16le \\
      --stdin-rate 48000 --stdin-channels 2 --mqtt-url mqtt://broker:1883 --device-id pi1
  sfxtag run --config /etc/sfxtag/sfxtag.toml            the systemd service's way
  sfxtag enroll --label DOORWood --out refs.json door1.wav door2.wav
  sfxtag run --input default --no-mqtt --record clips/   record tagged clips of every event
  sfxtag tag --rename --out tagged/ takes/*.wav          tag recordings made elsewhere
  sfxtag devices                                         list capture devices
  sfxtag bench                                           latency, real-time CPU share, memory

Model resolution (every command's --model): models/default, then models/aisfx-cnn9, relative to
the current directory, then to the executable's directory and its parents, then
/usr/share/sfxtag/models/{default,aisfx-cnn9}.

Environment: SFXTAG_CONFIG names the config file; SFXTAG_<SECTION>_<FIELD> overrides one field
(e.g. SFXTAG_MQTT_URL, SFXTAG_DEVICE_ID, SFXTAG_QUEUE_MAX_BYTES); RUST_LOG sets the log level."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
pub enum Command {
    /// Run the daemon: capture or replay → labels, embeddings, events over MQTT (and stdout).
    #[command(after_help = "\
Examples:
  sfxtag run --input data/fixtures/dog.mp3 --no-mqtt
  sfxtag run --input default --mqtt-url mqtt://localhost:1883 --device-id garden
  sfxtag run --input \"USB Audio\" --mqtt-url mqtts://broker:8883 --mqtt-ca ca.pem \\
      --mqtt-username pi --mqtt-password-file /etc/sfxtag/mqtt.pass --device-id pi1
  arecord -f S16_LE -r 48000 -c 2 -t raw | sfxtag run --input - --stdin-format s16le \\
      --stdin-rate 48000 --stdin-channels 2 --no-mqtt

--input: '-' is raw PCM on stdin; an existing path (or one with '/' or an audio extension) is a
file to replay; a number is a device index from `sfxtag devices`; anything else is a device name
(or a unique part of it), 'default' the system default input.

Topics (base sfxtag/<device-id>): status (retained online/offline, last will), prediction,
embedding, event, stats; Home Assistant discovery under homeassistant/ with --ha-discovery.

--record DIR writes each event (pre-roll to post-roll, the device's native rate and channels) as
a UCS-named Broadcast WAV with bext and iXML tags; --record-mode continuous writes takes instead.
The rest of [record] (roll lengths, take length, names, disk bound) is in the config file.")]
    Run(RunArgs),
    /// Label audio files: per file (and per window) UCS labels.
    #[command(after_help = "\
Examples:
  sfxtag classify data/fixtures/*.mp3
  sfxtag classify --per-window --format csv door.wav > door.csv
  sfxtag classify --suggest-name --creator JD --source MYLIB recording.wav
  sfxtag classify --refs refs.json --format json clip.flac")]
    Classify(ClassifyArgs),
    /// Write per-window z-scored embeddings (JSON lines or a .npy matrix).
    #[command(after_help = "\
Examples:
  sfxtag embed --format jsonl a.wav b.ogg > emb.jsonl
  sfxtag embed --format npy --out emb.npy a.wav       (rows in window order, float32)")]
    Embed(EmbedArgs),
    /// Add labelled reference embeddings to a kNN reference file (created or extended).
    #[command(after_help = "\
Examples:
  sfxtag enroll --label DOORWood --out refs.json door1.wav door2.wav
  sfxtag enroll --out refs.json DOORWood_Creak_JD_LIB.wav   (label from the UCS file name)
  sfxtag enroll --taxonomy custom --label 'our gate' --out gate.json gate*.wav
Then: sfxtag run --refs refs.json …  (or name it in the model's manifest [knn] table)")]
    Enroll(EnrollArgs),
    /// Write UCS tags (bext + iXML) into recordings: tagged copies, in place, and/or UCS names.
    #[command(after_help = "\
Examples:
  sfxtag tag --out tagged/ takes/*.wav              tagged copies (names kept)
  sfxtag tag --rename --creator JD --source GARDEN --out tagged/ takes/*.flac
  sfxtag tag --in-place --rename takes/*.wav        lists the renames; add --yes to apply
  sfxtag tag --in-place --yes take1.wav             tags take1.wav, keeps take1.wav.bak

Each file is analysed like `sfxtag classify` (mean of the window scores). Written: a Broadcast
WAV with bext (description, originator, reference) and iXML USER fields (CATID, CATEGORY,
SUBCATEGORY, CATEGORYFULL, FXNAME, KEYWORDS, NOTES with the scores and the model, DESIGNER,
LIBRARY, LOCATION) that Soundminer, BaseHead, Soundly and Reaper read. Non-WAV sources become WAV
copies; other chunks of a source WAV (cue markers, …) are not carried over.")]
    Tag(TagArgs),
    /// List audio capture devices (names and indices for --input).
    Devices(DevicesArgs),
    /// Measure per-window latency, real-time factor, CPU share in real time and peak memory.
    #[command(after_help = "\
Example:
  sfxtag bench --seconds 30 --realtime-seconds 20
Prints: encoder latency p50/p95 per window, real-time factor of the whole path (frontend,
encoder, classification), CPU share of one core while processing real-time-paced audio, and
peak RSS (VmHWM).")]
    Bench(BenchArgs),
    /// Check a config file (and environment overrides); print the effective config.
    CheckConfig(CheckConfigArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    #[arg(long, value_name = "DIR", help = MODEL_HELP)]
    pub model: Option<PathBuf>,
    /// kNN reference set (from `sfxtag enroll`); overrides the model's own [knn] set.
    #[arg(long, value_name = "FILE")]
    pub refs: Option<PathBuf>,
    /// Number of labels reported per window.
    #[arg(long, value_name = "N")]
    pub top_k: Option<usize>,
    /// Neighbours for kNN (default: the manifest's knn.k, else 5).
    #[arg(long, value_name = "K")]
    pub knn_k: Option<usize>,
    /// Encoder to run: int8 (encoder.onnx), fp32 (the manifest's fp32 twin) or auto: int8 on ARM
    /// and on x86-64 CPUs with AVX-512-VNNI or AVX-VNNI, fp32 on other x86-64 CPUs, where tract
    /// has no fast int8 kernels (measured 3.96 s vs 62 ms per window on an AVX2-only server).
    #[arg(long, value_enum)]
    pub precision: Option<crate::model::Precision>,
    /// Only these UCS Categories may be predicted (comma-separated, e.g. ANIMALS,BIRDS,VOICES).
    #[arg(long, value_delimiter = ',', value_name = "CATEGORIES")]
    pub categories: Vec<String>,
    /// A label is confident when its probability reaches this (0–1), for every label; default:
    /// the model's per-label thresholds.
    #[arg(long, value_name = "P")]
    pub threshold: Option<f32>,
    /// Your own reference set (`sfxtag enroll --ucs-library`), labelled first.
    #[arg(long, value_name = "FILE")]
    pub user_refs: Option<PathBuf>,
    /// Weight of --user-refs against the model, 0–1.
    #[arg(long, value_name = "W")]
    pub user_weight: Option<f32>,
}

impl ModelArgs {
    /// The label policy these flags ask for.
    pub fn policy(&self) -> Result<crate::classify::LabelPolicy, String> {
        let mut p = crate::classify::LabelPolicy::default();
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("--threshold {t}: a probability in 0–1"));
            }
            p.threshold = Some(t);
        }
        if let Some(w) = self.user_weight {
            if !(0.0..=1.0).contains(&w) {
                return Err(format!("--user-weight {w}: a weight in 0–1"));
            }
            p.user_weight = w;
        }
        if !self.categories.is_empty() {
            let cats: Vec<String> = self
                .categories
                .iter()
                .map(|c| c.trim().to_uppercase())
                .collect();
            let known = sfxtag_core::ucs::label_categories();
            if let Some(bad) = cats.iter().find(|c| !known.contains(&c.as_str())) {
                return Err(format!(
                    "--categories: '{bad}' is not a UCS Category (e.g. ANIMALS, DOORS, VOICES)"
                ));
            }
            p.categories = Some(cats);
        }
        Ok(p)
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Config file (TOML; see firmware-config/sfxtag.toml). Also SFXTAG_CONFIG.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Audio input: '-' (stdin), a file, a device index or name, 'default'.
    #[arg(long, short = 'i', value_name = "SOURCE")]
    pub input: Option<String>,
    /// Replay files / read stdin as fast as possible, without dropping (default: real time).
    #[arg(long)]
    pub fast: bool,
    /// Sample format on stdin.
    #[arg(long, value_enum, value_name = "FMT")]
    pub stdin_format: Option<PcmFormat>,
    /// Sample rate on stdin (Hz).
    #[arg(long, value_name = "HZ")]
    pub stdin_rate: Option<u32>,
    /// Channels on stdin.
    #[arg(long, value_name = "N")]
    pub stdin_channels: Option<usize>,
    /// Capture sample rate (default: the device's default).
    #[arg(long, value_name = "HZ")]
    pub capture_rate: Option<u32>,
    /// Capture channels (default: the device's default).
    #[arg(long, value_name = "N")]
    pub capture_channels: Option<u16>,
    /// Device id: names the base topic sfxtag/<ID> and the MQTT client.
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// Broker: mqtt://host:port or mqtts://host:port.
    #[arg(long, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// Do not publish (print only).
    #[arg(long)]
    pub no_mqtt: bool,
    #[arg(long, value_name = "USER")]
    pub mqtt_username: Option<String>,
    /// Prefer --mqtt-password-file (command lines are visible to other users).
    #[arg(long, value_name = "PASS")]
    pub mqtt_password: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long, value_name = "FILE")]
    pub mqtt_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub mqtt_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub mqtt_key: Option<PathBuf>,
    /// Base topic (default sfxtag/<device-id>).
    #[arg(long, value_name = "TOPIC")]
    pub base_topic: Option<String>,
    /// Embedding payload: json (base64 f32le inside JSON), raw (bytes), off.
    #[arg(long, value_enum, value_name = "FMT")]
    pub embedding_format: Option<EmbeddingFormat>,
    /// Publish Home Assistant discovery (retained, under homeassistant/).
    #[arg(long)]
    pub ha_discovery: bool,
    /// Seconds between stats messages.
    #[arg(long, value_name = "S")]
    pub stats_interval: Option<f64>,
    /// Offline queue directory.
    #[arg(long, value_name = "DIR")]
    pub queue_dir: Option<PathBuf>,
    /// What to print per window on stdout.
    #[arg(long, value_enum, value_name = "MODE")]
    pub stdout: Option<StdoutMode>,
    /// Record tagged clips (UCS-named Broadcast WAV) into DIR: turns [record] on.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// What to record: a clip per event, or continuous takes.
    #[arg(long, value_enum, value_name = "MODE")]
    pub record_mode: Option<RecordMode>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `--record-mode`: the planner's one `RecordMode`, by the names the config file uses.
impl ValueEnum for RecordMode {
    fn value_variants<'a>() -> &'a [Self] {
        const MODES: [RecordMode; 2] = [RECORD_MODES[0].1, RECORD_MODES[1].1];
        &MODES
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        RECORD_MODES
            .iter()
            .find(|(_, m, _)| m == self)
            .map(|(name, _, help)| PossibleValue::new(*name).help(*help))
    }
}

impl RunArgs {
    /// The command line's overrides, applied to the config from file and environment.
    pub fn apply(&self, c: &mut Config) {
        let a = self;
        if let Some(v) = &a.input {
            c.input.source = v.clone();
        }
        if a.fast {
            c.input.realtime = false;
        }
        if let Some(v) = a.stdin_format {
            c.input.stdin_format = v;
        }
        if let Some(v) = a.stdin_rate {
            c.input.stdin_rate = v;
        }
        if let Some(v) = a.stdin_channels {
            c.input.stdin_channels = v;
        }
        if let Some(v) = a.capture_rate {
            c.input.capture_rate = Some(v);
        }
        if let Some(v) = a.capture_channels {
            c.input.capture_channels = Some(v);
        }
        if let Some(v) = &a.device_id {
            c.device_id = v.clone();
        }
        if let Some(v) = &a.mqtt_url {
            c.mqtt.url = Some(v.clone());
            c.mqtt.enabled = true;
        }
        if a.no_mqtt {
            c.mqtt.enabled = false;
        }
        macro_rules! opt {
            ($src:expr, $dst:expr) => {
                if let Some(v) = &$src {
                    $dst = Some(v.clone());
                }
            };
        }
        opt!(a.mqtt_username, c.mqtt.username);
        opt!(a.mqtt_password, c.mqtt.password);
        opt!(a.mqtt_password_file, c.mqtt.password_file);
        opt!(a.mqtt_ca, c.mqtt.ca_file);
        opt!(a.mqtt_cert, c.mqtt.cert_file);
        opt!(a.mqtt_key, c.mqtt.key_file);
        opt!(a.base_topic, c.mqtt.base_topic);
        opt!(a.queue_dir, c.queue.dir);
        opt!(a.model.model, c.model.dir);
        opt!(a.model.refs, c.model.refs);
        if let Some(p) = a.model.precision {
            c.model.precision = p;
        }
        if let Some(v) = a.embedding_format {
            c.mqtt.embedding = v;
        }
        if a.ha_discovery {
            c.mqtt.ha_discovery = true;
        }
        if let Some(v) = a.stats_interval {
            c.mqtt.stats_interval_s = v;
        }
        if let Some(v) = a.stdout {
            c.output.stdout = v;
        }
        if let Some(d) = &a.record {
            c.record.enabled = true;
            c.record.dir = Some(d.clone());
        }
        if let Some(m) = a.record_mode {
            c.record.mode = m;
        }
        if let Some(v) = a.model.top_k {
            c.classify.top_k = v;
        }
        if let Some(v) = a.model.knn_k {
            c.classify.knn_k = Some(v);
        }
        // The label policy flags, as `[labels]` (the config's validation checks their ranges).
        if let Some(t) = a.model.threshold {
            c.labels.threshold = Some(t);
        }
        if !a.model.categories.is_empty() {
            c.labels.categories = a
                .model
                .categories
                .iter()
                .map(|x| x.trim().to_uppercase())
                .collect();
        }
        opt!(a.model.user_refs, c.labels.user_refs);
        if let Some(w) = a.model.user_weight {
            c.labels.user_weight = w;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TagFormat {
    /// Keep the source's precision (16/24-bit integer stays, float and lossy sources → float).
    Keep,
    Pcm16,
    Pcm24,
    Float32,
}

#[derive(Args, Debug, Clone)]
pub struct TagArgs {
    /// Audio files (WAV, FLAC, Ogg/Vorbis, MP3).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Directory for the tagged copies (default: ./tagged). Not with --in-place.
    #[arg(long, value_name = "DIR", conflicts_with = "in_place")]
    pub out: Option<PathBuf>,
    /// Tag WAV files in place. The original is kept as FILE.bak (never overwritten).
    #[arg(long)]
    pub in_place: bool,
    /// Name the results UCS-style: CatID_FXName_CreatorID_SourceID.wav.
    #[arg(long)]
    pub rename: bool,
    /// Only list what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply --in-place --rename without the listing first.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Sample format of the written files.
    #[arg(long, value_enum, default_value = "keep")]
    pub sample_format: TagFormat,
    /// CreatorID block of UCS names (the recordist or designer's initials).
    #[arg(long, default_value = "SFXTAG")]
    pub creator: String,
    /// SourceID block of UCS names (library or project).
    #[arg(long, default_value = "NONE")]
    pub source: String,
    /// iXML DESIGNER.
    #[arg(long, default_value = "")]
    pub designer: String,
    /// iXML LIBRARY.
    #[arg(long, default_value = "")]
    pub library: String,
    /// iXML LOCATION.
    #[arg(long, default_value = "")]
    pub location: String,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct ClassifyArgs {
    /// Audio files (WAV, FLAC, Ogg/Vorbis, MP3).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: TableFormat,
    /// Also report every window (always included in json).
    #[arg(long)]
    pub per_window: bool,
    /// Print a UCS-conformant file name for each file (CatID_FXName_CreatorID_SourceID).
    #[arg(long)]
    pub suggest_name: bool,
    /// CreatorID block for --suggest-name.
    #[arg(long, default_value = "SFXTAG")]
    pub creator: String,
    /// SourceID block for --suggest-name.
    #[arg(long, default_value = "NONE")]
    pub source: String,
    /// Windows quieter than this (RMS, dBFS) are reported as silence, not classified; -120
    /// classifies every window.
    #[arg(long, value_name = "DBFS", default_value_t = crate::pipeline::DEFAULT_SILENCE_FLOOR_DBFS, allow_negative_numbers = true)]
    pub silence_floor: f32,
    /// Label the files as one batch: a session or a folder holds a few Categories, so the
    /// head's scores are re-weighted for the mix the files' own scores reveal (no labels
    /// needed). On average better for a batch from one place or one session, at the cost of
    /// its rarer Categories (docs/results.md); on a single file it changes little. The
    /// estimated mix is printed to stderr.
    #[arg(long)]
    pub batch_priors: bool,
    /// How many files' worth of weight the model's own training mix keeps in --batch-priors
    /// (0: the batch alone decides).
    #[arg(long, value_name = "FILES", default_value_t = crate::classify::DEFAULT_BATCH_PRIOR_STRENGTH,
          value_parser = parse_strength, requires = "batch_priors", allow_negative_numbers = true)]
    pub batch_prior_strength: f32,
    #[command(flatten)]
    pub model: ModelArgs,
}

fn parse_strength(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of files (0 or more)")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    Jsonl,
    Npy,
}

#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: EmbedFormat,
    /// Output file (default stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Raw encoder output instead of z-scored.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug, Clone)]
pub struct EnrollArgs {
    #[arg(required_unless_present_any = ["list", "ucs_library"], value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Your sound library: every audio file under DIR whose name is a UCS name
    /// (`CatID_FXName_…`) is enrolled with its CatID; a re-run adds only new files.
    #[arg(long, value_name = "DIR")]
    pub ucs_library: Option<PathBuf>,
    /// A CSV list of `path,label` rows (a `path,label` header is skipped), for enrolling many
    /// labels at once; combines with FILES and --label.
    #[arg(long, value_name = "CSV")]
    pub list: Option<PathBuf>,
    /// Also name the reference set in the model's manifest ([knn] table and its sha256), so the
    /// model labels with it by default. --out must then lie inside the model directory.
    #[arg(long)]
    pub attach: bool,
    /// Label of all FILES (default: the CatID of each UCS file name).
    #[arg(long)]
    pub label: Option<String>,
    /// Reference file to create or extend.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Taxonomy of the labels: ucs-catid, ucs-category or custom.
    #[arg(long, default_value = "ucs-catid")]
    pub taxonomy: String,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DevicesArgs {
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Audio to process (default: a synthetic mix of noise bursts and tones).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Seconds of audio for the throughput run.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Seconds of real-time-paced audio for the CPU-share run (0 skips it).
    #[arg(long, default_value_t = 10.0)]
    pub realtime_seconds: f64,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// Config file (also SFXTAG_CONFIG).
    #[arg(value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_overrides_everything() {
        let mut c = Config::default();
        let a = RunArgs {
            input: Some("-".into()),
            no_mqtt: true,
            fast: true,
            device_id: Some("x".into()),
            record: Some("/tmp/clips".into()),
            record_mode: Some(RecordMode::Continuous),
            ..Default::default()
        };
        a.apply(&mut c);
        assert_eq!(c.input.source, "-");
        assert!(!c.mqtt.enabled && !c.input.realtime);
        assert_eq!(c.device_id, "x");
        assert!(c.record.enabled && c.record.mode == RecordMode::Continuous);
        assert_eq!(
            c.record.dir.as_deref(),
            Some(std::path::Path::new("/tmp/clips"))
        );
        c.validate().unwrap();
    }

    #[test]
    fn the_label_flags_reach_the_daemon() {
        let cli = Cli::try_parse_from([
            "sfxtag",
            "run",
            "--no-mqtt",
            "--threshold",
            "0.3",
            "--categories",
            "animals, BIRDS",
            "--user-weight",
            "0.8",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        let mut c = Config::default();
        a.apply(&mut c);
        assert_eq!(c.labels.threshold, Some(0.3));
        assert_eq!(c.labels.categories, ["ANIMALS", "BIRDS"]);
        assert_eq!(c.labels.user_weight, 0.8);
        c.validate().unwrap();
        c.labels.threshold = Some(3.0);
        assert!(c.validate().is_err());
    }

    #[test]
    fn record_modes_parse_by_the_config_files_names() {
        let cli = Cli::try_parse_from(["sfxtag", "run", "--record-mode", "continuous"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.record_mode, Some(RecordMode::Continuous));
        assert!(Cli::try_parse_from(["sfxtag", "run", "--record-mode", "takes"]).is_err());
    }
}
