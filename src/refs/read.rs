//! Streaming reader of reference files. The file is read through a buffer and each entry's
//! base64 embedding is decoded straight into the set's one matrix, so loading never holds the
//! file's text or its base64 strings beside the set: peak memory is about the set itself (the
//! shipped set is 7.7 MB of JSON for 5.5 MB of embeddings). Header fields are checked as soon
//! as they are read (our writer puts them first), so a file for another model or version fails
//! fast with the error that says so.

use super::{RefSet, RefsError, FORMAT, VERSION};
use base64::Engine;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;
use sfxtag_core::manifest::Taxonomy;
use std::fmt;
use std::io::Read;

const FIELDS: &[&str] = &[
    "format",
    "version",
    "model",
    "model_version",
    "taxonomy",
    "dim",
    "zscored",
    "entries",
];
const ENTRY_FIELDS: &[&str] = &["label", "source", "window", "embedding"];

/// What has been read so far.
struct Stream<'a> {
    path: &'a str,
    model_id: &'a str,
    dim: usize,
    format: Option<String>,
    version: Option<u32>,
    model_seen: bool,
    model_version: Option<String>,
    taxonomy: Option<Taxonomy>,
    file_dim: Option<usize>,
    zscored: Option<bool>,
    entries_seen: bool,
    labels: Vec<String>,
    sources: Vec<(String, u64)>,
    data: Vec<f32>,
    scratch: Vec<u8>,
    /// The error that stopped the parse, when it is ours rather than a JSON syntax error.
    failure: Option<RefsError>,
}

impl Stream<'_> {
    fn fail<E: de::Error>(&mut self, e: RefsError) -> E {
        let msg = e.to_string();
        self.failure.get_or_insert(e);
        E::custom(msg)
    }

    fn parse_err(&self, message: impl Into<String>) -> RefsError {
        RefsError::Parse {
            path: self.path.into(),
            message: message.into(),
        }
    }

    fn entry_err(&self, index: usize, message: impl Into<String>) -> RefsError {
        RefsError::Entry {
            path: self.path.into(),
            index,
            message: message.into(),
        }
    }
}

/// Reads a reference set from `reader`; `size_hint` (the file's length, if known) lets the
/// matrix be allocated once.
pub(super) fn read(
    reader: impl Read,
    path: &str,
    model_id: &str,
    dim: usize,
    size_hint: Option<u64>,
) -> Result<RefSet, RefsError> {
    // Every entry carries at least its base64 embedding (4·dim bytes → 4/3 as many characters):
    // an upper bound on the entry count.
    let max_entries = size_hint.map_or(0, |n| (n as usize) / (dim * 16 / 3).max(1));
    let mut st = Stream {
        path,
        model_id,
        dim,
        format: None,
        version: None,
        model_seen: false,
        model_version: None,
        taxonomy: None,
        file_dim: None,
        zscored: None,
        entries_seen: false,
        labels: Vec::with_capacity(max_entries),
        sources: Vec::with_capacity(max_entries),
        data: Vec::with_capacity(max_entries * dim),
        scratch: Vec::with_capacity(dim * 4 + 4),
        failure: None,
    };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let parsed = de
        .deserialize_map(FileVisitor(&mut st))
        .and_then(|()| de.end());
    if let Err(e) = parsed {
        return Err(st
            .failure
            .take()
            .unwrap_or_else(|| st.parse_err(e.to_string())));
    }
    finish(st)
}

/// Checks what the header promised and builds the set.
fn finish(st: Stream<'_>) -> Result<RefSet, RefsError> {
    let missing = |f: &str| st.parse_err(format!("missing field `{f}`"));
    if st.format.is_none() {
        return Err(st.parse_err(format!("\"format\" must be \"{FORMAT}\"")));
    }
    if st.version.is_none() {
        return Err(RefsError::Version {
            path: st.path.into(),
            found: 0,
        });
    }
    if !st.model_seen {
        return Err(missing("model"));
    }
    let taxonomy = st.taxonomy.ok_or_else(|| missing("taxonomy"))?;
    let model_version = st
        .model_version
        .clone()
        .ok_or_else(|| missing("model_version"))?;
    st.file_dim.ok_or_else(|| missing("dim"))?;
    st.zscored.ok_or_else(|| missing("zscored"))?;
    if !st.entries_seen {
        return Err(missing("entries"));
    }
    let mut set = RefSet::new(st.model_id, &model_version, taxonomy, st.dim);
    for (index, label) in st.labels.iter().enumerate() {
        set.check_label(label)
            .map_err(|e| st.entry_err(index, e.to_string()))?;
    }
    let mut data = st.data;
    data.shrink_to_fit();
    set.norms = data.chunks_exact(st.dim).map(super::norm).collect();
    set.data = data;
    set.labels = st.labels;
    set.labels.shrink_to_fit();
    set.sources = st.sources;
    set.sources.shrink_to_fit();
    Ok(set)
}

