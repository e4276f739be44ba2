//! The byte string of every token of a vocabulary, and a reader of Hugging Face byte-level
//! BPE tokenizers.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use decoding_core::Token;
use serde::Deserialize;

use crate::trie::TokenTrie;

/// The bytes each token id stands for: token `t` contributes [`get(t)`](Self::get) to the
/// generated text. A token with no bytes (an empty string: special tokens such as
/// `<|endoftext|>`, unused ids) adds nothing to the text.
///
/// Build one from the byte strings themselves ([`new`](Self::new)) or from a Hugging Face
/// `tokenizer.json` of the byte-level BPE kind ([`from_tokenizer_json`](Self::from_tokenizer_json)),
/// and share it (`Arc`) between every constraint over that vocabulary: its prefix tree, which
/// masks are computed with, is built once, on first use.
pub struct TokenBytes {
    /// Every token's bytes, one after the other.
    bytes: Vec<u8>,
    /// Token `t`'s bytes are `bytes[offsets[t]..offsets[t + 1]]`.
    offsets: Vec<usize>,
    trie: OnceLock<TokenTrie>,
}

impl TokenBytes {
    /// A vocabulary whose token `t` is the `t`-th byte string (empty: no bytes).
    pub fn new<B: AsRef<[u8]>>(tokens: impl IntoIterator<Item = B>) -> Self {
        let mut bytes = Vec::new();
        let mut offsets = vec![0];
        for token in tokens {
            bytes.extend_from_slice(token.as_ref());
            offsets.push(bytes.len());
        }
        Self {
            bytes,
            offsets,
            trie: OnceLock::new(),
        }
    }

    /// Reads a Hugging Face `tokenizer.json` of the byte-level BPE kind (GPT-2, Llama 3,
    /// Qwen, StarCoder and most code models): a `BPE` model whose vocabulary is written in
    /// GPT-2's byte-to-unicode alphabet, with a `ByteLevel` decoder.
    ///
    /// Special added tokens (such as `<|endoftext|>`) have no bytes; other added tokens are
    /// their content's UTF-8 bytes, as the tokenizer decodes them. Ids no token uses have no
    /// bytes; the vocabulary runs up to the largest id.
    pub fn from_tokenizer_json(json: &str) -> Result<Self, TokenizerError> {
        let file: TokenizerFile = serde_json::from_str(json)?;
        if file.model.kind != "BPE" {
            return Err(TokenizerError::Unsupported(format!(
                "the model is {:?}, not BPE",
                file.model.kind
            )));
        }
        if !file.decoder.as_ref().is_some_and(is_byte_level) {
            return Err(TokenizerError::Unsupported(
                "the decoder is not ByteLevel".to_string(),
            ));
        }
        let unicode_to_byte = unicode_to_byte();
        let mut tokens: HashMap<Token, Vec<u8>> = HashMap::new();
        for (text, &id) in &file.model.vocab {
            let mut bytes = Vec::with_capacity(text.len());
            for c in text.chars() {
                match unicode_to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => {
                        return Err(TokenizerError::NotByteLevel {
                            id,
                            token: text.clone(),
                        });
                    }
                }
            }
            if tokens.insert(id, bytes).is_some() {
                return Err(TokenizerError::DuplicateId(id));
            }
        }
        // Added tokens take their id over from the model's vocabulary, if it has it.
        for added in &file.added_tokens {
            let bytes = if added.special {
                Vec::new()
            } else {
                added.content.as_bytes().to_vec()
            };
            tokens.insert(added.id, bytes);
        }
        let len = tokens.keys().map(|&id| id as usize + 1).max().unwrap_or(0);
        // Vocabularies are dense up to a few unused ids; a wild id is a bad file, not a
        // reason to allocate billions of entries.
        if len > 2 * tokens.len() + 1024 {
            return Err(TokenizerError::SparseIds {
                max_id: (len - 1) as Token,
                tokens: tokens.len(),
            });
        }
        let mut ordered = vec![Vec::new(); len];
        for (id, bytes) in tokens {
            ordered[id as usize] = bytes;
        }
        Ok(Self::new(ordered))
    }

    /// Reads [`from_tokenizer_json`](Self::from_tokenizer_json) from a file.
    pub fn from_tokenizer_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_tokenizer_json(&json)
    }

    /// Number of token ids.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `token`'s bytes (empty if it has none), or `None` outside the vocabulary.
    pub fn get(&self, token: Token) -> Option<&[u8]> {
        let t = token as usize;
        let (&start, &end) = (self.offsets.get(t)?, self.offsets.get(t + 1)?);
        Some(&self.bytes[start..end])
    }

    /// The text of `tokens`: their bytes one after the other, or `None` if one is outside the
    /// vocabulary.
    pub fn decode(&self, tokens: &[Token]) -> Option<Vec<u8>> {
        let mut text = Vec::new();
        for &token in tokens {
            text.extend_from_slice(self.get(token)?);
        }
        Some(text)
    }

    /// Every token's bytes, by id.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.offsets.windows(2).map(|w| &self.bytes[w[0]..w[1]])
    }

    /// The prefix tree of the vocabulary, built on first use.
    pub(crate) fn trie(&self) -> &TokenTrie {
        self.trie.get_or_init(|| TokenTrie::new(self))
    }
}

