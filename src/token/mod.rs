//! Tokens: sign-in flows, the on-disk cache, the refresh schedule and per-account state.
