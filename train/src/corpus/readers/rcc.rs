//! Qt resource files (`.rcc`, format versions 1–3): a `qres` header (big-endian version, tree,
//! data and names offsets; version 3 adds a flags word), a tree of fixed-size nodes (14 bytes,
//! 22 from version 2 with a modification time), UTF-16BE names and size-prefixed data blobs,
//! optionally zlib-compressed (`qCompress`: a 4-byte length, then a zlib stream).

use super::{ArchiveError, Members};
use flate2::read::ZlibDecoder;
use std::io::Read;

pub const MAGIC: &[u8; 4] = b"qres";
const FLAG_COMPRESSED: u16 = 0x01;
const FLAG_DIRECTORY: u16 = 0x02;
const FLAG_ZSTD: u16 = 0x04;
/// Far more nodes than any real tree has: a guard against cycles in corrupt files.
const MAX_NODES: usize = 1_000_000;

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// Reads every file of a Qt resource file (decompressed), keyed by its resource path.
pub fn read(bytes: &[u8]) -> Result<Members, ArchiveError> {
    let corrupt = |what: String| ArchiveError::Corrupt(format!("Qt rcc: {what}"));
    if bytes.len() < 20 || &bytes[..4] != MAGIC {
        return Err(corrupt("no 'qres' header".into()));
    }
    let version = be_u32(bytes, 4).unwrap_or(0);
    if !(1..=3).contains(&version) {
        return Err(corrupt(format!(
            "format version {version} is not supported"
        )));
    }
    let (tree, data, names) = (
        be_u32(bytes, 8).unwrap_or(0),
        be_u32(bytes, 12).unwrap_or(0),
        be_u32(bytes, 16).unwrap_or(0),
    );
    let node_len = if version >= 2 { 22 } else { 14 };
    let name_at = |off: usize| -> Result<String, ArchiveError> {
        let at = names + off;
        let len = be_u16(bytes, at).ok_or_else(|| corrupt("name past the end".into()))? as usize;
        let units: Vec<u16> = (0..len)
            .map(|i| be_u16(bytes, at + 6 + 2 * i))
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("name past the end".into()))?;
        let name = String::from_utf16(&units).map_err(|_| corrupt("name not UTF-16".into()))?;
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name == "." {
            return Err(corrupt(format!("unsafe member name {name:?}")));
        }
        Ok(name)
    };
    let mut out_bytes = Vec::new();
    let mut entries = Vec::new();
    // Depth-first over (node index, path prefix).
    let mut stack = vec![(0usize, String::new())];
    let mut visited = 0usize;
    while let Some((node, prefix)) = stack.pop() {
        visited += 1;
        if visited > MAX_NODES {
            return Err(corrupt("node tree does not end (cycle?)".into()));
        }
        let at = tree + node * node_len;
        let (Some(name_off), Some(flags)) = (be_u32(bytes, at), be_u16(bytes, at + 4)) else {
            return Err(corrupt(format!("node {node} past the end")));
        };
        let path = if node == 0 {
            String::new()
        } else {
            format!("{prefix}{}", name_at(name_off)?)
        };
        if flags & FLAG_DIRECTORY != 0 {
            let (Some(count), Some(first)) = (be_u32(bytes, at + 6), be_u32(bytes, at + 10)) else {
                return Err(corrupt(format!("node {node} past the end")));
            };
            if first <= node && count > 0 {
                return Err(corrupt(format!(
                    "node {node}: children before their parent"
                )));
            }
            let child_prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            for c in (first..first + count).rev() {
                stack.push((c, child_prefix.clone()));
            }
            continue;
        }
        let off =
            be_u32(bytes, at + 10).ok_or_else(|| corrupt(format!("node {node} past the end")))?;
        let size = be_u32(bytes, data + off)
            .ok_or_else(|| corrupt(format!("{path}: data past the end")))?;
        let blob = bytes
            .get(data + off + 4..data + off + 4 + size)
            .ok_or_else(|| corrupt(format!("{path}: data past the end")))?;
        let content = if flags & FLAG_ZSTD != 0 {
            return Err(corrupt(format!(
                "{path}: zstd compression is not supported"
            )));
        } else if flags & FLAG_COMPRESSED != 0 {
            let mut v = Vec::new();
            ZlibDecoder::new(blob.get(4..).unwrap_or_default())
                .read_to_end(&mut v)
                .map_err(|e| corrupt(format!("{path}: zlib: {e}")))?;
            v
        } else {
            blob.to_vec()
        };
        let start = out_bytes.len();
        out_bytes.extend_from_slice(&content);
        entries.push((path, start..out_bytes.len()));
    }
    Ok(Members::new(out_bytes, entries))
}

