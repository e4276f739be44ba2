//! A GGUF model loaded by llama.cpp: the weights that contexts (sequences and their KV
//! caches) borrow.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

use crate::batch::LlamaCppBatch;
use crate::error::LlamaCppError;
use crate::options::LlamaCppOptions;
use crate::single::LlamaCpp;

/// llama.cpp's process-wide backend, initialised once. Its logs go to `tracing` (silent
/// unless the program installs a subscriber).
pub(crate) fn backend() -> Result<&'static LlamaBackend, LlamaCppError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| {
                format!("{e} (another part of the program initialised it: llama-cpp-2 allows one backend per process)")
            })
        })
        .as_ref()
        .map_err(|e| LlamaCppError::Backend(e.clone()))
}

/// A model file loaded by llama.cpp (its weights, on the CPU). Make a single-sequence
/// [`LlamaCpp`] with [`context`](Self::context), or a batched [`LlamaCppBatch`] with
/// [`batch`](Self::batch); they borrow the weights, and several may share them.
pub struct LlamaCppModel {
    model: LlamaModel,
    path: PathBuf,
    /// Held while a context is created: `llama_init_from_model` may write to the model, so
    /// two threads must not create contexts from one model at once.
    creating: Mutex<()>,
}

impl std::fmt::Debug for LlamaCppModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppModel")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("trained_context", &self.trained_context())
            .finish()
    }
}

impl LlamaCppModel {
    /// Loads a GGUF file (read, not memory-mapped, so a file changed later cannot change the
    /// weights).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LlamaCppError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(LlamaCppError::NoModelFile(path.to_path_buf()));
        }
        let backend = backend()?;
        let params = LlamaModelParams::default().with_use_mmap(false);
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|source| {
            LlamaCppError::Load {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if model.n_vocab() <= 0 || model.n_embd() <= 0 {
            return Err(LlamaCppError::Options(format!(
                "{} has an empty vocabulary or hidden state",
                path.display()
            )));
        }
        Ok(Self {
            model,
            path: path.to_path_buf(),
            creating: Mutex::new(()),
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokens in the vocabulary (logits per row).
    pub fn vocab_size(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// Width of the final hidden state.
    pub fn hidden_size(&self) -> usize {
        self.model.n_embd() as usize
    }

    /// The context the model was trained with (the default context of its sequences).
    pub fn trained_context(&self) -> usize {
        self.model.n_ctx_train() as usize
    }

    /// Whether the model has recurrent layers (its memory has no per-cell sequence mask:
    /// it evaluates chains only).
    pub fn is_recurrent(&self) -> bool {
        self.model.is_recurrent() || self.model.is_hybrid()
    }

    /// Serialises context creation (see `creating`).
    pub(crate) fn lock_creation(&self) -> MutexGuard<'_, ()> {
        self.creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The llama-cpp-2 model, for what this adapter does not cover.
    pub fn inner(&self) -> &LlamaModel {
        &self.model
    }

    /// A single-sequence model over a new llama.cpp context.
    pub fn context(&self, options: &LlamaCppOptions) -> Result<LlamaCpp<'_>, LlamaCppError> {
        LlamaCpp::new(self, options)
    }

    /// A batched model: up to `max_sequences` sequences sharing one llama.cpp context (one
    /// unified KV cache) and every forward pass.
    pub fn batch(
        &self,
        options: &LlamaCppOptions,
        max_sequences: usize,
    ) -> Result<LlamaCppBatch<'_>, LlamaCppError> {
        LlamaCppBatch::new(self, options, max_sequences)
    }
}
