//! Python wheels from PyPI: `pip download` of a pinned version, checked by its sha256.
//!
//! A wheel is a zip, so it is not unpacked: the package's audio root starts with the wheel's
//! file name and [`super::readers::PackageFs`] reads through it.

use super::log;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {python} -m pip (PyPI packages of the corpus are fetched with pip; install python3-pip, or use --from-dir with the wheel in a folder named after the package): {source}")]
    NoPip {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pip download {spec} failed ({status}); is PyPI reachable?")]
    Download { spec: String, status: String },
    #[error("pip download {spec} left no wheel {prefix}*.whl in {dir}")]
    Missing {
        spec: String,
        prefix: String,
        dir: PathBuf,
    },
    #[error(
        "{path}: sha256 {found}, expected {expected} for {spec}; delete the file to fetch it again"
    )]
    Checksum {
        path: PathBuf,
        spec: String,
        found: String,
        expected: String,
    },
}

/// The wheel of `name==version` in `dir`, downloaded with pip unless a wheel of that version is
/// already there; either way its sha256 must be `sha256`.
pub fn download_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    sha256: &str,
) -> Result<PathBuf, WheelError> {
    let spec = format!("{name}=={version}");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WheelError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let wheel = match find_wheel(dir, name, version).map_err(io(dir))? {
        Some(w) => {
            log(format!("{name}: using {}", w.display()));
            w
        }
        None => {
            log(format!("{name}: pip download {spec} …"));
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            let status = Command::new(&python)
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .arg("--dest")
                .arg(dir)
                .arg(&spec)
                .status()
                .map_err(|source| WheelError::NoPip {
                    python: python.clone(),
                    source,
                })?;
            if !status.success() {
                return Err(WheelError::Download {
                    spec,
                    status: status.to_string(),
                });
            }
            find_wheel(dir, name, version)
                .map_err(io(dir))?
                .ok_or_else(|| WheelError::Missing {
                    spec: spec.clone(),
                    prefix: wheel_prefix(name, version),
                    dir: dir.to_path_buf(),
                })?
        }
    };
    let found = fs::read(&wheel)
        .map(|bytes| sfxtag_core::manifest::sha256_hex(&bytes))
        .map_err(io(&wheel))?;
    if !found.eq_ignore_ascii_case(sha256) {
        return Err(WheelError::Checksum {
            path: wheel,
            spec,
            found,
            expected: sha256.to_string(),
        });
    }
    Ok(wheel)
}

/// A wheel's file name starts with the distribution name (`-`, `.` → `_`) and the version.
fn wheel_prefix(name: &str, version: &str) -> String {
    format!("{}-{version}-", name.replace(['-', '.'], "_"))
}

fn find_wheel(dir: &Path, name: &str, version: &str) -> std::io::Result<Option<PathBuf>> {
    let prefix = wheel_prefix(name, version).to_ascii_lowercase();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().to_ascii_lowercase();
        if n.starts_with(&prefix) && n.ends_with(".whl") {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wheel_already_there_is_checked_not_downloaded() {
        let dir = std::env::temp_dir().join(format!("sfxtag-wheel-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let wheel = dir.join("key_sounds-1.2-py3-none-any.whl");
        fs::write(&wheel, b"not really a zip").unwrap();
        // sha256 of "not really a zip", computed by sha256sum.
        let good = "d5bd64a5c43b6f8cc7f6c7897e954e58b89abfed62e851a47f842de714cca7d0";
        assert_eq!(
            download_wheel(&dir, "key-sounds", "1.2", &good.to_uppercase()).unwrap(),
            wheel
        );
        let err = download_wheel(&dir, "key-sounds", "1.2", &"0".repeat(64)).unwrap_err();
        assert!(matches!(err, WheelError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("delete the file"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
