//! Upstream proxy settings from the system: environment variables, WinHTTP and IE settings
//! (platform-neutral parsers; live reads behind `cfg(windows)`).
