//! TLS interception: the local CA, leaf minting and the TLS configs for both sides.
