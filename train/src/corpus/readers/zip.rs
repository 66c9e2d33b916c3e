//! Zip archives under their game names (`.zip`, Quake-style `.pk3`, Warzone 2100 `.wz`). Only
//! the members asked for are inflated; the rest of a large archive (textures, maps) is skipped.

use super::ArchiveError;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub const MAGIC: &[u8; 4] = b"PK\x03\x04";

/// An open zip archive.
pub struct ZipReader {
    archive: zip::ZipArchive<BufReader<File>>,
}

fn err(e: zip::result::ZipError) -> ArchiveError {
    ArchiveError::Corrupt(format!("zip: {e}"))
}

impl ZipReader {
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let f = File::open(path).map_err(ArchiveError::Io)?;
        Ok(Self {
            archive: zip::ZipArchive::new(BufReader::new(f)).map_err(err)?,
        })
    }

    /// Member file names (folders left out). Names that would leave the extraction folder
    /// (absolute, `..`) are left out too: real game archives carry a few (`../CREDITS`), and
    /// they are never audio a table names.
    pub fn names(&mut self) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        for i in 0..self.archive.len() {
            let e = self.archive.by_index_raw(i).map_err(err)?;
            if e.is_dir() || e.enclosed_name().is_none() {
                continue;
            }
            out.push(e.name().replace('\\', "/"));
        }
        Ok(out)
    }

    /// One member's bytes (a name that would leave the extraction folder is refused).
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut e = self.archive.by_name(name).map_err(err)?;
        if e.enclosed_name().is_none() {
            return Err(ArchiveError::Corrupt(format!(
                "zip: unsafe member name {name:?}"
            )));
        }
        let mut v = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut v).map_err(ArchiveError::Io)?;
        Ok(v)
    }
}

#[cfg(test)]
pub fn write(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        w.start_file(*name, zip::write::FileOptions::default())
            .expect("in-memory zip");
        w.write_all(bytes).expect("in-memory zip");
    }
    w.finish().expect("in-memory zip").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_reads_members() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pak0.pk3");
        std::fs::write(
            &p,
            write(&[
                ("sound/weapons/rocket1.wav", b"RIFFr"),
                ("textures/x.tga", b"tga"),
                ("../CREDITS", b"outside"),
            ]),
        )
        .unwrap();
        let mut z = ZipReader::open(&p).unwrap();
        let mut names = z.names().unwrap();
        names.sort();
        assert_eq!(names, ["sound/weapons/rocket1.wav", "textures/x.tga"]);
        assert_eq!(z.read("sound/weapons/rocket1.wav").unwrap(), b"RIFFr");
        assert!(z.read("nope.wav").is_err());
        assert!(z.read("../CREDITS").is_err());
    }
}
