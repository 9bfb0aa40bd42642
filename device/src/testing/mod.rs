//! Test helpers (feature `test-utils`).
