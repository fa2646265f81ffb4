use super::*;

const PYPSRP_RECEIVE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header><wsa:Action s:mustUnderstand="true">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive</wsa:Action><wsa:MessageID>uuid:ABC</wsa:MessageID><wsman:OperationTimeout>PT20S</wsman:OperationTimeout><wsman:ResourceURI s:mustUnderstand="true">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</wsman:ResourceURI><wsman:SelectorSet><wsman:Selector Name="ShellId">S-1</wsman:Selector></wsman:SelectorSet></s:Header><s:Body><rsp:Receive><rsp:DesiredStream CommandId="C-1">stdout stderr</rsp:DesiredStream></rsp:Receive></s:Body></s:Envelope>"#;

#[test]
fn parses_header_fields_regardless_of_prefix() {
    let env = Envelope::parse(PYPSRP_RECEIVE).unwrap();
    assert!(env.action.ends_with("/shell/Receive"));
    assert_eq!(env.message_id, "uuid:ABC");
    assert_eq!(env.shell_id.as_deref(), Some("S-1"));
    assert_eq!(env.operation_timeout, Some(Duration::from_secs(20)));
    assert!(env.resource_uri.ends_with("/shell/cmd"));
}

#[test]
fn reads_attributes_and_text() {
    let ds = first(PYPSRP_RECEIVE, "DesiredStream").unwrap();
    assert_eq!(ds.attr("CommandId").as_deref(), Some("C-1"));
    assert_eq!(ds.text(), "stdout stderr");
    let xml = r#"<r:Stream Name='stdin' End="true">a&amp;b</r:Stream><x:Empty/>"#;
    let s = first(xml, "Stream").unwrap();
    assert_eq!(s.attr("Name").as_deref(), Some("stdin"));
    assert_eq!(s.attr("End").as_deref(), Some("true"));
    assert_eq!(s.text(), "a&b");
    assert_eq!(first(xml, "Empty").unwrap().text(), "");
    assert!(first(xml, "Missing").is_none());
}

#[test]
fn parses_durations() {
    assert_eq!(parse_duration("PT180.000S"), Some(Duration::from_secs(180)));
    assert_eq!(parse_duration("PT1M30S"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("PT1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("P1D"), None);
    assert_eq!(parse_duration("PT5"), None);
}

#[test]
fn fault_carries_code_and_relates_to() {
    let xml = Fault::timed_out().to_xml("uuid:X", "host");
    assert!(xml.contains("Code=\"2150858793\""));
    assert!(xml.contains("<s:Value>w:TimedOut</s:Value>"));
    assert!(xml.contains("<a:RelatesTo>uuid:X</a:RelatesTo>"));
}
