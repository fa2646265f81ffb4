//! Entra ID error answers in the real shape (docs/PROTOCOL.md#token-responses): `error`,
//! `error_description` starting
//! with `AADSTSnnnn:` and ending with Trace ID / Correlation ID / Timestamp lines, `error_codes`,
//! `timestamp`, `trace_id`, `correlation_id`, `error_uri`, and `suberror` where Entra sends one.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::json;

use crate::ids::guid;
use crate::wire::{self, Request};

/// One Entra error, before the per-request ids are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    /// OAuth `error` value (what clients branch on).
    pub(crate) error: &'static str,
    pub(crate) code: u32,
    pub(crate) message: String,
    pub(crate) suberror: Option<&'static str>,
}

// === impl AadError ===

impl AadError {
    pub(crate) fn new(error: &'static str, code: u32, message: impl Into<String>) -> AadError {
        AadError {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            message: message.into(),
            suberror: None,
        }
    }

    pub(crate) fn status(mut self, status: StatusCode) -> AadError {
        self.status = status;
        self
    }

    pub(crate) fn suberror(mut self, suberror: &'static str) -> AadError {
        self.suberror = Some(suberror);
        self
    }

    pub(crate) fn invalid_request(code: u32, message: impl Into<String>) -> AadError {
        AadError::new("invalid_request", code, message)
    }

    pub(crate) fn invalid_grant(code: u32, message: impl Into<String>) -> AadError {
        AadError::new("invalid_grant", code, message)
    }

    pub(crate) fn invalid_client(code: u32, message: impl Into<String>) -> AadError {
        AadError::new("invalid_client", code, message).status(StatusCode::UNAUTHORIZED)
    }

    /// A missing form parameter (AADSTS900144).
    pub(crate) fn missing(param: &str) -> AadError {
        AadError::invalid_request(
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    /// The tenant in the path is unknown (AADSTS90002).
    pub(crate) fn tenant_not_found(tenant: &str) -> AadError {
        AadError::invalid_request(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    }

    /// The client id is not registered (AADSTS700016).
    pub(crate) fn unknown_client(client_id: &str) -> AadError {
        AadError::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory 'contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        )
    }

    /// The JSON answer. The correlation id echoes `client-request-id` as Entra does.
    pub(crate) fn into_response(self, req: &Request) -> Response<Bytes> {
        let trace_id = guid();
        let correlation_id = wire::header_str(req, "client-request-id")
            .map(String::from)
            .unwrap_or_else(guid);
        let timestamp = timestamp_now();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let mut body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let Some(sub) = self.suberror {
            body["suberror"] = json!(sub);
        }
        wire::json(self.status, &body)
    }
}

/// `2026-11-28 04:16:45Z`, the format Entra uses in error bodies.
pub(crate) fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