impl fmt::Debug for TokenBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBytes")
            .field("tokens", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why a tokenizer file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read the tokenizer file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a tokenizer's JSON.
    #[error("the tokenizer file is not valid tokenizer json")]
    Json(#[from] serde_json::Error),
    /// The tokenizer is not of the byte-level BPE kind.
    #[error("not a byte-level bpe tokenizer: {0}")]
    Unsupported(String),
    /// A vocabulary entry has a character outside GPT-2's byte-to-unicode alphabet.
    #[error("token {id} ({token:?}) is not written in the byte-level alphabet")]
    NotByteLevel {
        /// Its id.
        id: Token,
        /// Its text in the file.
        token: String,
    },
    /// The ids run far past the number of tokens (more than twice it, plus 1,024).
    #[error("token ids run up to {max_id} for only {tokens} tokens")]
    SparseIds {
        /// The largest id.
        max_id: Token,
        /// The number of tokens.
        tokens: usize,
    },
    /// Two vocabulary entries have the same id.
    #[error("two vocabulary entries have id {0}")]
    DuplicateId(Token),
}

#[derive(Deserialize)]
struct TokenizerFile {
    model: ModelSection,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    decoder: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ModelSection {
    #[serde(rename = "type")]
    kind: String,
    vocab: HashMap<String, Token>,
}

#[derive(Deserialize)]
struct AddedToken {
    id: Token,
    content: String,
    #[serde(default)]
    special: bool,
}

/// Whether a `decoder` section is `ByteLevel`, alone or in a `Sequence`.
fn is_byte_level(decoder: &serde_json::Value) -> bool {
    match decoder["type"].as_str() {
        Some("ByteLevel") => true,
        Some("Sequence") => decoder["decoders"]
            .as_array()
            .is_some_and(|d| d.iter().any(is_byte_level)),
        _ => false,
    }
}

/// The inverse of GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the 68
/// others (controls, space, DEL, the non-breaking and soft hyphen range) for the characters
/// from U+0100 on, in byte order.
fn unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0144 are characters")
        };
        map.insert(c, b);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'ĉ'], b'\t');
        assert_eq!(map[&'Ā'], 0);
        assert_eq!(map[&'a'], b'a');
        assert_eq!(map[&'ÿ'], 0xFF);
        assert_eq!(map[&'Ń'], 0xAD);
    }

    #[test]
    fn bytes_by_id() {
        let tokens = TokenBytes::new(["", "a", "bc"]);
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.get(0), Some(&b""[..]));
        assert_eq!(tokens.get(2), Some(&b"bc"[..]));
        assert_eq!(tokens.get(3), None);
        assert_eq!(tokens.decode(&[1, 2, 0, 1]).unwrap(), b"abca");
        assert_eq!(tokens.decode(&[1, 3]), None);
        assert_eq!(tokens.iter().count(), 3);
    }
}
