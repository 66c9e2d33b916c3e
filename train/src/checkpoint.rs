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
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)
}
