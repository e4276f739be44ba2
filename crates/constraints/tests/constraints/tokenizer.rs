//! Token bytes from Hugging Face tokenizer files, checked against the `tokenizers` library's
//! own decoding of the vendored pycoder-16m tokenizer.

use decoding_constraints::{TokenBytes, TokenizerError};

use crate::common::{assets, dev_cases};

/// A minimal byte-level BPE tokenizer file.
fn tokenizer_json(model_type: &str, vocab: &str, decoder: &str) -> String {
    format!(
        r#"{{"version": "1.0",
            "added_tokens": [
                {{"id": 0, "content": "<|endoftext|>", "special": true}},
                {{"id": 5, "content": "<tab>", "special": false}}],
            "decoder": {decoder},
            "model": {{"type": "{model_type}", "vocab": {vocab}, "merges": []}}}}"#
    )
}

#[test]
fn reads_byte_level_vocabularies() {
    let json = tokenizer_json(
        "BPE",
        r#"{"<|endoftext|>": 0, "a": 1, "Ġb": 2, "ĊĉĠ": 3, "Ã©": 7}"#,
        r#"{"type": "ByteLevel", "add_prefix_space": true}"#,
    );
    let tokens = TokenBytes::from_tokenizer_json(&json).unwrap();
    assert_eq!(tokens.len(), 8);
    let bytes: Vec<&[u8]> = tokens.iter().collect();
    let expected: [&[u8]; 8] = [
        b"",
        b"a",
        b" b",
        b"\n\t ",
        b"",
        b"<tab>",
        b"",
        "é".as_bytes(),
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn a_decoder_sequence_with_byte_level_is_byte_level() {
    let json = tokenizer_json(
        "BPE",
        r#"{"a": 1}"#,
        r#"{"type": "Sequence", "decoders": [{"type": "Strip"}, {"type": "ByteLevel"}]}"#,
    );
    assert_eq!(TokenBytes::from_tokenizer_json(&json).unwrap().len(), 6);
}

#[test]
fn other_tokenizers_are_clear_errors() {
    let byte_level = r#"{"type": "ByteLevel"}"#;
    let cases = [
        tokenizer_json("WordPiece", r#"{"a": 1}"#, byte_level),
        tokenizer_json("BPE", r#"{"a": 1}"#, r#"{"type": "Metaspace"}"#),
        tokenizer_json("BPE", r#"{"a": 1}"#, "null"),
    ];
    for json in &cases {
        let err = TokenBytes::from_tokenizer_json(json).unwrap_err();
        assert!(matches!(err, TokenizerError::Unsupported(_)), "{err}");
    }
    // A space is not in the byte-level alphabet (it is written "Ġ").
    let json = tokenizer_json("BPE", r#"{"a b": 1}"#, byte_level);
    let err = TokenBytes::from_tokenizer_json(&json).unwrap_err();
    assert!(
        matches!(err, TokenizerError::NotByteLevel { id: 1, .. }),
        "{err}"
    );
    let json = tokenizer_json("BPE", r#"{"a": 1, "b": 1}"#, byte_level);
    let err = TokenBytes::from_tokenizer_json(&json).unwrap_err();
    assert!(matches!(err, TokenizerError::DuplicateId(1)), "{err}");
    let json = tokenizer_json("BPE", r#"{"a": 1, "b": 4000000000}"#, byte_level);
    let err = TokenBytes::from_tokenizer_json(&json).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::SparseIds {
                max_id: 4_000_000_000,
                tokens: 4
            }
        ),
        "{err}"
    );
    let err = TokenBytes::from_tokenizer_json("{\"model\": 3}").unwrap_err();
    assert!(matches!(err, TokenizerError::Json(_)), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    let err = TokenBytes::from_tokenizer_file("/nonexistent/tokenizer.json").unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
}

fn pycoder_tokens() -> TokenBytes {
    TokenBytes::from_tokenizer_file(assets().join("pycoder-16m/tokenizer.json")).unwrap()
}

/// Token ids and texts from the `tokenizers` library (Python, 0.23.3) on this tokenizer file:
/// `Tokenizer.from_file(...).encode(text).ids`.
#[test]
fn pycoder_tokens_spell_known_snippets() {
    let tokens = pycoder_tokens();
    assert_eq!(tokens.len(), 8192);
    assert_eq!(tokens.get(0), Some(&b""[..]), "<|endoftext|> has no bytes");
    let snippets: [(&[u32], &str); 2] = [
        (
            &[
                313, 851, 8, 65, 12, 310, 308, 199, 259, 332, 274, 442, 310, 221, 293, 3573, 199,
            ],
            "def add(a, b):\n    return a + b  # sum\n",
        ),
        (
            &[1240, 445, 72, 128, 103, 76, 330, 3936, 251, 242, 490, 199],
            "print('héllo ✓')\n",
        ),
    ];
    for (ids, text) in snippets {
        assert_eq!(tokens.decode(ids).unwrap(), text.as_bytes());
    }
}

/// Every dev prompt decodes to the text the `tokenizers` library decodes it to: the total
/// length and FNV-1a hash of all 70 prompt texts (each followed by a NUL) as computed there.
#[test]
fn pycoder_dev_prompts_decode_as_the_tokenizers_library_does() {
    let tokens = pycoder_tokens();
    let cases = dev_cases();
    assert_eq!(cases.len(), 70);
    let edit = cases.iter().find(|c| c.id == "dev-edit-00").unwrap();
    assert_eq!(
        tokens.decode(&edit.prompt[..30]).unwrap(),
        "# ---- inspect.py (before) ----\n        isroutine() - check object types\n    \
         getmembers() - get members of an object"
            .as_bytes()
    );
    let (mut total, mut hash) = (0usize, 0xcbf2_9ce4_8422_2325u64);
    for case in &cases {
        let text = tokens.decode(&case.prompt).unwrap();
        assert!(std::str::from_utf8(&text).is_ok(), "{}", case.id);
        total += text.len();
        for &b in text.iter().chain(&[0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    assert_eq!((total, hash), (95_592, 0xb449_c1a7_c972_c87a));
}
