//! Reading audio out of the archives that game packages ship it in, so that a reviewed table can
//! name a clip inside an archive as if the archive were a folder:
//! `baseoa/pak0.pk3/sound/weapons/rocket1.wav`, `Sound.ocg/Animals.ocg/Bat.ocg/Chirp.wav`.
//!
//! One module per container kind: [`zip`] (`.zip`, `.pk3`, `.wz`, Python wheels `.whl`), [`c4group`] (OpenClonk
//! `.ocg`/`.ocf`/`.ocd`/`.ocs`), [`rcc`] (Qt resources). [`PackageFs`] walks an unpacked
//! package through them and extracts the members a dataset uses into the cache (once).

pub mod c4group;
pub mod rcc;
pub mod zip;

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Extensions of audio files (lower case).
pub const AUDIO_EXTS: &[&str] = &["ogg", "wav", "flac", "mp3", "oga"];

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    At {
        path: PathBuf,
        #[source]
        source: Box<ArchiveError>,
    },
    #[error("{0}: no such file in the package (or in the archive holding it)")]
    NotFound(String),
}

impl ArchiveError {
    fn at(self, path: &Path) -> Self {
        ArchiveError::At {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}

/// The container kinds read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    C4Group,
    Rcc,
}

impl ArchiveKind {
    /// The kind a file name says (the contents are checked when it is opened).
    pub fn from_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "zip" | "pk3" | "wz" | "whl" => Some(Self::Zip),
            "ocg" | "ocf" | "ocd" | "ocs" => Some(Self::C4Group),
            "rcc" => Some(Self::Rcc),
            _ => None,
        }
    }
}

