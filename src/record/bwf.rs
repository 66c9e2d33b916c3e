//! Broadcast WAV clips with the metadata that sound-library tools read: a `bext` chunk (EBU
//! Tech 3285: description, originator, reference, date, time, time reference) before the audio,
//! and an `iXML` chunk with the Soundminer `USER` fields after it (the way field recorders write
//! iXML: it is finished when the take is). Files are written with `bwavfile` under a temporary
//! name and renamed into place only when complete and synced, so a power cut or a kill never
//! leaves a half-written WAV under a final name.

use anyhow::{bail, Context, Result};
use bwavfile::{Bext, WaveFmt, WaveWriter};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prefix and suffix of clips being written (never a final name).
pub const PART_PREFIX: &str = ".sfxtag-";
pub const PART_SUFFIX: &str = ".wav.part";

/// Sample format of written files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// 16-bit integer PCM.
    Pcm16,
    /// 24-bit integer PCM.
    Pcm24,
    /// 32-bit float.
    Float32,
}

impl SampleFormat {
    pub fn wave_fmt(self, rate: u32, channels: usize) -> Result<WaveFmt> {
        let ch = u16::try_from(channels)
            .ok()
            .filter(|c| (1..=18).contains(c))
            .with_context(|| format!("{channels} channels cannot be written to a WAV file"))?;
        let bits: u16 = match self {
            SampleFormat::Pcm16 => 16,
            SampleFormat::Pcm24 => 24,
            SampleFormat::Float32 => 32,
        };
        let block = ch * bits / 8;
        let mut fmt = WaveFmt {
            tag: if self == SampleFormat::Float32 {
                bwavfile::WAVE_TAG_FLOAT
            } else {
                bwavfile::WAVE_TAG_PCM
            },
            channel_count: ch,
            sample_rate: rate,
            bytes_per_second: rate * block as u32,
            block_alignment: block,
            bits_per_sample: bits,
            extended_format: None,
        };
        if ch > 2 {
            // More than two channels needs WAVE_FORMAT_EXTENSIBLE with a channel mask.
            let mask = if ch >= 32 { u32::MAX } else { (1u32 << ch) - 1 };
            let mut ext = WaveFmt::new_pcm_multichannel(rate, bits, mask);
            if let (SampleFormat::Float32, Some(e)) = (self, ext.extended_format.as_mut()) {
                e.type_guid = bwavfile::WAVE_UUID_FLOAT;
            }
            fmt = ext;
        }
        Ok(fmt)
    }

    /// The format that keeps a decoded file's precision.
    pub fn keeping(bits: Option<u32>, float: bool) -> Self {
        match (float, bits) {
            (true, _) => SampleFormat::Float32,
            (false, Some(b)) if b <= 16 => SampleFormat::Pcm16,
            (false, Some(b)) if b <= 24 => SampleFormat::Pcm24,
            // 32-bit integer and lossy sources: float keeps everything they hold.
            _ => SampleFormat::Float32,
        }
    }
}

/// What a clip is tagged with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClipMeta {
    // bext
    pub description: String,
    pub originator: String,
    pub originator_reference: String,
    /// UTC wall-clock time of the clip's first sample.
    pub started: Option<SystemTime>,
    // iXML USER (Soundminer)
    pub catid: String,
    pub category: String,
    pub subcategory: String,
    pub fx_name: String,
    pub keywords: Vec<String>,
    pub notes: String,
    pub designer: String,
    pub library: String,
    pub location: String,
    pub track_title: String,
}

impl ClipMeta {
    pub fn category_full(&self) -> String {
        match (self.category.is_empty(), self.subcategory.is_empty()) {
            (false, false) => format!("{}-{}", self.category, self.subcategory),
            (false, true) => self.category.clone(),
            _ => String::new(),
        }
    }