struct FileVisitor<'s, 'a>(&'s mut Stream<'a>);

impl<'de> Visitor<'de> for FileVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sfxtag reference set (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let v: String = map.next_value()?;
                    if v != FORMAT {
                        let e = st.parse_err(format!("\"format\" must be \"{FORMAT}\""));
                        return Err(st.fail(e));
                    }
                    st.format = Some(v);
                }
                "version" => {
                    let v: u32 = map.next_value()?;
                    if v != VERSION {
                        let e = RefsError::Version {
                            path: st.path.into(),
                            found: v,
                        };
                        return Err(st.fail(e));
                    }
                    st.version = Some(v);
                }
                "model" => {
                    let v: String = map.next_value()?;
                    if v != st.model_id {
                        let e = RefsError::ModelMismatch {
                            path: st.path.into(),
                            found: v,
                            expected: st.model_id.into(),
                        };
                        return Err(st.fail(e));
                    }
                    st.model_seen = true;
                }
                "model_version" => st.model_version = Some(map.next_value()?),
                "taxonomy" => st.taxonomy = Some(map.next_value()?),
                "dim" => {
                    let v: usize = map.next_value()?;
                    if v != st.dim {
                        let e = RefsError::DimMismatch {
                            path: st.path.into(),
                            found: v,
                            expected: st.dim,
                        };
                        return Err(st.fail(e));
                    }
                    st.file_dim = Some(v);
                }
                "zscored" => {
                    let v: bool = map.next_value()?;
                    if !v {
                        let e = st.parse_err(
                            "only z-scored embeddings are supported (\"zscored\": true)",
                        );
                        return Err(st.fail(e));
                    }
                    st.zscored = Some(v);
                }
                "entries" => {
                    map.next_value_seed(Entries(&mut *st))?;
                    st.entries_seen = true;
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(())
    }
}

struct Entries<'s, 'a>(&'s mut Stream<'a>);

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of entries")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let st = self.0;
        loop {
            let index = st.labels.len();
            if seq.next_element_seed(Entry(&mut *st, index))?.is_none() {
                return Ok(());
            }
        }
    }
}

struct Entry<'s, 'a>(&'s mut Stream<'a>, usize);

impl<'de> DeserializeSeed<'de> for Entry<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry {label, source, window, embedding}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (st, index) = (self.0, self.1);
        let (mut label, mut source, mut window) = (None::<String>, None::<String>, None::<u64>);
        let mut embedding = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "label" => label = Some(map.next_value()?),
                "source" => source = Some(map.next_value()?),
                "window" => window = Some(map.next_value()?),
                "embedding" => {
                    let b64: String = map.next_value()?;
                    st.scratch.clear();
                    if let Err(e) = base64::engine::general_purpose::STANDARD
                        .decode_vec(b64.as_bytes(), &mut st.scratch)
                    {
                        let e = st.entry_err(index, format!("embedding is not base64: {e}"));
                        return Err(st.fail(e));
                    }
                    if st.scratch.len() != st.dim * 4 {
                        let e = st.entry_err(
                            index,
                            format!(
                                "embedding has {} bytes, expected {}",
                                st.scratch.len(),
                                st.dim * 4
                            ),
                        );
                        return Err(st.fail(e));
                    }
                    let start = st.data.len();
                    st.data.extend(
                        st.scratch
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                    if st.data[start..].iter().any(|x| !x.is_finite()) {
                        st.data.truncate(start);
                        let e = st.entry_err(index, "embedding holds a non-finite value");
                        return Err(st.fail(e));
                    }
                    embedding = true;
                }
                other => return Err(de::Error::unknown_field(other, ENTRY_FIELDS)),
            }
        }
        match (label, source, window, embedding) {
            (Some(l), Some(s), Some(w), true) => {
                st.labels.push(l);
                st.sources.push((s, w));
                Ok(())
            }
            _ => {
                let e = st.entry_err(index, "needs label, source, window and embedding");
                Err(st.fail(e))
            }
        }
    }
}
