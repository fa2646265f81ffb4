//! Host, IP/CIDR and port matchers compiled once from config, and WinHTTP/IE bypass-list semantics.
