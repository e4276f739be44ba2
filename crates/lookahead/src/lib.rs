//! lookahead: under construction (see its issue).
