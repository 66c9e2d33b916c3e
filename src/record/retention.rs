//! Disk safety: keep the recording directory under a size bound by deleting the oldest clips,
//! but never a category's last `keep_per_category` clips. The choice is pure
//! ([`choose_deletions`]); [`enforce`] applies it to a directory.

use sfxtag_core::ucs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Bound on the clips' total size; 0 disables deletion.
    pub max_bytes: u64,
    /// Clips of each category that are never deleted.
    pub keep_per_category: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredClip {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: SystemTime,
    /// The file name's first UCS block (CatID), or "" when it is not a UCS name.
    pub category: String,
}

/// Indices of the clips to delete, oldest first.
pub fn choose_deletions(clips: &[StoredClip], policy: RetentionPolicy) -> Vec<usize> {
    if policy.max_bytes == 0 {
        return Vec::new();
    }
    let mut total: u64 = clips.iter().map(|c| c.bytes).sum();
    let mut order: Vec<usize> = (0..clips.len()).collect();
    order.sort_by(|&a, &b| {
        clips[a]
            .modified
            .cmp(&clips[b].modified)
            .then_with(|| clips[a].path.cmp(&clips[b].path))
    });
    let mut left: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for c in clips {
        *left.entry(c.category.as_str()).or_default() += 1;
    }
    let mut out = Vec::new();
    for i in order {
        if total <= policy.max_bytes {
            break;
        }
        let c = &clips[i];
        let n = left.get_mut(c.category.as_str()).expect("counted above");
        if *n <= policy.keep_per_category {
            continue;
        }
        *n -= 1;
        total -= c.bytes;
        out.push(i);
    }
    out
}

/// The finished clips (`*.wav`) in `dir`.
pub fn scan(dir: &Path) -> Vec<StoredClip> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let is_wav = path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("wav"));
            let meta = e.metadata().ok()?;
            if !is_wav || !meta.is_file() {
                return None;
            }
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            let category = ucs::parse_name(&stem)
                .map(|n| n.cat_id.cat_id.to_string())
                .unwrap_or_default();
            Some(StoredClip {
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                category,
                path,
            })
        })
        .collect()
}

/// Deletes what the policy chooses; returns the deleted paths.
pub fn enforce(dir: &Path, policy: RetentionPolicy) -> Vec<PathBuf> {
    let clips = scan(dir);
    let mut deleted = Vec::new();
    for i in choose_deletions(&clips, policy) {
        match std::fs::remove_file(&clips[i].path) {
            Ok(()) => deleted.push(clips[i].path.clone()),
            Err(e) => log::warn!("retention: cannot delete {}: {e}", clips[i].path.display()),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn clip(name: &str, cat: &str, bytes: u64, age: u64) -> StoredClip {
        StoredClip {
            path: name.into(),
            bytes,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age),
            category: cat.into(),
        }
    }

    #[test]
    fn deletes_oldest_first_until_under_the_bound_keeping_n_per_category() {
        let clips = vec![
            clip("a", "DOGBark", 100, 50),
            clip("b", "DOORWood", 100, 40),
            clip("c", "DOGBark", 100, 30),
            clip("d", "DOGBark", 100, 20),
            clip("e", "DOORWood", 100, 10),
        ];
        let p = RetentionPolicy {
            max_bytes: 250,
            keep_per_category: 1,
        };
        // Oldest: a (DOGBark, 3 left → ok), b (DOORWood 2 → ok), c (DOGBark 2 → ok): 200 left.
        assert_eq!(choose_deletions(&clips, p), vec![0, 1, 2]);
        let keep2 = RetentionPolicy {
            max_bytes: 250,
            keep_per_category: 2,
        };
        // DOORWood has only 2: never touched; DOGBark can lose one.
        assert_eq!(choose_deletions(&clips, keep2), vec![0]);
        let off = RetentionPolicy {
            max_bytes: 0,
            keep_per_category: 0,
        };
        assert!(choose_deletions(&clips, off).is_empty());
        let roomy = RetentionPolicy {
            max_bytes: 10_000,
            keep_per_category: 0,
        };
        assert!(choose_deletions(&clips, roomy).is_empty());
    }

    #[test]
    fn enforce_deletes_files_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        for (i, n) in ["BIRDSong_A_X_Y", "BIRDSong_B_X_Y", "DOORWood_C_X_Y"]
            .iter()
            .enumerate()
        {
            let p = dir.path().join(format!("{n}.wav"));
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(100 - i as u64 * 10);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(dir.path().join(".sfxtag-x.wav.part"), vec![0u8; 1000]).unwrap();
        let scanned = scan(dir.path());
        assert_eq!(scanned.len(), 3, "part files are not clips");
        let deleted = enforce(
            dir.path(),
            RetentionPolicy {
                max_bytes: 200,
                keep_per_category: 1,
            },
        );
        assert_eq!(deleted, vec![dir.path().join("BIRDSong_A_X_Y.wav")]);
        assert!(dir.path().join("DOORWood_C_X_Y.wav").exists());
    }
}