    /// `(YYYY-MM-DD, HH:MM:SS, seconds since midnight)`, UTC.
    fn date_time(&self) -> (String, String, f64) {
        let Some(t) = self.started else {
            return (String::new(), String::new(), 0.0);
        };
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let dt = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let date = time::macros::format_description!("[year]-[month]-[day]");
        let clock = time::macros::format_description!("[hour]:[minute]:[second]");
        let since_midnight = (d.as_secs() % 86_400) as f64 + d.subsec_nanos() as f64 * 1e-9;
        (
            dt.format(&date).unwrap_or_default(),
            dt.format(&clock).unwrap_or_default(),
            since_midnight,
        )
    }

    pub fn bext(&self, rate: u32) -> Bext {
        let (date, clock, since_midnight) = self.date_time();
        Bext {
            description: ascii(&self.description, 256),
            originator: ascii(&self.originator, 32),
            originator_reference: ascii(&self.originator_reference, 32),
            origination_date: date,
            origination_time: clock,
            time_reference: (since_midnight * rate as f64).round() as u64,
            version: 1,
            umid: None,
            loudness_value: None,
            loudness_range: None,
            max_true_peak_level: None,
            max_momentary_loudness: None,
            max_short_term_loudness: None,
            coding_history: String::new(),
        }
    }

    /// The iXML document: `USER` holds the fields Soundminer, BaseHead and Soundly read.
    pub fn ixml(&self) -> String {
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BWFXML>\n<IXML_VERSION>2.10</IXML_VERSION>\n",
        );
        let tag = |x: &mut String, name: &str, value: &str| {
            x.push_str(&format!("<{name}>{}</{name}>\n", xml_escape(value)));
        };
        tag(&mut x, "PROJECT", &self.library);
        tag(&mut x, "NOTE", &self.description);
        x.push_str("<USER>\n");
        tag(&mut x, "CATID", &self.catid);
        tag(&mut x, "CATEGORY", &self.category);
        tag(&mut x, "SUBCATEGORY", &self.subcategory);
        tag(&mut x, "CATEGORYFULL", &self.category_full());
        tag(&mut x, "FXNAME", &self.fx_name);
        tag(&mut x, "TRACKTITLE", &self.track_title);
        tag(&mut x, "DESCRIPTION", &self.description);
        tag(&mut x, "KEYWORDS", &self.keywords.join(", "));
        tag(&mut x, "NOTES", &self.notes);
        tag(&mut x, "DESIGNER", &self.designer);
        tag(&mut x, "LIBRARY", &self.library);
        tag(&mut x, "LOCATION", &self.location);
        tag(&mut x, "EMBEDDER", "sfxtag");
        x.push_str("</USER>\n</BWFXML>\n");
        x
    }
}