/// Whether a file name has an audio extension.
pub fn is_audio_name(name: &str) -> bool {
    name.rsplit_once('.')
        .map(|(_, e)| AUDIO_EXTS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// An archive's members held in one buffer (C4Group and rcc are read whole).
pub struct Members {
    bytes: Vec<u8>,
    index: BTreeMap<String, Range<usize>>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("files", &self.index.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Members {
    pub fn new(bytes: Vec<u8>, entries: Vec<(String, Range<usize>)>) -> Self {
        Self {
            bytes,
            index: entries.into_iter().collect(),
        }
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.index.get(name).map(|r| &self.bytes[r.clone()])
    }
}

/// An opened archive of any kind.
enum Opened {
    Zip(zip::ZipReader),
    Whole(Members),
}

impl Opened {
    fn open(path: &Path, kind: ArchiveKind) -> Result<Self, ArchiveError> {
        let r = match kind {
            ArchiveKind::Zip => zip::ZipReader::open(path).map(Opened::Zip),
            ArchiveKind::C4Group => fs::read(path)
                .map_err(ArchiveError::Io)
                .and_then(|b| c4group::read(&b))
                .map(Opened::Whole),
            ArchiveKind::Rcc => fs::read(path)
                .map_err(ArchiveError::Io)
                .and_then(|b| rcc::read(&b))
                .map(Opened::Whole),
        };
        r.map_err(|e| e.at(path))
    }

    fn names(&mut self) -> Result<Vec<String>, ArchiveError> {
        match self {
            Opened::Zip(z) => z.names(),
            Opened::Whole(m) => Ok(m.names().map(str::to_string).collect()),
        }
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        match self {
            Opened::Zip(z) => z.read(name),
            Opened::Whole(m) => m
                .get(name)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ArchiveError::NotFound(name.to_string())),
        }
    }
}

/// An unpacked package seen through its archives. Paths are `/`-separated and relative to the
/// package root; a path component that names an archive file continues inside that archive.
/// Members are extracted under `extract_root/<archive path>/<member>`.
pub struct PackageFs {
    pub root: PathBuf,
    pub extract_root: PathBuf,
}

/// Where a package path leads: a real file, or a member of the archive file at `archive`.
#[derive(Debug, PartialEq)]
enum Location {
    File(PathBuf),
    Dir(PathBuf),
    Member {
        archive_rel: String,
        kind: ArchiveKind,
        inner: String,
    },
}

impl PackageFs {
    pub fn new(root: impl Into<PathBuf>, extract_root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            extract_root: extract_root.into(),
        }
    }

    fn locate(&self, rel: &str) -> Location {
        let mut real = self.root.clone();
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            real.push(part);
            // An archive that is gone (removed after extraction) still names its members.
            let gone_archive = i + 1 < parts.len() && !real.exists();
            if real.is_file() || gone_archive {
                if let Some(kind) = ArchiveKind::from_name(part) {
                    return Location::Member {
                        archive_rel: parts[..=i].join("/"),
                        kind,
                        inner: parts[i + 1..].join("/"),
                    };
                }
                return Location::File(real);
            }
        }
        if real.is_dir() {
            Location::Dir(real)
        } else {
            Location::File(real)
        }
    }

    /// Every audio file under `under` (a folder or an archive, or a folder inside an archive),
    /// as paths relative to `under`, sorted. Archives found in folders are listed through.
    pub fn list_audio(&self, under: &str) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        match self.locate(under) {
            Location::Member {
                archive_rel,
                kind,
                inner,
            } => {
                let path = self.root.join(&archive_rel);
                let mut a = Opened::open(&path, kind)?;
                let prefix = if inner.is_empty() {
                    String::new()
                } else {
                    format!("{inner}/")
                };
                for n in a.names().map_err(|e| e.at(&path))? {
                    if let Some(rest) = n.strip_prefix(&prefix) {
                        if is_audio_name(rest) {
                            out.push(rest.to_string());
                        }
                    }
                }
            }
            Location::Dir(dir) => self.walk(&dir, "", &mut out)?,
            Location::File(f) => {
                return Err(ArchiveError::NotFound(f.display().to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn walk(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), ArchiveError> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| ArchiveError::Io(e).at(dir))?
            .collect::<Result<_, _>>()
            .map_err(|e| ArchiveError::Io(e).at(dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            let rel = format!("{prefix}{name}");
            if p.is_dir() {
                self.walk(&p, &format!("{rel}/"), out)?;
            } else if is_audio_name(&name) {
                out.push(rel);
            } else if let Some(kind) = ArchiveKind::from_name(&name) {
                let mut a = Opened::open(&p, kind)?;
                for n in a.names().map_err(|e| e.at(&p))? {
                    if is_audio_name(&n) {
                        out.push(format!("{rel}/{n}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The real file for each package path, extracting archive members (once: an extracted
    /// file is reused). Errors are per path, so one bad member does not stop the rest.
    pub fn materialize(&self, paths: &[String]) -> Vec<Result<PathBuf, ArchiveError>> {
        let mut out: Vec<Option<Result<PathBuf, ArchiveError>>> =
            paths.iter().map(|_| None).collect();
        // Group members by archive so each archive is opened once.
        let mut by_archive: BTreeMap<(String, u8), Vec<(usize, String)>> = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            match self.locate(p) {
                Location::File(f) if f.is_file() => out[i] = Some(Ok(f)),
                Location::File(_) | Location::Dir(_) => {
                    out[i] = Some(Err(ArchiveError::NotFound(p.clone())))
                }
                Location::Member {
                    archive_rel,
                    kind,
                    inner,
                } => {
                    let dest = self.extract_root.join(&archive_rel).join(&inner);
                    if dest.is_file() {
                        out[i] = Some(Ok(dest));
                    } else {
                        by_archive
                            .entry((archive_rel, kind as u8))
                            .or_default()
                            .push((i, inner));
                    }
                }
            }
        }
        for ((archive_rel, k), wanted) in by_archive {
            let kind = [ArchiveKind::Zip, ArchiveKind::C4Group, ArchiveKind::Rcc][k as usize];
            let path = self.root.join(&archive_rel);
            let mut a = match Opened::open(&path, kind) {
                Ok(a) => a,
                Err(e) => {
                    let msg = e.to_string();
                    for (i, _) in wanted {
                        out[i] = Some(Err(ArchiveError::Corrupt(msg.clone())));
                    }
                    continue;
                }
            };
            for (i, inner) in wanted {
                let dest = self.extract_root.join(&archive_rel).join(&inner);
                let r = a.read(&inner).and_then(|bytes| {
                    write_atomically(&dest, &bytes).map_err(ArchiveError::Io)?;
                    Ok(dest)
                });
                out[i] = Some(r.map_err(|e| e.at(&path)));
            }
        }
        out.into_iter()
            .map(|r| r.expect("every path resolved"))
            .collect()
    }
}

/// Writes through a temporary name, so an interrupted extraction never leaves a truncated file
/// that a later run would take for complete.
fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = dest.with_extension("part");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package with a plain file, a zip, a packed C4Group and a Qt resource file.
    fn fake_package(dir: &Path) -> PackageFs {
        let root = dir.join("pkg");
        let games = root.join("usr/share/games/x");
        fs::create_dir_all(games.join("sounds")).unwrap();
        fs::write(games.join("sounds/plain.wav"), b"RIFFplain").unwrap();
        fs::write(games.join("sounds/readme.txt"), b"text").unwrap();
        fs::write(
            games.join("pak0.pk3"),
            zip::write(&[("sound/rocket.wav", b"RIFFrocket"), ("tex/a.tga", b"tga")]),
        )
        .unwrap();
        fs::write(
            games.join("Sound.ocg"),
            c4group::write(&[
                ("Animals.ocg/Moo.ogg", b"OggSmoo"),
                ("UI.ocg/Click.wav", b"RIFFc"),
            ]),
        )
        .unwrap();
        fs::write(
            games.join("farm.rcc"),
            rcc::write(&[("res/cow.ogg", b"OggScow"), ("res/Main.qml", b"qml")]),
        )
        .unwrap();
        PackageFs::new(root, dir.join("extracted"))
    }

    #[test]
    fn lists_audio_through_every_kind_of_archive() {
        let dir = tempfile::tempdir().unwrap();
        let fs_ = fake_package(dir.path());
        assert_eq!(
            fs_.list_audio("usr/share/games/x").unwrap(),
            [
                "Sound.ocg/Animals.ocg/Moo.ogg",
                "Sound.ocg/UI.ocg/Click.wav",
                "farm.rcc/res/cow.ogg",
                "pak0.pk3/sound/rocket.wav",
                "sounds/plain.wav",
            ]
        );
        // A root inside an archive.
        assert_eq!(
            fs_.list_audio("usr/share/games/x/pak0.pk3/sound").unwrap(),
            ["rocket.wav"]
        );
        assert_eq!(
            fs_.list_audio("usr/share/games/x/Sound.ocg/Animals.ocg")
                .unwrap(),
            ["Moo.ogg"]
        );
    }

    #[test]
    fn materializes_members_once_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let fs_ = fake_package(dir.path());
        let base = "usr/share/games/x";
        let paths: Vec<String> = [
            "sounds/plain.wav",
            "pak0.pk3/sound/rocket.wav",
            "Sound.ocg/Animals.ocg/Moo.ogg",
            "farm.rcc/res/cow.ogg",
            "pak0.pk3/sound/missing.wav",
            "sounds/missing.wav",
        ]
        .iter()
        .map(|p| format!("{base}/{p}"))
        .collect();
        let r = fs_.materialize(&paths);
        let bytes = |i: usize| fs::read(r[i].as_ref().unwrap()).unwrap();
        assert_eq!(bytes(0), b"RIFFplain");
        assert_eq!(bytes(1), b"RIFFrocket");
        assert_eq!(bytes(2), b"OggSmoo");
        assert_eq!(bytes(3), b"OggScow");
        assert!(r[1].as_ref().unwrap().starts_with(&fs_.extract_root));
        assert!(r[4].is_err() && r[5].is_err());
        // Second run: extracted files are reused even when the archive is gone.
        fs::remove_file(fs_.root.join(base).join("pak0.pk3")).unwrap();
        let r2 = fs_.materialize(&paths[1..2]);
        assert_eq!(r2[0].as_ref().unwrap(), r[1].as_ref().unwrap());
    }

    #[test]
    fn a_corrupt_archive_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let fs_ = fake_package(dir.path());
        fs::write(
            fs_.root.join("usr/share/games/x/pak0.pk3"),
            b"PK\x03\x04 broken",
        )
        .unwrap();
        let err = fs_.list_audio("usr/share/games/x").unwrap_err().to_string();
        assert!(err.contains("pak0.pk3"), "{err}");
        let r = fs_.materialize(&["usr/share/games/x/pak0.pk3/sound/rocket.wav".to_string()]);
        assert!(r[0].as_ref().unwrap_err().to_string().contains("pak0.pk3"));
    }
}
