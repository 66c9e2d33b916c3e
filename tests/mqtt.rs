//! The daemon against a real broker (`SFXTAG_TEST_MQTT=host:port`, else a mosquitto started
//! here, else an in-process rumqttd): the v1 contract of every topic, a prediction per window,
//! Home Assistant discovery, the last will of a killed daemon, refused credentials, TLS with a
//! private CA (and a wrong one), and no loss or reordering across a broker restart (offline disk
//! queue). Each test uses its own base topic and device id (MQTT client id).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn check_top(v: &serde_json::Value) {
    for t in v.as_array().unwrap() {
        for k in ["catid", "category", "subcategory", "label", "score"] {
            assert!(t.get(k).is_some(), "top entry lacks {k}: {t}");
        }
        let sc = t["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&sc));
    }
}

fn is_rfc3339_utc(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s[..4].parse::<u32>().is_ok()
}

#[test]
fn replayed_file_publishes_the_v1_contract() {
    let d = tempfile::tempdir().unwrap();
    let (addr, _m) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("contract");
    // Unique device id too: discovery configs are retained on a shared broker.
    let dev = format!("contract-{}", base.rsplit('-').next().unwrap());
    let sub = Subscriber::start(
        &addr,
        &[
            format!("{base}/#"),
            format!("homeassistant/+/sfxtag_{dev}/#"),
        ],
        &format!("sub-{}", std::process::id()),
        false,
    );
    let f = fixture("rooster.mp3");
    let (code, _, err) = run_bin(
        &[
            "run",
            "--model",
            &s(&model),
            "--input",
            &s(&f),
            "--fast",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--device-id",
            &dev,
            "--base-topic",
            &base,
            "--queue-dir",
            &s(&d.path().join("q")),
            "--ha-discovery",
            "--stats-interval",
            "1",
        ],
        &[("SFXTAG_EVENTS_ON", "0.0"), ("SFXTAG_EVENTS_OFF", "0.0")],
        T,
    );
    assert_eq!(code, 0, "{err}");
    let n_windows: u64 = err
        .split(" windows from")
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no window count in: {err}"));
    assert!(n_windows > 0);
    let msgs = sub.collect_until(Duration::from_secs(15), |v| {
        v.iter()
            .any(|m| m.topic.ends_with("/status") && m.text() == "offline")
    });
    let by = |suffix: &str| -> Vec<&Msg> {
        msgs.iter()
            .filter(|m| m.topic == format!("{base}/{suffix}"))
            .collect()
    };

    // status: online (retained) then offline (retained).
    let status: Vec<String> = by("status").iter().map(|m| m.text()).collect();
    assert_eq!(
        status.first().map(String::as_str),
        Some("online"),
        "{status:?}"
    );
    assert_eq!(
        status.last().map(String::as_str),
        Some("offline"),
        "{status:?}"
    );

    // prediction: one per window, seq 0..n in order, full schema.
    let preds: Vec<serde_json::Value> = by("prediction").iter().map(|m| m.json()).collect();
    let seqs: Vec<u64> = preds.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..n_windows).collect::<Vec<_>>());
    for p in &preds {
        // The v1 fields, plus the additive ones (confidence and silence) a v1 subscriber may
        // ignore.
        assert_eq!(
            keys(p),
            [
                "confident",
                "end_s",
                "label",
                "level_dbfs",
                "model",
                "seq",
                "silence",
                "source",
                "start_s",
                "top",
                "top_source",
                "ts",
                "v"
            ]
        );
        assert!(p["confident"].is_boolean() && p["silence"] == false);
        match p["confident"].as_bool() {
            Some(true) => assert_eq!(p["label"], p["top"][0]),
            _ => assert!(p["label"].is_null()),
        }
        assert_eq!(p["v"], 1);
        assert_eq!(p["model"], "tiny-test@1");
        assert_eq!(p["source"], "file:rooster.mp3");
        assert!(is_rfc3339_utc(p["ts"].as_str().unwrap()), "{}", p["ts"]);
        assert!(p["start_s"].as_f64().unwrap() < p["end_s"].as_f64().unwrap());
        assert!(p["level_dbfs"].as_f64().unwrap() <= 0.0);
        assert_eq!(p["top"].as_array().unwrap().len(), 3);
        check_top(&p["top"]);
    }
    // Windows advance by 50 frames.
    if preds.len() > 1 {
        let hop = preds[1]["start_s"].as_f64().unwrap() - preds[0]["start_s"].as_f64().unwrap();
        assert!((hop - 50.0 * 1024.0 / 44_100.0).abs() < 0.002, "{hop}");
    }

    // embedding: same seqs, z-scored base64 f32le of the model's dimension.
    let embs: Vec<serde_json::Value> = by("embedding").iter().map(|m| m.json()).collect();
    assert_eq!(embs.len() as u64, n_windows);
    for (i, e) in embs.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
        assert_eq!(e["v"], 1);
        assert_eq!(e["dim"], DIM as u64);
        assert_eq!(e["encoding"], "f32le-base64");
        assert_eq!(e["zscored"], true);
        let v = sfxtag::payload::decode_f32le_base64(e["data"].as_str().unwrap()).unwrap();
        assert_eq!(v.len(), DIM);
        assert_eq!(e["ts"], preds[i]["ts"]);
    }

    // event: with on = off = 0 every top label starts; each started event ends, ids unique.
    let events: Vec<serde_json::Value> = by("event").iter().map(|m| m.json()).collect();
    assert!(!events.is_empty());
    let mut phases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["v"], 1);
        for k in [
            "id",
            "phase",
            "catid",
            "category",
            "subcategory",
            "label",
            "score",
            "peak",
            "start_s",
            "end_s",
            "ts_start",
            "ts_end",
            "source",
            "model",
        ] {
            assert!(e.get(k).is_some(), "event lacks {k}: {e}");
        }
        phases
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e["phase"].as_str().unwrap().to_string());
    }
    for (id, p) in &phases {
        assert_eq!(p.first().map(String::as_str), Some("start"), "{id}: {p:?}");
        assert_eq!(p.last().map(String::as_str), Some("end"), "{id}: {p:?}");
    }

    // stats: periodic health with the contract's fields (the run may be shorter than the
    // interval; then none is required).
    for st in by("stats").iter().map(|m| m.json()) {
        assert_eq!(st["v"], 1);
        for k in [
            "uptime_s",
            "windows",
            "audio",
            "queue",
            "inference_ms",
            "published",
        ] {
            assert!(st.get(k).is_some(), "stats lack {k}");
        }
        for k in ["overruns", "dropped_s"] {
            assert!(st["audio"].get(k).is_some());
        }
        for k in ["depth", "dropped", "max_bytes", "policy"] {
            assert!(st["queue"].get(k).is_some());
        }
        for k in ["p50", "p95"] {
            assert!(st["inference_ms"][k].as_f64().unwrap() >= 0.0);
        }
    }

    // Home Assistant discovery: retained configs under homeassistant/.
    let ha: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/"))
        .collect();
    assert!(
        ha.len() >= 3,
        "{:?}",
        ha.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    for m in &ha {
        assert!(m.topic.ends_with("/config"));
        let v = m.json();
        assert_eq!(v["availability_topic"], format!("{base}/status"));
        assert!(v["state_topic"].as_str().unwrap().starts_with(&base));
        assert!(v["unique_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sfxtag_{dev}")));
    }
    // Retained: a late subscriber still gets the discovery and the final status.
    let late = Subscriber::start(
        &addr,
        &[
            format!("{base}/status"),
            format!("homeassistant/sensor/sfxtag_{dev}/label/config"),
        ],
        &format!("late-{}", std::process::id()),
        false,
    );
    let got = late.collect_until(Duration::from_secs(5), |v| v.len() >= 2);
    assert!(got.iter().all(|m| m.retain));
    assert!(got.iter().any(|m| m.text() == "offline"));
    assert!(got.iter().any(|m| m.topic.starts_with("homeassistant/")));
    sub.disconnect();
    late.disconnect();
}

