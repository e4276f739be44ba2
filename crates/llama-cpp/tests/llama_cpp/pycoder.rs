//! pycoder-16m on llama.cpp (converted to f32 GGUF): the tokenizer, greedy decoding against
//! the independent reference outputs, every strategy against plain greedy on llama.cpp, and
//! batched decoding against decoding alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use decoding_core::{
    BatchRequest, Composite, DecodeConfig, NodeBudget, Plain, Strategy, Token, decode_batch,
    generate,
};
use decoding_llama_cpp::{LlamaCppModel, LlamaCppOptions};
use rand::SeedableRng;

use crate::common::{assets, pycoder};

/// A dev case: prompt, references, expected greedy continuation.
struct Case {
    id: String,
    prompt: Vec<Token>,
    references: Vec<Vec<Token>>,
    expected: Vec<Token>,
}

/// The first `n` dev cases of each task.
fn cases(n: usize) -> Vec<Case> {
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(assets().join("eval").join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let (eval, greedy) = (read("dev_eval.json"), read("dev_greedy.json"));
    let ids = |v: &serde_json::Value| -> Vec<Token> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as Token)
            .collect()
    };
    let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for case in eval["cases"].as_array().unwrap() {
        let count = per_task
            .entry(case["task"].as_str().unwrap().to_string())
            .or_default();
        if *count == n {
            continue;
        }
        *count += 1;
        let id = case["id"].as_str().unwrap().to_string();
        out.push(Case {
            prompt: ids(&case["prompt_ids"]),
            references: case["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect(),
            expected: ids(&greedy[&id]),
            id,
        });
    }
    out
}

fn rng() -> rand::rngs::Xoshiro256PlusPlus {
    rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0)
}

/// llama.cpp's vocabulary decodes every prompt to text that it encodes back into tokens
/// decoding to the same text (the adapter takes token ids, so decoding does not depend on
/// this; llama.cpp's own programs, which read text, do).
#[test]
#[ignore = "open finding: on dev-completion-02 llama.cpp's tokenizer maps the prompt's text to \
            tokens that decode to other text (a run of spaces after newlines); not yet explained"]
fn llama_cpp_round_trips_the_prompt_texts() {
    let Some(model) = pycoder() else { return };
    let vocab = model.inner().vocab();
    let mut same_ids = 0;
    let all = cases(10);
    for case in &all {
        let tokens: Vec<_> = case
            .prompt
            .iter()
            .map(|&t| llama_cpp_2::token::LlamaToken::new(t as i32))
            .collect();
        let text = vocab.detokenize(&tokens, false, false);
        let again = vocab.tokenize(&text, false, false);
        assert_eq!(vocab.detokenize(&again, false, false), text, "{}", case.id);
        same_ids += usize::from(again == tokens);
    }
    eprintln!(
        "{same_ids} of {} prompts re-tokenize into the same ids",
        all.len()
    );
}

#[test]
fn greedy_on_llama_cpp_reproduces_the_reference_outputs() {
    let Some(model) = pycoder() else { return };
    let mut llama = model
        .context(&LlamaCppOptions::new().with_threads(2))
        .unwrap();
    for case in cases(3) {
        let config = DecodeConfig::new(48).with_eos([0]);
        let out = generate(&mut llama, Plain, &case.prompt, &config, &mut rng()).unwrap();
        let n = out.tokens.len();
        assert_eq!(out.tokens, case.expected[..n], "{}", case.id);
    }
}

/// Every strategy of the workspace, built for one case.
fn strategies(model: &LlamaCppModel, case: &Case) -> Vec<(&'static str, Box<dyn Strategy>)> {
    let dir = assets().join("pycoder-16m");
    let heads = Arc::new(medusa::MedusaHeads::load(dir.join("medusa_heads.safetensors")).unwrap());
    assert_eq!(heads.hidden_size(), model.hidden_size());
    let reference = || {
        reference::ReferenceStrategy::with_documents(
            reference::ReferenceConfig::suffix(),
            &case.references,
        )
        .unwrap()
    };
    let medusa = || {
        medusa::Medusa::new(
            medusa::HeadSource::Library(Arc::clone(&heads)),
            medusa::MedusaConfig::default(),
        )
        .unwrap()
    };
    let lookahead = lookahead::LookaheadConfig::new(15, 5, 15);
    let composite: Vec<Box<dyn Strategy>> = vec![Box::new(reference()), Box::new(medusa())];
    vec![
        ("reference", Box::new(reference())),
        (
            "jacobi",
            Box::new(jacobi::Jacobi::new(jacobi::JacobiConfig::new(8)).unwrap()),
        ),
        (
            "lookahead",
            Box::new(lookahead::Lookahead::new(lookahead).unwrap()),
        ),
        ("medusa", Box::new(medusa())),
        (
            "composite",
            Box::new(Composite::new(composite, NodeBudget::Fixed).unwrap()),
        ),
    ]
}

#[test]
fn every_strategy_equals_plain_greedy_on_llama_cpp() {
    let Some(model) = pycoder() else { return };
    // Hidden states for Medusa: llama.cpp then outputs every node.
    let options = LlamaCppOptions::new()
        .with_threads(2)
        .with_hidden_states(true);
    let mut llama = model.context(&options).unwrap();
    for case in cases(2) {
        let config = DecodeConfig::new(64).with_eos([0]);
        let plain = generate(&mut llama, Plain, &case.prompt, &config, &mut rng()).unwrap();
        for (name, strategy) in strategies(model, &case) {
            let out = generate(&mut llama, strategy, &case.prompt, &config, &mut rng()).unwrap();
            assert_eq!(out.tokens, plain.tokens, "{} with {name}", case.id);
            eprintln!(
                "{} {name}: tau {:.2} over {} forwards",
                case.id,
                out.stats.tau(),
                out.stats.forward_passes()
            );
        }
    }
}

#[test]
fn batched_decoding_equals_decoding_alone() {
    let Some(model) = pycoder() else { return };
    let options = LlamaCppOptions::new().with_threads(2);
    let cases = cases(2);
    let config = DecodeConfig::new(40).with_eos([0]);
    let strategy = |case: &Case| -> Box<dyn Strategy> {
        Box::new(
            reference::ReferenceStrategy::with_documents(
                reference::ReferenceConfig::suffix(),
                &case.references,
            )
            .unwrap(),
        )
    };
    let mut alone = model.context(&options).unwrap();
    let expected: Vec<Vec<Token>> = cases
        .iter()
        .map(|case| {
            generate(
                &mut alone,
                strategy(case),
                &case.prompt,
                &config,
                &mut rng(),
            )
            .unwrap()
            .tokens
        })
        .collect();
    let mut batch = model.batch(&options, 3).unwrap();
    let requests = cases
        .iter()
        .map(|case| BatchRequest {
            prompt: case.prompt.clone(),
            strategy: strategy(case),
            config: config.clone(),
            draw: Box::new(rng()),
        })
        .collect();
    let (outputs, stats) = decode_batch(&mut batch, requests, 3).unwrap();
    assert_eq!(stats.max_in_flight, 3);
    for ((case, out), expected) in cases.iter().zip(outputs).zip(expected) {
        assert_eq!(out.unwrap().tokens, expected, "{}", case.id);
    }
}
