//! Accept loop: connection limit, hyper HTTP/1 with upgrades, graceful drain.