#[test]
fn raw_embeddings_are_dim_times_four_bytes() {
    let d = tempfile::tempdir().unwrap();
    let (addr, _m) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("raw");
    let sub = Subscriber::start(
        &addr,
        &[format!("{base}/embedding")],
        &format!("raw-{}", std::process::id()),
        false,
    );
    let (code, _, err) = run_bin(
        &[
            "run",
            "--model",
            &s(&model),
            "--input",
            &s(&fixture("cat.mp3")),
            "--fast",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--base-topic",
            &base,
            "--device-id",
            &unique_device("raw"),
            "--queue-dir",
            &s(&d.path().join("q")),
            "--embedding-format",
            "raw",
        ],
        &[],
        T,
    );
    assert_eq!(code, 0, "{err}");
    let got = sub.collect_until(Duration::from_secs(5), |v| !v.is_empty());
    assert!(!got.is_empty());
    assert!(got.iter().all(|m| m.payload.len() == DIM * 4));
}

#[test]
fn killed_daemon_leaves_its_last_will() {
    let d = tempfile::tempdir().unwrap();
    let (addr, _m) = broker(d.path());
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("will");
    let sub = Subscriber::start(
        &addr,
        &[format!("{base}/status")],
        &format!("will-{}", std::process::id()),
        false,
    );
    // stdin input that never ends: the daemon runs until killed.
    let mut child = Command::new(bin())
        .args([
            "run",
            "--model",
            &s(&model),
            "--input",
            "-",
            "--stdin-rate",
            "44100",
            "--mqtt-url",
            &format!("mqtt://{addr}"),
            "--base-topic",
            &base,
            "--device-id",
            &unique_device("will"),
            "--queue-dir",
            &s(&d.path().join("q")),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let online = sub.collect_until(Duration::from_secs(20), |v| {
        v.iter().any(|m| m.text() == "online")
    });
    assert!(
        online.iter().any(|m| m.text() == "online"),
        "daemon never came online"
    );
    child.kill().unwrap(); // SIGKILL: no clean shutdown, the broker must publish the will
    child.wait().unwrap();
    let after = sub.collect_until(Duration::from_secs(10), |v| {
        v.iter().any(|m| m.text() == "offline")
    });
    assert!(after.iter().any(|m| m.text() == "offline"), "{after:?}");
    sub.disconnect();
}

#[test]
fn refused_credentials_are_fatal_and_clear() {
    let d = tempfile::tempdir().unwrap();
    let pw = d.path().join("passwd");
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c", &s(&pw), "sfx", "right"])
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        panic!("this test needs mosquitto_passwd (package mosquitto)");
    }
    let m = Mosquitto::start(
        d.path(),
        &format!("allow_anonymous false\npassword_file {}", s(&pw)),
    )
    .expect("this test needs mosquitto");
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let run_with = |password: &str| {
        run_bin(
            &[
                "run",
                "--model",
                &s(&model),
                "--input",
                &s(&fixture("cat.mp3")),
                "--fast",
                "--mqtt-url",
                &format!("mqtt://{}", m.addr()),
                "--mqtt-username",
                "sfx",
                "--mqtt-password",
                password,
                "--queue-dir",
                &s(&d.path().join("q")),
            ],
            &[],
            T,
        )
    };
    let (code, _, err) = run_with("wrong");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused") && err.contains("mqtt.username"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The right password works, and the messages of the refused run (kept in the queue
    // directory) are delivered first.
    let (code, _, err) = run_with("right");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("kept in the offline queue"), "{err}");
}

