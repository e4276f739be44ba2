//! reference: under construction (see its issue).
