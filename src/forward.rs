//! One request upstream: hop-by-hop hygiene, absolute-form to proxies, origin-form to origins.