#[test]
fn broker_restart_loses_and_reorders_nothing() {
    let d = tempfile::tempdir().unwrap();
    let persist = d.path().join("persist");
    std::fs::create_dir_all(&persist).unwrap();
    // mosquitto started as root drops to the `mosquitto` user: let it write its database.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&persist, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut m = Mosquitto::start(
        d.path(),
        &format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n",
            s(&persist)
        ),
    )
    .expect("this test needs mosquitto");
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("restart");
    let sub = Subscriber::start(
        &m.addr(),
        &[format!("{base}/prediction")],
        &format!("restart-sub-{}", std::process::id()),
        true,
    );
    let mut child = Command::new(bin())
        .args([
            "run",
            "--model",
            &s(&model),
            "--input",
            "-",
            "--stdin-rate",
            "44100",
            "--fast",
            "--mqtt-url",
            &format!("mqtt://{}", m.addr()),
            "--base-topic",
            &base,
            "--queue-dir",
            &s(&d.path().join("q")),
            "--embedding-format",
            "off",
        ])
        .env("SFXTAG_MQTT_RECONNECT_MIN_S", "0.2")
        .env("SFXTAG_MQTT_RECONNECT_MAX_S", "0.5")
        .env("SFXTAG_MQTT_FLUSH_TIMEOUT_S", "20")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let pcm = pcm_s16le(30.0, 44_100);
    let third = pcm.len() / 3 / 2 * 2;
    // 1: ten seconds with the broker up.
    stdin.write_all(&pcm[..third]).unwrap();
    stdin.flush().unwrap();
    let first = sub.collect_until(Duration::from_secs(30), |v| v.len() >= 4);
    assert!(
        first.len() >= 4,
        "only {} predictions before the restart",
        first.len()
    );
    // 2: broker down; ten more seconds go to the disk queue.
    m.stop();
    stdin.write_all(&pcm[third..2 * third]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // 3: broker back; the rest, then end of stream.
    m.restart();
    stdin.write_all(&pcm[2 * third..]).unwrap();
    drop(stdin);
    let (code, _, err) = wait_output(child, T);
    assert_eq!(code, 0, "{err}");
    let n: u64 = err
        .split(" windows from")
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no window count in: {err}"));
    assert!(
        err.contains("reconnected") || err.contains("lost the MQTT broker"),
        "{err}"
    );
    let rest = sub.collect_until(Duration::from_secs(30), |v| {
        v.iter().any(|m| m.json()["seq"].as_u64() == Some(n - 1))
    });
    let seqs: Vec<u64> = first
        .iter()
        .chain(rest.iter())
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    // QoS 1 is at-least-once: a message in flight at the drop may come again, but the first
    // occurrences must be 0..n in order.
    let mut firsts = Vec::new();
    for s in &seqs {
        if !firsts.contains(s) {
            firsts.push(*s);
        }
    }
    assert_eq!(firsts, (0..n).collect::<Vec<_>>(), "received {seqs:?}");
    let mut last = 0;
    for s in &seqs {
        // Duplicates only ever repeat a recent message, never jump back far.
        assert!(*s + 32 >= last, "reordered: {seqs:?}");
        last = last.max(*s);
    }
    sub.disconnect();
}

