//! PAC engine: fetch, sandboxed evaluation, strict result grammar, per-host cache.
