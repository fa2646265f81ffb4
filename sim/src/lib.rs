//! exosim: an emulator of Entra ID, Exchange Online (WS-Man and REST) and an ADFS-like STS, for
//! exoproxy's tests and demo.

pub mod exchange;
