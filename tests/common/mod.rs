//! Shared helpers for the integration tests: tiny model directories (a real ONNX file that tract
//! loads, written with tract-onnx's own protobuf types), brokers, subscribers, the binary.
#![allow(dead_code)]

use prost::Message;
use sfxtag_core::manifest::{
    sha256_hex, EncoderSpec, FrontendSpec, HeadSpec, KnnSpec, Manifest, ModelInfo, Precision,
    Provenance, Taxonomy, MANIFEST_FILE, SCHEMA_VERSION,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tract_onnx::pb;

pub const DIM: usize = 16;
pub const LABELS: [&str; 3] = ["DOORWood", "ANMLFarm", "AMBForst"];

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sfxtag"))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fixtures")
        .join(name)
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A tiny fp32 encoder: input [1,1,100,96] → flatten → MatMul → `embedding` [1,16] → MatMul →
/// `logits_ucs` [1,3]. Deterministic weights.
pub fn tiny_onnx() -> Vec<u8> {
    let mut seed = 42u64;
    let n_in = 100 * 96;
    let w1: Vec<f32> = (0..n_in * DIM).map(|_| lcg(&mut seed) * 0.05).collect();
    let w2: Vec<f32> = (0..DIM * LABELS.len()).map(|_| lcg(&mut seed)).collect();
    let shape = pb::TensorProto {
        name: "flat_shape".into(),
        dims: vec![2],
        data_type: 7,
        int64_data: vec![1, n_in as i64],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "tiny".into(),
        node: vec![
            node("Reshape", &["input", "flat_shape"], "flat"),
            node("MatMul", &["flat", "w1"], "embedding"),
            node("MatMul", &["embedding", "w2"], "logits_ucs"),
        ],
        initializer: vec![
            shape,
            f32_tensor("w1", &[n_in as i64, DIM as i64], w1),
            f32_tensor("w2", &[DIM as i64, LABELS.len() as i64], w2),
        ],
        input: vec![value_info("input", &[1, 1, 100, 96])],
        output: vec![
            value_info("embedding", &[1, DIM as i64]),
            value_info("logits_ucs", &[1, LABELS.len() as i64]),
        ],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "sfxtag-tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// How the test model's head looks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Labelled UCS CatID head.
    Labelled,
    /// Like aiSFX: a head without label names.
    Unlabelled,
}

/// Writes a model directory with the tiny encoder (and optionally a kNN file already present in
/// the directory, named `refs.json`).
pub fn make_model(dir: &Path, head: Head, knn: Option<(&str, usize)>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let onnx = tiny_onnx();
    std::fs::write(dir.join("encoder.onnx"), &onnx).unwrap();
    let mut files = std::collections::BTreeMap::new();
    files.insert("encoder.onnx".to_string(), sha256_hex(&onnx));
    if let Some((file, _)) = knn {
        let bytes = std::fs::read(dir.join(file)).expect("knn file must exist before make_model");
        files.insert(file.to_string(), sha256_hex(&bytes));
    }
    let m = Manifest {
        schema_version: SCHEMA_VERSION,
        model: ModelInfo {
            id: "tiny-test".into(),
            version: "1".into(),
            description: "test encoder".into(),
            license: "CC0-1.0".into(),
            attribution: String::new(),
        },
        frontend: FrontendSpec::implemented(),
        encoder: EncoderSpec {
            file: "encoder.onnx".into(),
            precision: Precision::Fp32,
            opset: 17,
            input_shape: [1, 1, 100, 96],
            input_name: "input".into(),
            embedding_output: "embedding".into(),
            embedding_dim: DIM,
            embedding_mean: vec![0.0; DIM],
            embedding_std: vec![1.0; DIM],
            fp32_file: None,
        },
        heads: vec![HeadSpec {
            name: "ucs".into(),
            output: "logits_ucs".into(),
            taxonomy: Taxonomy::UcsCatId,
            labels: match head {
                Head::Labelled => LABELS.iter().map(|s| s.to_string()).collect(),
                Head::Unlabelled => Vec::new(),
            },
            n_classes: LABELS.len(),
            calibration: None,
            thresholds: Vec::new(),
            train_prior: Vec::new(),
        }],
        knn: knn.map(|(file, k)| KnnSpec {
            file: file.into(),
            taxonomy: Taxonomy::UcsCatId,
            k,
        }),
        provenance: Provenance::default(),
        quality: None,
        files,
    };
    std::fs::write(dir.join(MANIFEST_FILE), m.to_toml()).unwrap();
    dir.to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto started by a test; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    pub conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts `mosquitto -c conf` with `extra` config lines on a free port.
    pub fn start(dir: &Path, extra: &str) -> Option<Self> {
        if Command::new("mosquitto").arg("-h").output().is_err() {
            return None;
        }
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{extra}\n")).unwrap();
        let mut m = Self {
            port,
            conf,
            child: None,
        };
        m.restart();
        Some(m)
    }

    pub fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The broker for a test: the one at `SFXTAG_TEST_MQTT=host:port` if set, else a fresh
/// mosquitto on a free port if installed, else an in-process rumqttd (`SFXTAG_TEST_BROKER=rumqttd`
/// picks rumqttd even where mosquitto is installed).
pub fn broker(dir: &Path) -> (String, Option<Mosquitto>) {
    if let Ok(a) = std::env::var("SFXTAG_TEST_MQTT") {
        if !a.is_empty() {
            return (a, None);
        }
    }
    if std::env::var("SFXTAG_TEST_BROKER").as_deref() != Ok("rumqttd") {
        if let Some(m) = Mosquitto::start(dir, "allow_anonymous true") {
            return (m.addr(), Some(m));
        }
    }
    (start_rumqttd(), None)
}

/// Starts rumqttd in this process on a free port (it runs until the test process ends).
pub fn start_rumqttd() -> String {
    let port = free_port();
    let config: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 1000
dynamic_filters = true
"#
    ))
    .expect("rumqttd config");
    std::thread::spawn(move || {
        let mut b = rumqttd::Broker::new(config);
        if let Err(e) = b.start() {
            eprintln!("rumqttd: {e}");
        }
    });
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "rumqttd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("127.0.0.1:{port}")
}

