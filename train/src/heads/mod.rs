//! UCS heads on the frozen encoder, trained on CPU: embeddings of every corpus window
//! ([`embed`]), their labelled view ([`data`]), the MLP head ([`mlp`]), kNN voting ([`knn`]),
//! calibration ([`calibrate`]), the leave-one-source-out evaluation ([`eval`]), two evaluations
//! side by side ([`compare`]) and the final heads written into a model directory ([`fit`]).

pub mod calibrate;
pub mod compare;
pub mod data;
pub mod embed;
pub mod eval;
pub mod fit;
pub mod knn;
pub mod mlp;
pub mod shipped;
