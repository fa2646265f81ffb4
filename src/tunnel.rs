//! Byte splice between client and upstream with idle timeout and byte counts.
