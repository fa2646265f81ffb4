//! Wiring and shutdown: the only module that knows all others.
