//! Just enough SOAP for WS-Man: pull named elements out of a request by local name (prefixes differ
//! between WinRM, which writes `s:`/`a:`/`w:`, and pypsrp, which registers its own), and write
//! responses and faults the way WinRM does (docs/PROTOCOL.md#wsman-soap; pypsrp `wsman.py` reads them).
//!
//! This is string scanning, not an XML parser: it trusts well-formed input from WS-Man clients and
//! never needs namespaces, since WS-Man's element names are unambiguous inside one envelope.

use std::time::Duration;

pub(crate) const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub(crate) const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub(crate) const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub(crate) const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
pub(crate) const NS_TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
pub(crate) const NS_FAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
const FAULT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

/// One element found by local name: its raw attribute text and the text up to its first child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    attrs: &'a str,
    text: &'a str,
}

/// The WS-Addressing / WS-Management header fields a handler needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Envelope {
    pub(crate) action: String,
    pub(crate) message_id: String,
    pub(crate) resource_uri: String,
    /// `w:OperationTimeout`, e.g. `PT180.000S`.
    pub(crate) operation_timeout: Option<Duration>,
    /// `w:Selector Name="ShellId"`.
    pub(crate) shell_id: Option<String>,
}

/// A WS-Man fault as WinRM sends it (HTTP 500, SOAP 1.2 fault, `WSManFault` detail with a code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// `s:Sender` or `s:Receiver`.
    pub(crate) code: &'static str,
    /// e.g. `w:TimedOut`, `w:InvalidSelectors`, `w:QuotaLimit`.
    pub(crate) subcode: &'static str,
    /// The WSManFault `Code` attribute (a Windows error number).
    pub(crate) wsman_code: u32,
    pub(crate) message: String,
}

// === impl Element ===

impl<'a> Element<'a> {
    /// Attribute value by local name (`Name`, `CommandId`, `End`, ...), unescaped.
    pub(crate) fn attr(&self, local: &str) -> Option<String> {
        let mut rest = self.attrs;
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            let quote = after.chars().next()?;
            if quote != '"' && quote != '\'' {
                return None;
            }
            let end = after[1..].find(quote)?;
            let value = &after[1..1 + end];
            if local_name(name) == local {
                return Some(unescape(value));
            }
            rest = &after[end + 2..];
        }
        None
    }

    /// Text content (up to the first child element), unescaped and trimmed.
    pub(crate) fn text(&self) -> String {
        unescape(self.text.trim())
    }
}

/// Every element whose local name is `local`, in document order.
pub(crate) fn elements<'a>(xml: &'a str, local: &str) -> Vec<Element<'a>> {
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(off) = xml[pos..].find('<') {
        let start = pos + off + 1;
        let Some(tag_end) = tag_end(xml, start) else {
            break;
        };
        pos = tag_end + 1;
        let tag = &xml[start..tag_end];
        if tag.starts_with(['/', '?', '!']) {
            continue;
        }
        let name_len = tag
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tag.len());
        if local_name(&tag[..name_len]) != local {
            continue;
        }
        let self_closing = tag.ends_with('/');
        let attrs = tag[name_len..].trim_end_matches('/');
        let text = if self_closing {
            ""
        } else {
            let rest = &xml[pos..];
            &rest[..rest.find('<').unwrap_or(rest.len())]
        };
        found.push(Element { attrs, text });
    }
    found
}

/// The first element named `local`.
pub(crate) fn first<'a>(xml: &'a str, local: &str) -> Option<Element<'a>> {
    elements(xml, local).into_iter().next()
}

/// Index of the `>` closing the tag that starts at `start`, skipping quoted attribute values.
fn tag_end(xml: &str, start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, b) in xml.as_bytes()[start..].iter().enumerate() {
        match (quote, *b) {
            (None, b'"' | b'\'') => quote = Some(*b),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return Some(start + i),
            _ => {}
        }
    }
    None
}

