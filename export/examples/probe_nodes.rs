//! Per-node timing of an ONNX model in tract (diagnostics): `cargo run --release -p
//! sfxtag-export --example probe_nodes -- models/aisfx-cnn9/encoder.onnx`.
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{self as tplan, SimpleState};

fn main() -> TractResult<()> {
    let path = std::env::args().nth(1).expect("model path");
    let model = tract_onnx::onnx().model_for_path(&path)?.into_optimized()?;
    let plan = model.into_runnable()?;
    let x = Tensor::from_shape(&[1, 1, 100, 96], &vec![0.3f32; 9600])?;
    let mut times: Vec<(String, String, f64)> = vec![];
    for round in 0..2 {
        let mut state = SimpleState::new(&plan)?;
        times.clear();
        state.run_plan_with_eval(tvec!(x.clone().into_tvalue()), |ctx, st, node, input| {
            let t = Instant::now();
            let r = tplan::eval(ctx, st, node, input);
            times.push((
                node.name.clone(),
                format!(
                    "{} {:?}",
                    node.op().name(),
                    node.op().info().unwrap_or_default()
                ),
                t.elapsed().as_secs_f64() * 1e3,
            ));
            r
        })?;
        let _ = round;
    }
    times.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = times.iter().map(|t| t.2).sum();
    println!("total {total:.1} ms");
    for (n, op, ms) in times.iter().take(15) {
        println!("{ms:9.2} ms  {op:<24} {n}");
    }
    Ok(())
}
