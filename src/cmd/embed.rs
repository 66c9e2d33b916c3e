//! `sfxtag embed FILES…`: one embedding per window as JSON lines
//! (`{"file", "window", "start_s", "end_s", "embedding": [f32…]}`) or a `.npy` float32 matrix
//! (rows in file then window order).

use super::{display_name, load_model, process_file};
use crate::cli::{EmbedArgs, EmbedFormat};
use crate::pipeline::Processor;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct Line<'a> {
    file: &'a str,
    window: u64,
    start_s: f64,
    end_s: f64,
    zscored: bool,
    embedding: &'a [f32],
}

/// A version 1.0 `.npy` header for a C-order little-endian float32 matrix.
pub fn npy_header(rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header len (2) + dict + padding + '\n' is a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut h = Vec::with_capacity(unpadded + pad);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let model = load_model(&args.model, 3)?;
    let dim = model.manifest.encoder.embedding_dim;
    let mut p = Processor::new(model);
    let mut sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut rows: Vec<f32> = Vec::new();
    let mut failed = 0;
    for path in &args.files {
        let name = display_name(path);
        let mut first = None;
        let mut err = None;
        let r = process_file(&mut p, path, &mut |w| {
            let first = *first.get_or_insert(w.seq);
            let v = if args.raw { w.raw } else { w.z };
            match args.format {
                EmbedFormat::Jsonl => {
                    let line = Line {
                        file: &name,
                        window: w.seq - first,
                        start_s: (w.start_s * 1000.0).round() / 1000.0,
                        end_s: (w.end_s * 1000.0).round() / 1000.0,
                        zscored: !args.raw,
                        embedding: v,
                    };
                    if err.is_none() {
                        err = serde_json::to_writer(&mut sink, &line)
                            .map_err(anyhow::Error::from)
                            .and_then(|_| sink.write_all(b"\n").map_err(Into::into))
                            .err();
                    }
                }
                EmbedFormat::Npy => rows.extend_from_slice(v),
            }
        });
        if let Some(e) = err {
            return Err(e.context("cannot write the embeddings"));
        }
        if let Err(e) = r {
            eprintln!("sfxtag: {e:#}");
            failed += 1;
        }
    }
    if args.format == EmbedFormat::Npy {
        sink.write_all(&npy_header(rows.len() / dim.max(1), dim))?;
        for x in &rows {
            sink.write_all(&x.to_le_bytes())?;
        }
    }
    sink.flush()?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be embedded",
            args.files.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_shape() {
        let h = npy_header(3, 512);
        assert_eq!(h.len() % 64, 0);
        assert!(h.starts_with(b"\x93NUMPY\x01\x00"));
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (3, 512)") && text.ends_with('\n'));
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
    }
}