/// A CA and a server certificate for `localhost` (openssl), in `dir`.
fn make_certs(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("this test needs the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=sfxtag test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (ca, cert, key)
}

#[test]
fn tls_broker_with_a_private_ca() {
    let d = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(d.path());
    {
        // mosquitto started as root drops to its own user: let it read the key.
        use std::os::unix::fs::PermissionsExt;
        for p in [&ca, &cert, &key] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tls_port = free_port();
    // A plain listener (the subscriber) and a TLS one (the daemon).
    let m = Mosquitto::start(
        d.path(),
        &format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            s(&ca),
            s(&cert),
            s(&key)
        ),
    )
    .expect("this test needs mosquitto");
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "TLS listener did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let model = make_model(&d.path().join("m"), Head::Labelled, None);
    let base = unique_base("tls");
    let sub = Subscriber::start(
        &m.addr(),
        &[format!("{base}/prediction")],
        &format!("tls-sub-{}", std::process::id()),
        false,
    );
    let run_with = |ca: &std::path::Path, q: &str| {
        run_bin(
            &[
                "run",
                "--model",
                &s(&model),
                "--input",
                &s(&fixture("cat.mp3")),
                "--fast",
                "--mqtt-url",
                &format!("mqtts://localhost:{tls_port}"),
                "--mqtt-ca",
                &s(ca),
                "--device-id",
                &unique_device("tls"),
                "--base-topic",
                &base,
                "--queue-dir",
                &s(&d.path().join(q)),
            ],
            &[("SFXTAG_MQTT_FLUSH_TIMEOUT_S", "3")],
            T,
        )
    };
    let (code, _, err) = run_with(&ca, "q1");
    assert_eq!(code, 0, "{err}");
    let got = sub.collect_until(Duration::from_secs(10), |v| !v.is_empty());
    assert!(!got.is_empty(), "nothing arrived over TLS: {err}");
    assert_eq!(got[0].json()["v"], 1);
    // A CA that did not sign the broker's certificate: the handshake fails, said clearly, and
    // the messages stay in the offline queue.
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = make_certs(&other);
    let (_, _, err) = run_with(&other_ca, "q2");
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
    assert!(err.contains("kept in the offline queue"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    sub.disconnect();
}
