//! Writes the prompts of an eval file as text, as llama.cpp detokenizes them, so that
//! llama.cpp's own programs (`llama-lookup`, `llama-lookahead`, ...) can run on the same
//! prompts; checks that llama.cpp tokenizes each text back into the same ids.
//!
//! ```text
//! cargo run --release -p decoding-llama-cpp --example prompts -- \
//!     MODEL.gguf assets/eval/dev_eval.json OUT_DIR
//! ```
//!
//! Writes `OUT_DIR/<case id>.txt` and prints one line per case: id, `max_new_tokens`, and
//! whether the round trip gives the same ids.

use decoding_llama_cpp::LlamaCppModel;
use llama_cpp_2::token::LlamaToken;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gguf, cases, out] = args.as_slice() else {
        return Err("usage: prompts MODEL.gguf EVAL.json OUT_DIR".into());
    };
    let model = LlamaCppModel::load(gguf)?;
    let vocab = model.inner().vocab();
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases)?)?;
    std::fs::create_dir_all(out)?;
    let cases = eval["cases"].as_array().ok_or("no cases")?;
    for case in cases {
        let id = case["id"].as_str().ok_or("a case without id")?;
        let ids: Vec<LlamaToken> = case["prompt_ids"]
            .as_array()
            .ok_or("a case without prompt_ids")?
            .iter()
            .map(|t| {
                t.as_i64()
                    .map(|t| LlamaToken::new(t as i32))
                    .ok_or("bad id")
            })
            .collect::<Result<_, _>>()?;
        let text = vocab.detokenize(&ids, false, false);
        let again = vocab.tokenize(&text, false, false);
        std::fs::write(std::path::Path::new(out).join(format!("{id}.txt")), &text)?;
        println!(
            "{id} {} {}",
            case["max_new_tokens"],
            if again == ids {
                "same-ids"
            } else {
                "DIFFERENT-ids"
            }
        );
    }
    Ok(())
}
