//! The single table that turns a [`crate::error::ProxyError`] into a response the user can act on.
