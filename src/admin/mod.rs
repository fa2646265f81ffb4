//! Admin endpoints: status, metrics, `/proxy.pac`, CA download.
