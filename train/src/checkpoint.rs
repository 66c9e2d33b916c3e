//! Checkpoints: the full training state (every variable, all BN sets) and the export form that
//! `sfxtag-export --weights` reads (one BN set, the names of export's safetensors scheme).

use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// Saves every variable of `vs` as safetensors (round-trips with [`load`]).
pub fn save(vs: &VarStore, path: &Path) -> Result<(), tch::TchError> {
    vs.save(path)
}

/// Loads variables saved by [`save`] into a model of the same shape.
pub fn load(vs: &mut VarStore, path: &Path) -> Result<(), tch::TchError> {
    vs.load(path)
}

/// Writes the export form: dataset `bn_set`'s BatchNorm set (when the model has one per dataset)
/// under the plain `encoder.block{N}.bn{K}.*` names, other sets dropped, heads kept.
pub fn save_for_export(vs: &VarStore, bn_set: usize, path: &Path) -> Result<(), tch::TchError> {
    let mut named = export_form(vs, bn_set);
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)
}

/// `vs`'s variables on the CPU, BN set `bn_set` under the plain names, other sets dropped.
fn export_form(vs: &VarStore, bn_set: usize) -> Vec<(String, Tensor)> {
    let keep = format!(".bnset{bn_set}.");
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (name, t) in vs.variables() {
        let renamed = if name.contains(".bnset") {
            if !name.contains(&keep) {
                continue;
            }
            name.replace(&keep, ".")
        } else {
            name
        };
        named.push((renamed, t.to_device(tch::Device::Cpu).detach()));
    }
    named
}

/// Writes `vs`'s blocks and heads (BN set `bn_set`, as [`save_for_export`]) with every encoder
/// tensor `vs` lacks taken from `base`: block 4 trained on the trunk cache merged into the
/// encoder it started from, in the scheme `sfxtag-export --weights` reads. `base`'s heads are
/// dropped.
pub fn save_merged(
    vs: &VarStore,
    bn_set: usize,
    base: &sfxtag_export::weights::Cnn9Weights,
    path: &Path,
) -> Result<(), tch::TchError> {
    let mut named = export_form(vs, bn_set);
    let have: std::collections::HashSet<String> = named.iter().map(|(n, _)| n.clone()).collect();
    for (name, shape, data) in base.named_tensors() {
        if name.starts_with("encoder.") && !have.contains(&name) {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            named.push((name, Tensor::from_slice(data).view(dims.as_slice())));
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)
}
