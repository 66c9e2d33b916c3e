//! OpenClonk's C4Group archives (`.ocg`, `.ocf`, `.ocd`, `.ocs`): a gzip stream whose magic
//! bytes are changed to `1e 8c`, holding a 204-byte header (scrambled: XOR 237, then bytes `i`
//! and `i+2` of every triple swapped), a table of 316-byte entry records and the entries' data.
//! An entry flagged as a child group holds another group, stored unscrambled-gzip-free inside
//! its parent; members are listed with their group path (`Animals.ocg/Bat.ocg/Chirp.wav`).

use super::{ArchiveError, Members};
use flate2::read::GzDecoder;
use std::io::Read;

/// The first two bytes of a packed group (a gzip header with its magic changed).
pub const MAGIC: [u8; 2] = [0x1e, 0x8c];
const HEADER_LEN: usize = 204;
const ENTRY_LEN: usize = 316;
const ID: &[u8] = b"RedWolf Design GrpFolder";
/// Nesting deeper than this is taken for a corrupt (or hostile) archive.
const MAX_DEPTH: usize = 16;

/// Undoes the header scrambling (its own inverse: XOR then the triple swap).
fn unscramble(header: &mut [u8]) {
    for b in header.iter_mut() {
        *b ^= 237;
    }
    let mut i = 0;
    while i + 2 < header.len() {
        header.swap(i, i + 2);
        i += 3;
    }
}

fn le_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decompresses a packed group (or returns an unpacked one as it is).
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    if bytes.len() < 2 || bytes[..2] != MAGIC {
        return Ok(bytes.to_vec());
    }
    let mut fixed = Vec::with_capacity(bytes.len());
    fixed.extend_from_slice(&[0x1f, 0x8b]);
    fixed.extend_from_slice(&bytes[2..]);
    let mut out = Vec::new();
    GzDecoder::new(&fixed[..])
        .read_to_end(&mut out)
        .map_err(|e| ArchiveError::Corrupt(format!("C4Group: gzip stream: {e}")))?;
    Ok(out)
}

/// Reads every member of a C4Group (child groups flattened into paths) as byte ranges of one
/// decompressed buffer.
pub fn read(bytes: &[u8]) -> Result<Members, ArchiveError> {
    let data = inflate(bytes)?;
    let mut entries = Vec::new();
    walk(&data, 0, data.len(), "", 0, &mut entries)?;
    Ok(Members::new(data, entries))
}

fn walk(
    data: &[u8],
    start: usize,
    end: usize,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, std::ops::Range<usize>)>,
) -> Result<(), ArchiveError> {
    let corrupt = |what: &str| ArchiveError::Corrupt(format!("C4Group {prefix:?}: {what}"));
    if depth > MAX_DEPTH {
        return Err(corrupt("groups nested too deep"));
    }
    if end - start < HEADER_LEN {
        return Err(corrupt("shorter than its header"));
    }
    let mut header = data[start..start + HEADER_LEN].to_vec();
    unscramble(&mut header);
    if !header.starts_with(ID) {
        return Err(corrupt("not a C4Group (bad header id)"));
    }
    let n = le_i32(&header, 36);
    let n = usize::try_from(n).map_err(|_| corrupt("negative entry count"))?;
    let table = start + HEADER_LEN;
    let base = n
        .checked_mul(ENTRY_LEN)
        .and_then(|t| t.checked_add(table))
        .filter(|&b| b <= end)
        .ok_or_else(|| corrupt("entry table runs past the end"))?;
    for i in 0..n {
        let e = &data[table + i * ENTRY_LEN..table + (i + 1) * ENTRY_LEN];
        let name_len = e[..260].iter().position(|&b| b == 0).unwrap_or(260);
        // Names are Latin-1 (Windows-1252 in practice); map bytes to chars one to one.
        let name: String = e[..name_len].iter().map(|&b| b as char).collect();
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name == "." {
            return Err(corrupt(&format!("unsafe member name {name:?}")));
        }
        let child = le_i32(e, 264) != 0;
        let size = usize::try_from(le_i32(e, 268)).map_err(|_| corrupt("negative size"))?;
        let offset = usize::try_from(le_i32(e, 276)).map_err(|_| corrupt("negative offset"))?;
        let from = base
            .checked_add(offset)
            .ok_or_else(|| corrupt("offset overflow"))?;
        let to = from
            .checked_add(size)
            .filter(|&t| t <= end)
            .ok_or_else(|| corrupt(&format!("{name}: data runs past the end")))?;
        let path = format!("{prefix}{name}");
        if child {
            walk(data, from, to, &format!("{path}/"), depth + 1, out)?;
        } else {
            out.push((path, from..to));
        }
    }
    Ok(())
}

