use super::*;

const RECEIVE: &str = "<s:Body><rsp:ReceiveResponse>\
    <rsp:Stream Name=\"stdout\" CommandId=\"C1\">YWRtaW5A</rsp:Stream>\
    <rsp:Stream Name=\"stderr\" CommandId=\"C1\">b29wcw==</rsp:Stream>\
    <rsp:Stream Name=\"stdout\" CommandId=\"C1\">Y29udG9zby5jb20NCg==</rsp:Stream>\
    <rsp:CommandState CommandId=\"C1\" State=\"http://x/CommandState/Done\"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>\
    </rsp:ReceiveResponse></s:Body>";

#[test]
fn stdout_streams_are_decoded_in_order_and_stderr_is_left_out() {
    assert_eq!(stdout_of(RECEIVE), "admin@contoso.com\r\n");
}

#[test]
fn element_text_finds_prefixed_elements_with_attributes() {
    assert_eq!(element_text(RECEIVE, "ExitCode").as_deref(), Some("0"));
    let create = "<rsp:Shell><rsp:ShellId>ABC-1</rsp:ShellId></rsp:Shell>";
    assert_eq!(element_text(create, "ShellId").as_deref(), Some("ABC-1"));
    assert_eq!(element_text(create, "Id"), None, "local names match whole");
    assert_eq!(element_text("<a:Empty/><a:Missing>", "Empty"), None);
}

#[test]
fn affinity_cookie_and_redirect_host_are_read_from_the_headers() {
    let mut headers = http::HeaderMap::new();
    headers.append("set-cookie", "other=1; path=/".parse().unwrap());
    headers.append(
        "set-cookie",
        "MS-WSMAN=abc123; path=/PowerShell-LiveID; secure; HttpOnly"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "location",
        "https://nam12b.outlook.office365.com/PowerShell-LiveID?x=1"
            .parse()
            .unwrap(),
    );
    let reply = Reply {
        status: http::StatusCode::FOUND,
        headers,
        body: String::new(),
    };
    assert_eq!(set_cookie(&reply).as_deref(), Some("abc123"));
    assert_eq!(
        redirect_host(&reply).as_deref(),
        Ok("nam12b.outlook.office365.com")
    );
}
