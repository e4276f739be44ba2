//! The toy models of decoding-core keep the contract.
