//! Corpus and prepare on tiny synthetic data: native labels, review rules, tables, a fake
//! unpacked package, UCS folders, CSV lists, the stratified split, skipped files, label errors.

use sfxtag_train::corpus::{self, FetchOptions, Origin, Package};
use sfxtag_train::prepare::{self, load_prepared, stratified_split, PrepareOptions, Split};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn write_wav(path: &Path, freq: f32, secs: f32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (secs * 22_050.0) as usize;
    for i in 0..n {
        let t = i as f32 / 22_050.0;
        w.write_sample(((t * freq * std::f32::consts::TAU).sin() * 8000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn native_labels_strip_trailing_numbers_only() {
    use corpus::native_label as nl;
    assert_eq!(
        nl("actor/fauna/animal/camel_10.ogg"),
        "actor/fauna/animal/camel"
    );
    assert_eq!(
        nl("default/sounds/default_dig_cracky.2.ogg"),
        "default/sounds/default_dig_cracky"
    );
    assert_eq!(nl("bat-hit-1.ogg"), "bat-hit");
    assert_eq!(nl("magic-missile-1-miss.ogg"), "magic-missile-1-miss");
    assert_eq!(nl("ambience/forest1.ogg"), "ambience/forest");
    assert_eq!(nl("countdown4.ogg"), "countdown");
    assert_eq!(nl("sfx/v_1.2.ogg"), "sfx/v");
    assert_eq!(nl("1C.ogg"), "1C");
    assert_eq!(nl("42.wav"), "42");
    assert_eq!(nl("a\\b\\crash2.ogg"), "a/b/crash");
}

#[test]
fn review_rules() {
    let drop = ["voices/"];
    assert_eq!(
        corpus::review_draft_row("wolf-hit-1.ogg", "ANMLDog", &drop).as_deref(),
        Some("ANMLDog")
    );
    assert_eq!(
        corpus::review_draft_row("voices/Default/Ouch.ogg", "TOONVox", &drop),
        None
    );
    assert_eq!(corpus::review_draft_row("bite.ogg", "", &drop), None);
    assert_eq!(corpus::review_draft_row("x.ogg", "NOTACATID", &drop), None);
    assert_eq!(
        corpus::review_draft_row("x.ogg", "doorwood", &drop),
        None,
        "CatIDs are case-sensitive"
    );
    assert_eq!(
        corpus::review_draft_row("weapons/rifle/notify.ogg", "GUNRif", &drop),
        None
    );
    let archived = sfxtag_core::ucs::entries()
        .iter()
        .find(|e| !e.is_label())
        .unwrap();
    assert_eq!(
        corpus::review_draft_row("x.ogg", archived.cat_id, &drop),
        None
    );
}

#[test]
fn reviewed_tables_are_valid_and_consistent() {
    // Small sources are fine (a pinball game has a handful of sounds); an empty table is not,
    // and the whole corpus must stay broad.
    let mut total = 0;
    for p in corpus::PACKAGES.iter().chain(corpus::sources::OPTIONAL) {
        let rows = corpus::parse_table(p.table, p.dataset).unwrap();
        assert!(!rows.is_empty(), "{}: an empty table", p.dataset);
        total += rows.len();
        for r in &rows {
            assert_eq!(r.native_label, corpus::native_label(&r.path), "{}", r.path);
            assert!(!p.exclude.iter().any(|e| r.path.starts_with(e)));
        }
    }
    assert!(total >= 5000, "{total} reviewed rows in all");
}

#[test]
fn table_errors_are_clear() {
    let bad = "path,native_label,ucs_catid\na.ogg,a,DOORWod\n";
    let e = corpus::parse_table(bad, "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("DOORWod"), "{e:#}");
    let conflict = "path,native_label,ucs_catid\na1.ogg,a,DOORWood\na2.ogg,a,DOORMetl\n";
    let e = corpus::parse_table(conflict, "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("maps to both"), "{e:#}");
    let header = "file,label\n";
    assert!(corpus::parse_table(header, "t.csv").is_err());
}

#[test]
fn dep5_last_matching_stanza_wins() {
    let text = "Format: x\n\nFiles: *\nCopyright: 2001 Team\nLicense: GPL-2+\n\nFiles: data/sfx/anvil.ogg\nCopyright: Someone\n 2008 Other\nLicense: CC0\n\nFiles: mtg/mods/doors/sounds/*\nCopyright: D\nLicense: CC-BY-3.0\n";
    let st = corpus::parse_dep5(text);
    assert_eq!(st.len(), 3);
    let l = |p: &str| corpus::licence_for(&st, p).unwrap().license.clone();
    assert_eq!(l("/x/usr/share/games/stk/data/sfx/anvil.ogg"), "CC0");
    assert_eq!(l("/x/usr/share/games/stk/data/sfx/boing.ogg"), "GPL-2+");
    assert_eq!(
        l("/c/minetest_game/mods/doors/sounds/door.ogg"),
        "CC-BY-3.0"
    );
    assert_eq!(
        corpus::licence_for(&st, "/c/data/sfx/anvil.ogg")
            .unwrap()
            .copyright,
        vec!["Someone", "2008 Other"]
    );
}

/// A fake unpacked package: 4 labels, one of them with an unreadable file, one table row missing.
fn fake_package(dir: &Path) -> (Package, Vec<corpus::TableRow>) {
    let root = dir.join("fake-data/usr/share/games/fake/sounds");
    let mut rows = Vec::new();
    let mut add = |rel: &str, cat: &str, freq: f32| {
        if freq > 0.0 {
            write_wav(&root.join(rel), freq, 0.3);
        }
        rows.push(corpus::TableRow {
            path: rel.to_string(),
            native_label: corpus::native_label(rel),
            ucs_catid: cat.to_string(),
        });
    };
    for i in 1..=10 {
        add(&format!("door/wood_{i}.wav"), "DOORWood", 300.0 + i as f32);
    }
    for i in 1..=5 {
        add(&format!("door/metal-{i}.wav"), "DOORMetl", 900.0 + i as f32);
    }
    add("fire/burn.1.wav", "FIREBurn", 2000.0);
    add("fire/burn.2.wav", "FIREBurn", 2100.0);
    add("gone.wav", "GLASBrk", 0.0); // listed, not on disk
    fs::write(
        root.join("door/wood_11.wav"),
        b"RIFF\0\0\0\0garbage, not audio",
    )
    .unwrap();
    rows.push(corpus::TableRow {
        path: "door/wood_11.wav".into(),
        native_label: "door/wood".into(),
        ucs_catid: "DOORWood".into(),
    });
    write_wav(&root.join("unmapped.wav"), 100.0, 0.2);
    let doc = dir.join("fake-data/usr/share/doc/fake-data");
    fs::create_dir_all(&doc).unwrap();
    fs::write(
        doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 2020 Fake Team\nLicense: CC-BY-SA-3.0\n",
    )
    .unwrap();
    let p = Package {
        name: "fake-data",
        dataset: "fake",
        audio_root: "usr/share/games/fake/sounds",
        exclude: &[],
        table: "",
        licence: "CC-BY-SA-3.0",
        group: "fake",
        origin: Origin::Debian,
    };
    (p, rows)
}

#[test]
fn fake_package_fetch_and_prepare() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, rows) = fake_package(tmp.path());
    let unpacked = tmp.path().join("fake-data");
    let copyright = fs::read_to_string(unpacked.join("usr/share/doc/fake-data/copyright")).unwrap();
    let pfs = corpus::PackageFs::new(&unpacked, tmp.path().join("extracted"));
    let (info, clips, attr) =
        corpus::package_dataset(&p, &pfs, "1.0-1", &rows, Some(&copyright)).unwrap();
    assert_eq!(info.missing, vec!["gone.wav".to_string()]);
    assert_eq!(info.unlabelled, 1);
    assert_eq!(clips.len(), 18);
    assert!(clips.iter().all(|c| c.licence == "CC-BY-SA-3.0"));
    assert!(
        attr.contains("fake-data 1.0-1")
            && attr.contains("2020 Fake Team")
            && attr.contains("door/metal-3.wav")
    );

    let cache = tmp.path().join("cache");
    let index = corpus::CorpusIndex {
        datasets: vec![info],
        clips,
    };
    index.save(&cache).unwrap();
    let mut opts = PrepareOptions::new(&cache);
    opts.progress = false;
    let r = prepare::prepare(&opts).unwrap();
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!((r.clips, r.classes, r.skipped, r.decoded), (17, 3, 1, 17));
    let skipped = fs::read_to_string(cache.join("prepared/fake/skipped.txt")).unwrap();
    assert!(skipped.contains("wood_11.wav"), "{skipped}");

    let ds = load_prepared(&cache, "fake").unwrap();
    assert_eq!(ds.clips.len(), 17);
    assert_eq!(ds.labels, vec!["door/metal", "door/wood", "fire/burn"]);
    let frames = ds.clips[0].mel.len();
    assert!(
        (12..=16).contains(&frames),
        "0.3 s → ~13 frames, got {frames}"
    );
    assert!(ds
        .clips
        .iter()
        .all(|c| c.mel.iter().flatten().all(|x| x.is_finite())));
    // burn has 2 clips: training only; wood (10) and metal (5) appear in every split.
    for c in ds.clips.iter().filter(|c| c.native_label == "fire/burn") {
        assert_eq!(c.split, Split::Train);
    }
    for label in ["door/wood", "door/metal"] {
        for s in [Split::Train, Split::Val, Split::Test] {
            assert!(
                ds.split(s).any(|c| c.native_label == label),
                "{label} missing from {s:?}"
            );
        }
    }
    // The same mel frames as the daemon's code path.
    let c = ds
        .clips
        .iter()
        .find(|c| c.rel_path == "door/wood_3.wav")
        .unwrap();
    let a =
        sfxtag_core::audio::decode_mono_44k(&unpacked.join(p.audio_root).join("door/wood_3.wav"))
            .unwrap();
    assert_eq!(c.mel, sfxtag_core::frontend::mel_spectrogram(&a.samples));

    // A re-run reuses everything (and keeps the skip), and gives the same split.
    let r2 = prepare::prepare(&opts).unwrap();
    assert_eq!((r2[0].decoded, r2[0].reused, r2[0].skipped), (0, 17, 1));
    let ds2 = load_prepared(&cache, "fake").unwrap();
    let splits = |d: &prepare::PreparedDataset| {
        d.clips
            .iter()
            .map(|c| (c.rel_path.clone(), c.split))
            .collect::<Vec<_>>()
    };
    assert_eq!(splits(&ds), splits(&ds2));
    assert_eq!(ds.clips[5].mel, ds2.clips[5].mel);

    // UCS labels required: every table clip has one, so this passes too.
    opts.require_ucs = true;
    prepare::prepare(&opts).unwrap();
}

#[test]
fn from_dir_fetch_writes_index_and_attribution() {
    // A fake unpacked minetest-data laid out like the package, holding two of the table's files.
    let tmp = tempfile::tempdir().unwrap();
    let pkg = corpus::package("minetest").unwrap();
    let table = corpus::parse_table(pkg.table, "minetest").unwrap();
    let root = tmp
        .path()
        .join("unpacked/minetest-data")
        .join(pkg.audio_root);
    for r in table.iter().take(2) {
        write_wav(&root.join(&r.path), 440.0, 0.2);
    }
    let doc = tmp
        .path()
        .join("unpacked/minetest-data/usr/share/doc/minetest-data");
    fs::create_dir_all(&doc).unwrap();
    fs::write(
        doc.join("copyright"),
        "Files: *.ogg\nCopyright: 2012 Someone\nLicense: CC-BY-SA-3.0\n",
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let opts = FetchOptions {
        cache: cache.clone(),
        from_dir: Some(tmp.path().join("unpacked")),
        ..Default::default()
    };
    let index = corpus::fetch(&opts).unwrap();
    assert_eq!(
        index.datasets.len(),
        1,
        "only the package present in --from-dir"
    );
    assert_eq!(index.datasets[0].clips, 2);
    assert_eq!(index.datasets[0].missing.len(), table.len() - 2);
    assert_eq!(corpus::CorpusIndex::load(&cache).unwrap(), index);
    let attr = fs::read_to_string(cache.join("ATTRIBUTION")).unwrap();
    assert!(
        attr.contains("minetest-data")
            && attr.contains("CC-BY-SA-3.0")
            && attr.contains(&table[0].path)
    );
}

#[test]
fn ucs_dir_and_csv_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let ucs = tmp.path().join("ucs");
    write_wav(&ucs.join("DOORWood_Creak Open_JD_Lib.wav"), 300.0, 0.2);
    write_wav(
        &ucs.join("sub/GLASBrk-Window_Smash_JD_Lib.wav"),
        3000.0,
        0.2,
    );
    let (info, clips) = corpus::ucs_dir_dataset("mylib", &ucs, "CC0").unwrap();
    assert_eq!(info.clips, 2);
    let cats: BTreeSet<_> = clips.iter().map(|c| c.ucs_catid.clone().unwrap()).collect();
    assert_eq!(
        cats,
        BTreeSet::from(["DOORWood".to_string(), "GLASBrk".to_string()])
    );
    write_wav(&ucs.join("creak.wav"), 300.0, 0.2);
    let e = corpus::ucs_dir_dataset("mylib", &ucs, "CC0").unwrap_err();
    assert!(format!("{e:#}").contains("creak.wav"), "{e:#}");

    let list = tmp.path().join("list.csv");
    write_wav(&tmp.path().join("a/x.wav"), 200.0, 0.2);
    fs::write(&list, "path,label\na/x.wav,DOORWood\na/y.wav,thing\n").unwrap();
    let (info, clips) = corpus::csv_dataset("list", &list, "CC-BY-4.0").unwrap();
    assert_eq!(info.missing, vec!["a/y.wav".to_string()]);
    assert!(!info.ucs_labels);
    assert_eq!(clips[0].ucs_catid.as_deref(), Some("DOORWood"));
    assert_eq!(clips[1].ucs_catid, None);
    assert_eq!(
        corpus::named_path("lib=/x/y.csv"),
        ("lib".to_string(), "/x/y.csv".into())
    );
    assert_eq!(corpus::named_path("/x/y.csv").0, "y");
}

fn clip(ds: &str, rel: &str, label: &str, cat: Option<&str>) -> corpus::Clip {
    corpus::Clip {
        dataset: ds.into(),
        path: format!("/nonexistent/{rel}").into(),
        rel_path: rel.into(),
        native_label: label.into(),
        ucs_catid: cat.map(str::to_string),
        licence: "x".into(),
        md5: String::new(),
    }
}

#[test]
fn label_errors() {
    let one: Vec<_> = (0..5)
        .map(|i| clip("d", &format!("a{i}.wav"), "a", Some("DOORWood")))
        .collect();
    let e = prepare::check_labels("d", &one.iter().collect::<Vec<_>>(), false, true).unwrap_err();
    assert!(format!("{e:#}").contains("only one class"), "{e:#}");
    let mixed = [
        clip("d", "a.wav", "a", Some("DOORWood")),
        clip("d", "b.wav", "b", None),
    ];
    prepare::check_labels("d", &mixed.iter().collect::<Vec<_>>(), false, true).unwrap();
    let e = prepare::check_labels("d", &mixed.iter().collect::<Vec<_>>(), true, true).unwrap_err();
    assert!(
        format!("{e:#}").contains("UCS labels are required") && format!("{e:#}").contains("b.wav"),
        "{e:#}"
    );
    assert!(prepare::check_labels("d", &[], false, true).is_err());
}

#[test]
fn one_class_dataset_and_empty_split_fail_prepare() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut index = corpus::CorpusIndex::default();
    // "one": a single class. "small": two classes of two clips each → empty val/test split.
    for (ds, labels) in [("one", vec!["a"; 4]), ("small", vec!["a", "a", "b", "b"])] {
        for (i, l) in labels.iter().enumerate() {
            let p = tmp.path().join(ds).join(format!("{l}{i}.wav"));
            write_wav(&p, 300.0 + i as f32 * 50.0, 0.2);
            let mut c = clip(ds, &format!("{l}{i}.wav"), l, None);
            c.path = p;
            index.clips.push(c);
        }
        index.datasets.push(corpus::DatasetInfo {
            name: ds.into(),
            source: "test".into(),
            version: String::new(),
            licences: vec![],
            root: tmp.path().join(ds),
            clips: labels.len(),
            ucs_labels: false,
            missing: vec![],
            unlabelled: 0,
            group: String::new(),
        });
    }
    index.save(&cache).unwrap();
    let mut opts = PrepareOptions::new(&cache);
    opts.progress = false;
    let e = format!("{:#}", prepare::prepare(&opts).unwrap_err());
    assert!(e.contains("one: only one class"), "{e}");
    assert!(
        e.contains("small") && e.contains("empty validation split"),
        "{e}"
    );
}

#[test]
fn split_is_stratified_proportional_and_deterministic() {
    // 12 labels with 1..=60 clips, shuffled input order.
    let mut labels = Vec::new();
    let mut keys = Vec::new();
    for (li, n) in [1usize, 2, 3, 4, 5, 7, 10, 13, 20, 31, 47, 60]
        .iter()
        .enumerate()
    {
        for i in 0..*n {
            labels.push(format!("label{li}"));
            keys.push(format!("label{li}/clip{i:03}.wav"));
        }
    }
    let l: Vec<&str> = labels.iter().map(String::as_str).collect();
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    let s = stratified_split(&l, &k, 7);
    assert_eq!(s, stratified_split(&l, &k, 7), "deterministic");
    assert_ne!(s, stratified_split(&l, &k, 8), "the seed matters");
    // Independent of the input order.
    let mut perm: Vec<usize> = (0..l.len()).collect();
    perm.reverse();
    let s_rev = stratified_split(
        &perm.iter().map(|&i| l[i]).collect::<Vec<_>>(),
        &perm.iter().map(|&i| k[i]).collect::<Vec<_>>(),
        7,
    );
    for (j, &i) in perm.iter().enumerate() {
        assert_eq!(s_rev[j], s[i]);
    }
    let mut per: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for (lab, sp) in l.iter().zip(&s) {
        per.entry(lab).or_default()[*sp as usize] += 1;
    }
    for (lab, c) in &per {
        let n: usize = c.iter().sum();
        if n < prepare::MIN_SPLIT_CLIPS {
            assert_eq!(c[1] + c[2], 0, "{lab}: small classes train only");
        } else {
            assert!(c.iter().all(|&x| x > 0), "{lab}: {c:?}");
            assert_eq!(c[1], c[2]);
            if n >= 20 {
                let f = c[0] as f64 / n as f64;
                assert!((0.75..=0.85).contains(&f), "{lab}: train fraction {f}");
            }
        }
    }
    // Large classes: ≈ 8:1:1 overall.
    let big: Vec<_> = per
        .iter()
        .filter(|(_, c)| c.iter().sum::<usize>() >= 10)
        .collect();
    let tot: [usize; 3] = big
        .iter()
        .fold([0; 3], |a, (_, c)| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
    let n = (tot[0] + tot[1] + tot[2]) as f64;
    assert!(
        (tot[0] as f64 / n - 0.8).abs() < 0.03 && (tot[1] as f64 / n - 0.1).abs() < 0.02,
        "{tot:?}"
    );
}

/// A chirp with bursts: enough time–frequency detail to tell recordings apart.
fn write_sound(path: &Path, seed: u32, gain: f32, rate: u32, pad_s: f32, secs: f32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let pad = (pad_s * rate as f32) as usize;
    for _ in 0..pad {
        w.write_sample(0i16).unwrap();
    }
    let n = (secs * rate as f32) as usize;
    for i in 0..n {
        let t = i as f32 / rate as f32;
        // Noise as a function of time, band-limited (random values 2000 times a second, joined
        // by straight lines): a copy at another sample rate, even 22.05 kHz, holds the same
        // noise, as a re-encoded recording does.
        let value = |k: u32| {
            let mut x = seed.wrapping_mul(2_654_435_761) ^ k.wrapping_mul(0x9E37_79B9);
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32 - 0.5
        };
        let (k, frac) = ((t * 2000.0) as u32, (t * 2000.0).fract());
        let noise = (value(k) * (1.0 - frac) + value(k + 1) * frac) * 0.3;
        let f = 200.0 + 150.0 * seed as f32 + 900.0 * t;
        let burst = if ((t * (3.0 + seed as f32)) as u32).is_multiple_of(2) {
            1.0
        } else {
            0.2
        };
        let v = ((t * f * std::f32::consts::TAU).sin() * 0.6 + noise) * burst * gain;
        w.write_sample((v * 20_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn dedup_finds_a_planted_duplicate_across_sources_and_of_a_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    // Source a: three different sounds. Source b: one of them again, 3 dB quieter, at another
    // sample rate and with silence in front; one new sound; and a copy of the reference.
    write_sound(&a.join("one.wav"), 1, 1.0, 22_050, 0.0, 2.0);
    write_sound(&a.join("two.wav"), 2, 1.0, 22_050, 0.0, 2.0);
    write_sound(&a.join("three.wav"), 3, 1.0, 22_050, 0.0, 2.5);
    write_sound(&b.join("one_again.wav"), 1, 0.7, 32_000, 0.3, 2.0);
    write_sound(&b.join("four.wav"), 4, 1.0, 22_050, 0.0, 2.0);
    let reference = tmp.path().join("fixture.wav");
    write_sound(&reference, 5, 1.0, 44_100, 0.0, 2.0);
    write_sound(&b.join("fixture_copy.wav"), 5, 0.9, 32_000, 0.0, 2.0);
    let csv = |dir: &Path, rows: &[&str]| {
        let p = dir.join("list.csv");
        fs::write(&p, format!("path,label\n{}\n", rows.join("\n"))).unwrap();
        p
    };
    let la = csv(&a, &["one.wav,x", "two.wav,y", "three.wav,x"]);
    let lb = csv(&b, &["one_again.wav,x", "four.wav,y", "fixture_copy.wav,y"]);
    let cache = tmp.path().join("cache");
    corpus::fetch(&FetchOptions {
        cache: cache.clone(),
        csvs: vec![("a".into(), la), ("b".into(), lb)],
        ..Default::default()
    })
    .unwrap();
    let mut opts = PrepareOptions::new(&cache);
    opts.progress = false;
    opts.trainable = false;
    prepare::prepare(&opts).unwrap();
    let (dups, n) = corpus::dedup::dedup_corpus(&cache, &[reference]).unwrap();
    assert_eq!(n, 6);
    let found: BTreeSet<(String, String)> = dups
        .iter()
        .map(|d| (d.rel_path.clone(), d.kept_rel_path.clone()))
        .collect();
    assert!(
        found.contains(&("one_again.wav".into(), "one.wav".into())),
        "{dups:?}"
    );
    assert!(
        dups.iter()
            .any(|d| d.rel_path == "fixture_copy.wav" && d.kept_dataset == "reference"),
        "{dups:?}"
    );
    assert_eq!(dups.len(), 2, "only the planted ones: {dups:?}");
    // Everything built on the corpus leaves them out.
    let ex = corpus::dedup::excluded(&cache).unwrap();
    assert!(ex.contains(&("b".to_string(), "one_again.wav".to_string())));
    assert!(!ex.contains(&("a".to_string(), "one.wav".to_string())));
}

#[test]
fn a_wheel_is_read_in_place_with_its_reviewed_copyright() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("tone.wav");
    write_wav(&wav, 440.0, 0.3);
    let wav = fs::read(&wav).unwrap();
    let dir = tmp.path().join("pypi/fake-sounds");
    fs::create_dir_all(&dir).unwrap();
    let mut w = zip::ZipWriter::new(
        fs::File::create(dir.join("fake_sounds-1.0-py3-none-any.whl")).unwrap(),
    );
    for name in [
        "fake_sounds/profiles/kbsim/press_1.wav",
        "fake_sounds/profiles/own/click.wav",
        "fake_sounds/profiles/own/unreviewed.wav",
    ] {
        w.start_file(name, zip::write::FileOptions::default())
            .unwrap();
        w.write_all(&wav).unwrap();
    }
    w.start_file(
        "fake_sounds/__init__.py",
        zip::write::FileOptions::default(),
    )
    .unwrap();
    w.finish().unwrap();
    let copyright = "Format: x\n\nFiles: *\nCopyright: The Makers\nLicense: GPL-3.0\n\nFiles: fake_sounds/profiles/kbsim/*\nCopyright: Copyright (c) Sampler\nLicense: MIT\n";
    let p = Package {
        name: "fake-sounds",
        dataset: "fakekeys",
        audio_root: "fake_sounds-1.0-py3-none-any.whl/fake_sounds/profiles",
        exclude: &[],
        table: "",
        licence: "GPL-3.0",
        group: "fakekeys",
        origin: Origin::PyPi {
            version: "1.0",
            sha256: "",
            copyright,
        },
    };
    let rows: Vec<corpus::TableRow> = ["kbsim/press_1.wav", "own/click.wav"]
        .iter()
        .map(|path| corpus::TableRow {
            path: path.to_string(),
            native_label: corpus::native_label(path),
            ucs_catid: "CMPTKey".into(),
        })
        .collect();
    let pfs = corpus::PackageFs::new(&dir, tmp.path().join("extracted"));
    let (info, clips, attr) =
        corpus::package_dataset(&p, &pfs, "1.0", &rows, Some(copyright)).unwrap();
    assert_eq!(info.source, "pypi:fake-sounds==1.0");
    assert_eq!((info.clips, info.unlabelled), (2, 1));
    assert!(info.missing.is_empty(), "{:?}", info.missing);
    let licence = |rel: &str| {
        clips
            .iter()
            .find(|c| c.rel_path == rel)
            .map(|c| c.licence.clone())
    };
    assert_eq!(licence("kbsim/press_1.wav").as_deref(), Some("MIT"));
    assert_eq!(licence("own/click.wav").as_deref(), Some("GPL-3.0"));
    assert!(
        attr.contains("PyPI package fake-sounds 1.0")
            && attr.contains("train/corpus/fakekeys.copyright")
            && attr.contains("Copyright (c) Sampler"),
        "{attr}"
    );
    // The members were extracted and decode.
    for c in &clips {
        let a = sfxtag_core::audio::decode_mono_44k(&c.path).unwrap();
        assert!(a.samples.len() > 10_000, "{}", c.path.display());
    }
}

#[test]
fn keyboardsounds_licences_follow_its_reviewed_copyright() {
    let p = corpus::package("keyboardsounds").unwrap();
    let Origin::PyPi { copyright, .. } = p.origin else {
        panic!("keyboardsounds is a PyPI package");
    };
    let stanzas = corpus::parse_dep5(copyright);
    let rows = corpus::parse_table(p.table, p.dataset).unwrap();
    assert!(rows.len() >= 100, "{} rows", rows.len());
    let mut by_licence = BTreeMap::<String, usize>::new();
    for r in &rows {
        let vpath = format!("{}/{}", p.audio_root, r.path);
        let lic = corpus::licence::for_package_path(&stanzas, &vpath)
            .unwrap_or_else(|| panic!("{vpath}: no stanza"))
            .license
            .clone();
        let kbsim = !(r.path.starts_with("logitech-") || r.path.starts_with("g502x-"));
        assert_eq!(lic, if kbsim { "MIT" } else { "GPL-3.0" }, "{vpath}");
        *by_licence.entry(lic).or_default() += 1;
        assert_eq!(r.ucs_catid, "CMPTKey");
    }
    assert_eq!(by_licence.len(), 2, "{by_licence:?}");
}
