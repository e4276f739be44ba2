//! llama-cpu: under construction (see its issue).