fn ascii(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A clip being written under a temporary name.
pub struct ClipWriter {
    part: PathBuf,
    rate: u32,
    channels: usize,
    frames: u64,
    writer: Option<bwavfile::AudioFrameWriter<BufWriter<File>>>,
}

impl ClipWriter {
    /// Creates `<dir>/.sfxtag-<tag>.wav.part` with the format and a first `bext` (its
    /// description is filled in at [`ClipWriter::finish`]).
    pub fn create(
        dir: &Path,
        tag: &str,
        format: SampleFormat,
        rate: u32,
        channels: usize,
        meta: &ClipMeta,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the recording directory {}", dir.display()))?;
        let part = dir.join(format!("{PART_PREFIX}{tag}{PART_SUFFIX}"));
        let fmt = format.wave_fmt(rate, channels)?;
        let mut w = WaveWriter::create(&part, fmt)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot create {}", part.display()))?;
        w.write_broadcast_metadata(&meta.bext(rate))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot write to {}", part.display()))?;
        let writer = w
            .audio_frame_writer()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot write to {}", part.display()))?;
        Ok(Self {
            part,
            rate,
            channels: channels.max(1),
            frames: 0,
            writer: Some(writer),
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Appends interleaved samples (whole frames), clipped to [-1, 1].
    pub fn write(&mut self, interleaved: &[f32]) -> Result<()> {
        let w = self.writer.as_mut().context("clip already finished")?;
        let n = interleaved.len() / self.channels * self.channels;
        w.write_frames(&interleaved[..n])
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot write to {}", self.part.display()))?;
        self.frames += (n / self.channels) as u64;
        Ok(())
    }

    /// Closes the audio, appends the iXML, writes the final `bext`, syncs. Returns the part file
    /// (still under its temporary name: see [`publish`]).
    pub fn finish(mut self, meta: &ClipMeta) -> Result<PathBuf> {
        let w = self.writer.take().context("clip already finished")?;
        let mut wave = w
            .end()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot finish {}", self.part.display()))?;
        wave.write_ixml(meta.ixml().as_bytes())
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot write iXML to {}", self.part.display()))?;
        drop(wave); // flushes the BufWriter
        rewrite_bext(&self.part, &meta.bext(self.rate))?;
        Ok(self.part.clone())
    }
}

impl ClipWriter {
    /// Abandons the clip: its temporary file is removed, nothing is published.
    pub fn discard(mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let _ = w.end();
        }
        std::fs::remove_file(&self.part)
            .with_context(|| format!("cannot remove {}", self.part.display()))
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        // An unfinished clip keeps its temporary name: `salvage` recovers it at the next start.
        if let Some(w) = self.writer.take() {
            let _ = w.end();
        }
    }
}

/// Walks the RIFF chunks of a WAV file: `(id, offset of the chunk's data, size)`.
pub fn chunks(path: &Path) -> Result<Vec<([u8; 4], u64, u64)>> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 12];
    f.read_exact(&mut head)
        .with_context(|| format!("{} is too short for a WAV file", path.display()))?;
    if &head[..4] != b"RIFF" && &head[..4] != b"RF64" || &head[8..12] != b"WAVE" {
        bail!("{} is not a RIFF/WAVE file", path.display());
    }
    let mut out = Vec::new();
    let mut pos = 12u64;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 8];
        f.read_exact(&mut h)?;
        let id = [h[0], h[1], h[2], h[3]];
        let mut size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
        // An unfinished data chunk (size 0 or past the end) runs to the end of the file.
        if size > len - pos - 8 || (&id == b"data" && size == 0) {
            size = len - pos - 8;
        }
        out.push((id, pos + 8, size));
        pos += 8 + size + (size & 1);
    }
    Ok(out)
}

