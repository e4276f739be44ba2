//! The CPU LLaMA on the real pycoder-16m checkpoint keeps the contract, bit for bit, alone
//! and batched. Small trees and few rounds on one thread keep this to seconds.

use std::path::Path;
use std::time::Instant;

use decoding_testkit::{CheckConfig, check_batch_model, check_model};
use llama_cpu::Llama;

fn model() -> Option<Llama> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/pycoder-16m");
    if !Path::new(dir).exists() {
        eprintln!("skipping: {dir} is missing");
        return None;
    }
    let started = Instant::now();
    let model = Llama::load(dir)
        .expect("the checkpoint loads")
        .with_threads(1);
    eprintln!("loaded in {:?}", started.elapsed());
    Some(model)
}

fn config() -> CheckConfig {
    CheckConfig::default()
        .with_episodes(2)
        .with_rounds(10)
        .with_max_nodes(6)
        .with_max_context(40)
}

#[test]
fn llama_passes() {
    let Some(mut model) = model() else { return };
    let started = Instant::now();
    let report = check_model(&mut model, &config()).unwrap();
    eprintln!("{report}\n({:?})", started.elapsed());
    assert!(report.is_bit_exact(), "{report}");
    assert!(report.hidden_states.rows > 0, "{report}");
}

#[test]
fn batch_llama_passes() {
    let Some(model) = model() else { return };
    let mut batch = model.batch();
    let started = Instant::now();
    let report = check_batch_model(&mut batch, &config().with_episodes(1).with_rounds(8)).unwrap();
    eprintln!("{report}\n({:?})", started.elapsed());
    assert!(report.is_bit_exact(), "{report}");
    assert!(report.multi_sequence_passes > 0, "{report}");
    assert_eq!(batch.sequences(), 0, "the check removes its sequences");
}
