//! medusa: under construction (see its issue).
