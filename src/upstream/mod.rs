//! MECHANISM: reach a target through the hops of a decision: direct dial, CONNECT through a proxy,
//! proxy authentication, failover with bad-proxy memory.