/// Writes a C4Group holding `files` (path → bytes; `a/b.wav` puts `b.wav` in child group `a`),
/// packed as OpenClonk packs it. For tests of the reader.
pub fn write(files: &[(&str, &[u8])]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let raw = group_bytes(files);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("in-memory write");
    let mut out = gz.finish().expect("in-memory write");
    out[..2].copy_from_slice(&MAGIC);
    out
}

fn group_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    // Direct members first, then one child group per first folder, in order of appearance.
    let mut items: Vec<(String, bool, Vec<u8>)> = Vec::new();
    for (path, bytes) in files {
        match path.split_once('/') {
            None => items.push((path.to_string(), false, bytes.to_vec())),
            Some((dir, _)) => {
                if !items.iter().any(|(n, c, _)| *c && n == dir) {
                    let inner: Vec<(&str, &[u8])> = files
                        .iter()
                        .filter_map(|(p, b)| {
                            p.strip_prefix(dir)
                                .and_then(|r| r.strip_prefix('/'))
                                .map(|r| (r, *b))
                        })
                        .collect();
                    items.push((dir.to_string(), true, group_bytes(&inner)));
                }
            }
        }
    }
    let mut header = vec![0u8; HEADER_LEN];
    header[..ID.len()].copy_from_slice(ID);
    header[28..32].copy_from_slice(&1i32.to_le_bytes());
    header[32..36].copy_from_slice(&2i32.to_le_bytes());
    header[36..40].copy_from_slice(&(items.len() as i32).to_le_bytes());
    unscramble(&mut header); // scrambling is its own inverse
    let mut table = Vec::new();
    let mut body = Vec::new();
    for (name, child, bytes) in &items {
        let mut e = vec![0u8; ENTRY_LEN];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[264..268].copy_from_slice(&(*child as i32).to_le_bytes());
        e[268..272].copy_from_slice(&(bytes.len() as i32).to_le_bytes());
        e[276..280].copy_from_slice(&(body.len() as i32).to_le_bytes());
        table.extend_from_slice(&e);
        body.extend_from_slice(bytes);
    }
    [header, table, body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_round_trip() {
        let files: &[(&str, &[u8])] = &[
            ("Readme.txt", b"hello"),
            ("Animals.ocg/Bat.ocg/Chirp.wav", b"RIFFbat"),
            ("Animals.ocg/Bat.ocg/Flutter1.wav", b"RIFFflutter"),
            ("Animals.ocg/Moo.ogg", b"OggSmoo"),
        ];
        let packed = write(files);
        assert_eq!(packed[..2], MAGIC);
        let m = read(&packed).unwrap();
        let mut names: Vec<&str> = m.names().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "Animals.ocg/Bat.ocg/Chirp.wav",
                "Animals.ocg/Bat.ocg/Flutter1.wav",
                "Animals.ocg/Moo.ogg",
                "Readme.txt"
            ]
        );
        assert_eq!(
            m.get("Animals.ocg/Bat.ocg/Flutter1.wav"),
            Some(&b"RIFFflutter"[..])
        );
        assert_eq!(m.get("Readme.txt"), Some(&b"hello"[..]));
    }

    #[test]
    fn corrupt_groups_are_refused_not_panicked_on() {
        let packed = write(&[("a.wav", b"RIFF")]);
        let raw = inflate(&packed).unwrap();
        // Truncated anywhere: an error, never a panic or an out-of-bounds read.
        for cut in [0, 10, HEADER_LEN, HEADER_LEN + 100, raw.len() - 1] {
            assert!(read(&raw[..cut]).is_err(), "cut at {cut}");
        }
        // A size that points past the end.
        let mut bad = raw.clone();
        bad[HEADER_LEN + 268..HEADER_LEN + 272].copy_from_slice(&1000i32.to_le_bytes());
        assert!(matches!(read(&bad), Err(ArchiveError::Corrupt(_))));
        // Not a group at all.
        assert!(read(b"PK\x03\x04 definitely a zip").is_err());
    }
}
