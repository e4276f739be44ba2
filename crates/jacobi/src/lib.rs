//! jacobi: under construction (see its issue).