/// Writes a version-2 resource file holding `files` (paths with `/`), compressing every other
/// file, as `rcc` does for compressible data. For tests of the reader.
pub fn write(files: &[(&str, &[u8])]) -> Vec<u8> {
    use flate2::write::ZlibEncoder;
    use std::io::Write;
    // Build the directory tree: node 0 is the root; children of a directory are consecutive.
    #[derive(Default)]
    struct Dir {
        dirs: Vec<(String, Dir)>,
        files: Vec<(String, Vec<u8>)>,
    }
    let mut root = Dir::default();
    for (path, bytes) in files {
        let parts: Vec<&str> = path.split('/').collect();
        let mut d = &mut root;
        for p in &parts[..parts.len() - 1] {
            let i = match d.dirs.iter().position(|(n, _)| n == p) {
                Some(i) => i,
                None => {
                    d.dirs.push((p.to_string(), Dir::default()));
                    d.dirs.len() - 1
                }
            };
            d = &mut d.dirs[i].1;
        }
        d.files
            .push((parts[parts.len() - 1].to_string(), bytes.to_vec()));
    }
    let mut names = Vec::new();
    let mut data = Vec::new();
    let mut add_name = |n: &str| {
        let off = names.len() as u32;
        let units: Vec<u16> = n.encode_utf16().collect();
        names.extend_from_slice(&(units.len() as u16).to_be_bytes());
        names.extend_from_slice(&0u32.to_be_bytes()); // hash: unused by readers of this code
        for u in units {
            names.extend_from_slice(&u.to_be_bytes());
        }
        off
    };
    // Breadth-first layout, so every directory's children are consecutive.
    let mut nodes: Vec<[u8; 22]> = vec![[0; 22]];
    let mut queue: Vec<(usize, &Dir)> = vec![(0, &root)];
    let mut compress = false;
    while let Some((idx, dir)) = queue.first().copied() {
        queue.remove(0);
        let first = nodes.len();
        let count = dir.dirs.len() + dir.files.len();
        nodes[idx][4..6].copy_from_slice(&FLAG_DIRECTORY.to_be_bytes());
        nodes[idx][6..10].copy_from_slice(&(count as u32).to_be_bytes());
        nodes[idx][10..14].copy_from_slice(&(first as u32).to_be_bytes());
        for (n, sub) in &dir.dirs {
            let mut node = [0u8; 22];
            node[..4].copy_from_slice(&add_name(n).to_be_bytes());
            queue.push((nodes.len(), sub));
            nodes.push(node);
        }
        for (n, bytes) in &dir.files {
            let mut node = [0u8; 22];
            node[..4].copy_from_slice(&add_name(n).to_be_bytes());
            let blob = if compress {
                node[4..6].copy_from_slice(&FLAG_COMPRESSED.to_be_bytes());
                let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(bytes).expect("in-memory write");
                [
                    (bytes.len() as u32).to_be_bytes().to_vec(),
                    z.finish().expect("in-memory"),
                ]
                .concat()
            } else {
                bytes.clone()
            };
            compress = !compress;
            node[10..14].copy_from_slice(&(data.len() as u32).to_be_bytes());
            data.extend_from_slice(&(blob.len() as u32).to_be_bytes());
            data.extend_from_slice(&blob);
            nodes.push(node);
        }
    }
    let tree: Vec<u8> = nodes.concat();
    let (tree_off, data_off) = (20usize, 20 + tree.len());
    let names_off = data_off + data.len();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    for v in [2, tree_off, data_off, names_off] {
        out.extend_from_slice(&(v as u32).to_be_bytes());
    }
    out.extend_from_slice(&tree);
    out.extend_from_slice(&data);
    out.extend_from_slice(&names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_and_compression_round_trip() {
        let wav = b"RIFF....WAVEfmt lots of bytes lots of bytes lots of bytes".repeat(20);
        let files: &[(&str, &[u8])] = &[
            ("gcompris/src/activities/a/resource/moo.ogg", b"OggS cow"),
            ("gcompris/src/activities/a/resource/lock.wav", &wav),
            ("gcompris/src/activities/a/Main.qml", b"import QtQuick"),
            ("top.txt", b"t"),
        ];
        let m = read(&write(files)).unwrap();
        let mut names: Vec<&str> = m.names().collect();
        names.sort();
        assert_eq!(names.len(), 4);
        for (p, b) in files {
            assert_eq!(m.get(p), Some(*b), "{p}");
        }
    }

    #[test]
    fn corrupt_files_are_refused() {
        let good = write(&[("a/b.wav", b"RIFF")]);
        for cut in [0, 4, 19, 30, good.len() - 3] {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut v9 = good.clone();
        v9[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert!(read(&v9).unwrap_err().to_string().contains("version 9"));
    }
}
