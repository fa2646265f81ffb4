//! POLICY: turns a [`crate::target::Target`] into a [`crate::target::Decision`]. Never opens sockets to
//! targets; `upstream` consumes the decision.

pub mod pac;
pub mod rules;
pub mod sts;
pub mod system;