/// `<test>-<pid>-<nanoseconds>`: unique per test and run, also across processes.
fn unique(test: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{n}", std::process::id())
}

/// A unique device id per test run: the daemon's MQTT client id is `sfxtag-<device id>`, and two
/// daemons with one client id on a shared broker take each other's session over.
pub fn unique_device(test: &str) -> String {
    unique(test)
}

/// A unique base topic per test run.
pub fn unique_base(test: &str) -> String {
    format!("sfxtag-test/{}", unique(test))
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.topic, self.payload))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A rumqttc subscriber on a thread; messages arrive on `rx`.
pub struct Subscriber {
    pub rx: mpsc::Receiver<Msg>,
    client: rumqttc::Client,
}

impl Subscriber {
    /// Subscribes to `filters` (QoS 1). `persistent` keeps the session (clean_session = false)
    /// with a fixed client id, so the broker queues messages while it is disconnected.
    pub fn start(addr: &str, filters: &[String], client_id: &str, persistent: bool) -> Self {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut o = rumqttc::MqttOptions::new(client_id, host, port.parse().unwrap());
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(!persistent)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 64);
        for f in filters {
            client
                .subscribe(f.clone(), rumqttc::QoS::AtLeastOnce)
                .unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let sub_client = client.clone();
        let filters = filters.to_vec();
        std::thread::spawn(move || {
            let mut subacks = 0;
            loop {
                match conn.recv() {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        if tx
                            .send(Msg {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                        subacks += 1;
                        if subacks == filters.len() {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)))) => {
                        // A fresh session after a broker restart without our session: resubscribe.
                        if !a.session_present && subacks >= filters.len() {
                            for f in &filters {
                                let _ =
                                    sub_client.try_subscribe(f.clone(), rumqttc::QoS::AtLeastOnce);
                            }
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                    Err(_) => return,
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscription not acknowledged");
        Self { rx, client }
    }

    /// Collects messages until `done` says so or `timeout` passes.
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Msg]) -> bool,
    ) -> Vec<Msg> {
        let end = Instant::now() + timeout;
        let mut v = Vec::new();
        while !done(&v) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(m) => v.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        v
    }

    pub fn disconnect(self) {
        let _ = self.client.disconnect();
    }
}

/// Runs the binary to completion with a timeout; returns (exit code, stdout, stderr).
pub fn run_bin(args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn sfxtag");
    wait_output(child, timeout)
}

pub fn wait_output(child: Child, timeout: Duration) -> (i32, String, String) {
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        _ => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("sfxtag did not finish within {timeout:?}");
        }
    }
}

/// Raw s16le mono PCM of `seconds` of a pseudo-random noisy tone at `rate`.
pub fn pcm_s16le(seconds: f64, rate: u32) -> Vec<u8> {
    let n = (seconds * rate as f64) as usize;
    let mut seed = 7u64;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f32 / rate as f32;
        let s = 0.3 * (2.0 * std::f32::consts::PI * 330.0 * t).sin() + 0.1 * lcg(&mut seed);
        out.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
    }
    out
}
