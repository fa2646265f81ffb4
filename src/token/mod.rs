//! Tokens: sign-in flows, the on-disk cache, the refresh schedule and per-account state.

pub mod account;
pub mod cache;
pub mod jwt;
pub mod oauth;
pub mod schedule;
pub mod secret;
pub mod transport;
