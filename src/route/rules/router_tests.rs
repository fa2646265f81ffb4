//! Unit tests for Router decisions.