fn local_name(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

// === impl Envelope ===

impl Envelope {
    /// Read the header fields; `None` when the body is not a WS-Man request (no Action or MessageID).
    pub(crate) fn parse(xml: &str) -> Option<Envelope> {
        let text_of = |local: &str| first(xml, local).map(|e| e.text());
        let shell_id = elements(xml, "Selector")
            .into_iter()
            .find(|e| {
                e.attr("Name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("ShellId"))
            })
            .map(|e| e.text());
        Some(Envelope {
            action: text_of("Action")?,
            message_id: text_of("MessageID")?,
            resource_uri: text_of("ResourceURI").unwrap_or_default(),
            operation_timeout: text_of("OperationTimeout").and_then(|t| parse_duration(&t)),
            shell_id,
        })
    }
}

/// Parse an xs:duration of the form WS-Man clients send: `PT20S`, `PT180.000S`, `PT1M30S`, `PT1H`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let rest = text.trim().strip_prefix("PT")?;
    let mut total = 0f64;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'H' | 'M' | 'S' => {
                let n: f64 = number.parse().ok()?;
                total += n * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                number.clear();
            }
            _ => return None,
        }
    }
    (number.is_empty() && total.is_finite()).then(|| Duration::from_secs_f64(total))
}

// === writing ===

/// Escape text or an attribute value.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A response envelope: `action` is the response action URI, `relates_to` the request's MessageID.
pub(crate) fn response(action: &str, relates_to: &str, body: &str) -> String {
    envelope(action, relates_to, body)
}

fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:x=\"{NS_TRANSFER}\" \
         xmlns:w=\"{NS_WSMAN}\" xmlns:rsp=\"{NS_SHELL}\">\
         <s:Header><a:Action>{}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:To>{ANONYMOUS}</a:To>\
         <a:RelatesTo>{}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        escape(action),
        super::super::ids::uuid(),
        escape(relates_to),
    )
}

// === impl Fault ===

impl Fault {
    /// Receive found no output within OperationTimeout: a normal event clients answer with a new Receive.
    pub(crate) fn timed_out() -> Fault {
        Fault {
            code: "s:Receiver",
            subcode: "w:TimedOut",
            wsman_code: 2150858793,
            message: "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
                .to_owned(),
        }
    }

    /// The shell is unknown here (or belongs to someone else, or the affinity cookie is missing):
    /// ERROR_WSMAN_INVALID_SELECTORS, the error WinRM clients report without the MS-WSMAN cookie.
    pub(crate) fn shell_not_found(shell_id: &str) -> Fault {
        Fault {
            code: "s:Sender",
            subcode: "w:InvalidSelectors",
            wsman_code: 2150858843,
            message: format!(
                "The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on the server. \
                 Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. \
                 Provide the correct ShellId or create a new shell and retry the operation."
            ),
        }
    }

    /// ERROR_WSMAN_QUOTA_MAX_SHELLS: the user already has the maximum number of shells.
    pub(crate) fn shell_quota(max: usize) -> Fault {
        Fault {
            code: "s:Sender",
            subcode: "w:QuotaLimit",
            wsman_code: 2150859173,
            message: format!(
                "The WS-Management service cannot process the request. The maximum number of concurrent shells for this user \
                 has been exceeded ({max}). Close existing shells or raise the quota for this user."
            ),
        }
    }

    /// The request is not something this emulator understands.
    pub(crate) fn unsupported(what: &str) -> Fault {
        Fault {
            code: "s:Sender",
            subcode: "a:ActionNotSupported",
            wsman_code: 2150858754,
            message: format!("The WS-Management service does not support the request: {what}"),
        }
    }

    /// The fault envelope, relating to `relates_to` (may be empty when the request was unreadable).
    pub(crate) fn to_xml(&self, relates_to: &str, machine: &str) -> String {
        let body = format!(
            "<s:Fault><s:Code><s:Value>{}</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code>\
             <s:Reason><s:Text xml:lang=\"en-US\">{msg}</s:Text></s:Reason><s:Detail>\
             <f:WSManFault xmlns:f=\"{NS_FAULT}\" Code=\"{}\" Machine=\"{}\"><f:Message>{msg}</f:Message></f:WSManFault>\
             </s:Detail></s:Fault>",
            self.code,
            self.subcode,
            self.wsman_code,
            escape(machine),
            msg = escape(&self.message),
        );
        envelope(FAULT_ACTION, relates_to, &body)
    }
}

#[cfg(test)]
mod tests;
