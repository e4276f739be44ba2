//! The CPU LLaMA keeps the contract.
