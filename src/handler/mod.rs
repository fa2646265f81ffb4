//! Per-request orchestration: parse the request, ask `route` for a decision, dial through `upstream`,
//! then tunnel, forward or intercept. Errors go to `rescue`, the single error → response table.

pub mod rescue;
