//! UCS heads on the frozen encoder, trained on CPU: embeddings of every corpus window
//! ([`embed`]) or, for any block 4, from the cached trunk ([`from_trunk`]), their labelled view ([`data`]), the MLP head ([`mlp`]), kNN voting ([`knn`]),
//! calibration ([`calibrate`]), the leave-one-source-out evaluation ([`eval`]), two evaluations
//! side by side ([`compare`]) and the final heads written into a model directory ([`fit`]).

pub mod calibrate;
pub mod compare;
pub mod data;
pub mod embed;
pub mod eval;
pub mod fit;
pub mod from_trunk;
pub mod knn;
pub mod mlp;
pub mod shipped;
