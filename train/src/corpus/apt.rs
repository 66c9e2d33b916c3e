//! Debian packages: `apt-get download`, `dpkg -x`, and the package's copyright file.

use super::log;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `apt-get download` into `debs` unless a `.deb` of the package is already there.
pub fn download_deb(debs: &Path, pkg: &str) -> Result<PathBuf> {
    fs::create_dir_all(debs)?;
    if let Some(d) = find_deb(debs, pkg)? {
        log(format!("{pkg}: using {}", d.display()));
        return Ok(d);
    }
    log(format!("{pkg}: apt-get download …"));
    let t0 = std::time::Instant::now();
    let status = Command::new("apt-get")
        .arg("download")
        .arg(pkg)
        .current_dir(debs)
        .status()
        .context("cannot run apt-get (Debian/Ubuntu only; use --from-dir for unpacked folders)")?;
    if !status.success() {
        bail!(
            "apt-get download {pkg} failed ({status}); is the package in the configured archive?"
        );
    }
    let d = find_deb(debs, pkg)?
        .with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let mb = fs::metadata(&d).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    log(format!(
        "{pkg}: downloaded {mb:.0} MB in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(d)
}

fn find_deb(debs: &Path, pkg: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{pkg}_");
    let mut found = None;
    for e in fs::read_dir(debs)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with(&prefix) && n.ends_with(".deb") {
            found = Some(e.path());
        }
    }
    Ok(found)
}

pub fn deb_version(deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Version")
        .output()?;
    if !out.status.success() {
        bail!("dpkg-deb -f failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `dpkg -x deb dest`, skipped when a previous run finished (marker file).
pub fn unpack_deb(deb: &Path, dest: &Path) -> Result<()> {
    let marker = dest.join(".unpacked");
    if marker.exists() {
        return Ok(());
    }
    fs::create_dir_all(dest)?;
    let t0 = std::time::Instant::now();
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .status()
        .context("cannot run dpkg")?;
    if !status.success() {
        bail!(
            "dpkg -x {} {} failed ({status})",
            deb.display(),
            dest.display()
        );
    }
    fs::write(&marker, deb.display().to_string())?;
    log(format!(
        "{}: unpacked in {:.1} s",
        deb.display(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The package's `usr/share/doc/<package>/copyright`, if any.
pub fn find_copyright(unpacked: &Path, pkg: &str) -> Option<String> {
    let doc = unpacked.join("usr/share/doc");
    let direct = doc.join(pkg).join("copyright");
    if let Ok(t) = fs::read_to_string(&direct) {
        return Some(t);
    }
    // Some packages share another package's doc folder (a symlink that dpkg -x leaves dangling).
    let entries = fs::read_dir(&doc).ok()?;
    for e in entries.flatten() {
        if let Ok(t) = fs::read_to_string(e.path().join("copyright")) {
            return Some(t);
        }
    }
    None
}