/// Overwrites the `bext` chunk's fixed fields in place (same size: the chunk was written at
/// create time with the same layout).
fn rewrite_bext(path: &Path, bext: &Bext) -> Result<()> {
    let (_, offset, size) = chunks(path)?
        .into_iter()
        .find(|c| &c.0 == b"bext")
        .with_context(|| format!("{} has no bext chunk", path.display()))?;
    let mut body = Vec::with_capacity(602);
    let field = |b: &mut Vec<u8>, s: &str, n: usize| {
        let mut v: Vec<u8> = s.bytes().take(n).collect();
        v.resize(n, 0);
        b.extend_from_slice(&v);
    };
    field(&mut body, &bext.description, 256);
    field(&mut body, &bext.originator, 32);
    field(&mut body, &bext.originator_reference, 32);
    field(&mut body, &bext.origination_date, 10);
    field(&mut body, &bext.origination_time, 8);
    body.extend_from_slice(&bext.time_reference.to_le_bytes());
    if (size as usize) < body.len() {
        bail!("{}: bext chunk too small", path.display());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&body)?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

/// Moves a finished part file to `dir/<name>.wav`, numbering the FX name on collision (the
/// caller's `name_for(n)` gives the name for attempt `n`, 1 first). Syncs the directory so the
/// rename survives a power cut. Returns the final path.
pub fn publish(part: &Path, dir: &Path, name_for: &dyn Fn(u32) -> String) -> Result<PathBuf> {
    for n in 1..10_000 {
        let target = dir.join(format!("{}.wav", name_for(n)));
        if target.exists() {
            continue;
        }
        // No-clobber where the filesystem has hard links; plain rename elsewhere (FAT/exFAT).
        match std::fs::hard_link(part, &target) {
            Ok(()) => {
                std::fs::remove_file(part).ok();
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => std::fs::rename(part, &target).with_context(|| {
                format!("cannot rename {} to {}", part.display(), target.display())
            })?,
        }
        sync_dir(dir);
        return Ok(target);
    }
    bail!("no free file name in {}", dir.display())
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Unfinished clips (`.sfxtag-*.wav.part`) left by a crash or power cut, oldest first.
pub fn leftover_parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX)).then(|| {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(UNIX_EPOCH);
                (t, e.path())
            })
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Makes an unfinished part file a valid WAV again: the RIFF and data sizes are set from what
/// reached the disk (whole frames). Returns the number of audio frames recovered.
pub fn repair_part(path: &Path) -> Result<u64> {
    let list = chunks(path)?;
    let (_, fmt_off, _) = list
        .iter()
        .find(|c| &c.0 == b"fmt ")
        .copied()
        .with_context(|| format!("{} has no fmt chunk", path.display()))?;
    let (_, data_off, data_size) = list
        .iter()
        .find(|c| &c.0 == b"data")
        .copied()
        .with_context(|| format!("{} has no audio", path.display()))?;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.seek(SeekFrom::Start(fmt_off + 12))?;
    let mut ba = [0u8; 2];
    f.read_exact(&mut ba)?;
    let block = u16::from_le_bytes(ba).max(1) as u64;
    let size = data_size / block * block;
    if size > u32::MAX as u64 - 64 {
        bail!("{} is too large to repair as a RIFF WAV", path.display());
    }
    // Drop whatever follows the audio (a torn iXML), keep whole frames.
    f.set_len(data_off + size)?;
    f.seek(SeekFrom::Start(data_off - 4))?;
    f.write_all(&(size as u32).to_le_bytes())?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(b"RIFF")?;
    f.write_all(&((data_off + size - 8) as u32).to_le_bytes())?;
    f.sync_all()?;
    Ok(size / block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ClipMeta {
        ClipMeta {
            description: "DOORS-WOOD 0.91 <knock> & more".into(),
            originator: "sfxtag".into(),
            originator_reference: "SFXTAG-test-1".into(),
            started: Some(UNIX_EPOCH + Duration::from_secs(86_400 * 20_000 + 3_723)),
            catid: "DOORWood".into(),
            category: "DOORS".into(),
            subcategory: "WOOD".into(),
            fx_name: "Doors Wood".into(),
            keywords: vec!["door".into(), "wood".into()],
            notes: "scores".into(),
            designer: "Ana".into(),
            library: "Field 2026".into(),
            location: "Garden".into(),
            track_title: "Doors Wood".into(),
        }
    }

    #[test]
    fn written_clip_reads_back_with_bext_ixml_and_exact_samples() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta();
        let mut w =
            ClipWriter::create(dir.path(), "t", SampleFormat::Pcm24, 48_000, 2, &m).unwrap();
        let samples: Vec<f32> = (0..960).map(|i| (i as f32 / 960.0) - 0.5).collect();
        w.write(&samples).unwrap();
        w.write(&samples[..2]).unwrap();
        assert_eq!(w.frames(), 481);
        let part = w.finish(&m).unwrap();
        assert!(part
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(PART_SUFFIX));
        let out = publish(&part, dir.path(), &|n| format!("x{n}")).unwrap();
        assert_eq!(out, dir.path().join("x1.wav"));
        assert!(!part.exists());

        let mut r = bwavfile::WaveReader::open(&out).unwrap();
        let fmt = r.format().unwrap();
        assert_eq!(
            (fmt.sample_rate, fmt.channel_count, fmt.bits_per_sample),
            (48_000, 2, 24)
        );
        assert_eq!(r.frame_length().unwrap(), 481);
        let b = r.broadcast_extension().unwrap().unwrap();
        assert_eq!(b.description, "DOORS-WOOD 0.91 <knock> & more");
        assert_eq!(b.originator_reference, "SFXTAG-test-1");
        assert_eq!(b.origination_time, "01:02:03");
        assert_eq!(b.time_reference, 3_723 * 48_000);
        let mut ixml = Vec::new();
        r.read_ixml(&mut ixml).unwrap();
        let x = String::from_utf8(ixml).unwrap();
        assert!(x.contains("<CATID>DOORWood</CATID>"), "{x}");
        assert!(x.contains("<CATEGORYFULL>DOORS-WOOD</CATEGORYFULL>"), "{x}");
        assert!(
            x.contains("<NOTE>DOORS-WOOD 0.91 &lt;knock&gt; &amp; more</NOTE>"),
            "{x}"
        );
        assert!(x.contains("<KEYWORDS>door, wood</KEYWORDS>"), "{x}");
        // 24-bit round trip of the first frames.
        let mut frames = r.audio_frame_reader().unwrap();
        let mut buf = vec![0f32; 4];
        assert_eq!(frames.read_frames(&mut buf).unwrap(), 2);
        for (a, b) in buf.iter().zip(&samples) {
            assert!((a - b).abs() < 2.5e-7, "{a} vs {b}");
        }
        // A second clip with the same name is numbered.
        let mut w2 =
            ClipWriter::create(dir.path(), "u", SampleFormat::Float32, 8_000, 1, &m).unwrap();
        w2.write(&[0.25; 10]).unwrap();
        let p2 = w2.finish(&m).unwrap();
        let n1 = |n: u32| {
            if n == 1 {
                "x1".to_string()
            } else {
                format!("x{n}")
            }
        };
        assert_eq!(
            publish(&p2, dir.path(), &n1).unwrap(),
            dir.path().join("x2.wav")
        );
    }

    #[test]
    fn an_unfinished_part_is_repaired_to_whole_frames() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta();
        let mut w =
            ClipWriter::create(dir.path(), "k", SampleFormat::Pcm16, 44_100, 2, &m).unwrap();
        w.write(&vec![0.1; 2 * 5000]).unwrap();
        let part = w.part_path().to_path_buf();
        // Simulate a crash: the BufWriter is flushed by the drop but no sizes are written...
        std::mem::forget(w);
        // ...and a torn last frame.
        let mut f = OpenOptions::new().append(true).open(&part).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        assert_eq!(leftover_parts(dir.path()), vec![part.clone()]);
        let frames = repair_part(&part).unwrap();
        assert!(frames <= 5000 && frames > 0, "{frames}");
        let r = bwavfile::WaveReader::open(&part).unwrap();
        let mut r = r;
        assert_eq!(r.frame_length().unwrap(), frames);
    }

    #[test]
    fn formats_and_text_fields_are_safe() {
        assert_eq!(SampleFormat::keeping(Some(16), false), SampleFormat::Pcm16);
        assert_eq!(SampleFormat::keeping(Some(24), false), SampleFormat::Pcm24);
        assert_eq!(SampleFormat::keeping(None, false), SampleFormat::Float32);
        assert_eq!(SampleFormat::keeping(Some(32), true), SampleFormat::Float32);
        let f = SampleFormat::Pcm16.wave_fmt(48_000, 4).unwrap();
        assert_eq!((f.channel_count, f.block_alignment), (4, 8));
        assert!(SampleFormat::Pcm16.wave_fmt(48_000, 0).is_err());
        assert_eq!(ascii("Café ü", 4), "Caf?");
        let mut m = meta();
        m.keywords = vec!["a\u{1}b".into()];
        assert!(m.ixml().contains("<KEYWORDS>ab</KEYWORDS>"));
    }
}
