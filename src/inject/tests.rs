use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

fn jwt(claims: &str) -> String {
    format!("eyJhbGciOiJub25lIn0.{}.sig", URL_SAFE_NO_PAD.encode(claims))
}

#[test]
fn injection_paths_are_case_insensitive_and_exact_segments() {
    use Injection::*;
    for (path, want) in [
        ("/powershell-liveid", Some(WsMan)),
        (
            "/PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1",
            Some(WsMan),
        ),
        ("/PowerShell", Some(WsMan)),
        ("/powershell/", Some(WsMan)),
        ("/adminapi/beta/contoso/InvokeCommand", Some(Rest)),
        ("/AdminApi/v1.0/x/EXOModuleFile", Some(Rest)),
        ("/powershell-liveidx", None),
        ("/owa/", None),
        ("/", None),
        ("/mapi/emsmdb", None),
    ] {
        assert_eq!(injection_for_path(path), want, "{path}");
    }
}

#[test]
fn sec_15_browser_requests_never_get_a_token() {
    // SEC-15
    for h in [
        headers(&[("origin", "https://evil.example")]),
        headers(&[("sec-fetch-site", "cross-site")]),
        headers(&[("sec-fetch-mode", "no-cors")]),
    ] {
        assert_eq!(
            classify("/adminapi/beta/x/InvokeCommand", &h),
            Treatment::PassThrough
        );
    }
    let ps = headers(&[("user-agent", "Microsoft WinRM Client")]);
    assert_eq!(
        classify("/powershell-liveid", &ps),
        Treatment::Inject(Injection::WsMan)
    );
}

#[test]
fn account_selection_order() {
    let anchor = ("x-anchormailbox", "UPN:Anchor@Contoso.com");
    let b = basic("Admin@Contoso.com", "placeholder");
    let h = headers(&[("authorization", &b), anchor]);
    let c = select_account(&h, Some("default@contoso.com")).unwrap();
    assert_eq!(c.upn, "admin@contoso.com");
    assert_eq!(
        c.basic_username.as_deref(),
        Some("Admin@Contoso.com"),
        "kept verbatim"
    );

    let h = headers(&[anchor]);
    assert_eq!(select_account(&h, None).unwrap().upn, "anchor@contoso.com");

    let bearer = format!("Bearer {}", jwt(r#"{"upn":"Bearer@contoso.com"}"#));
    let h = headers(&[("authorization", &bearer)]);
    assert_eq!(select_account(&h, None).unwrap().upn, "bearer@contoso.com");

    let h = headers(&[("x-anchormailbox", "APP:SystemMailbox{bb558c35}@tid")]);
    assert_eq!(
        select_account(&h, Some("d@contoso.com")).unwrap().source,
        "default account"
    );
    assert_eq!(select_account(&HeaderMap::new(), None), None);
}

#[test]
fn sec_17_apply_replaces_every_authorization_header() {
    // SEC-17: never two Authorization headers.
    let mut h = headers(&[
        ("authorization", "Basic Zm9vOmJhcg=="),
        ("authorization", "Bearer old"),
    ]);
    apply(&mut h, Injection::WsMan, "admin@contoso.com", "tok123").unwrap();
    let all: Vec<_> = h.get_all(AUTHORIZATION).iter().collect();
    assert_eq!(all.len(), 1);
    let v = all[0].to_str().unwrap();
    let decoded = String::from_utf8(STANDARD.decode(&v[6..]).unwrap()).unwrap();
    assert_eq!(decoded, "admin@contoso.com:Bearer tok123");
    assert!(all[0].is_sensitive());
    assert!(
        !format!("{h:?}").contains("tok123"),
        "sensitive values are not printed"
    );

    apply(&mut h, Injection::Rest, "ignored", "tok456").unwrap();
    assert_eq!(h.get(AUTHORIZATION).unwrap(), "Bearer tok456");
}

#[test]
fn audiences_follow_hosts_and_never_cross() {
    // TOK-11, BAD-27
    let global = &profiles()[0];
    assert_eq!(
        global.audience_for("outlook.office365.com"),
        Some("https://outlook.office365.com")
    );
    assert_eq!(
        global.audience_for("nam12b.outlook.office365.com"),
        Some("https://outlook.office365.com")
    );
    assert_eq!(
        global.audience_for("nam04b.ps.compliance.protection.outlook.com"),
        Some("https://ps.compliance.protection.outlook.com")
    );
    for lookalike in [
        "evil-outlook.office365.com",
        "outlook.office365.com.evil.com",
        "outlook.office365.comx",
        "office365.com",
    ] {
        assert_eq!(global.audience_for(lookalike), None, "{lookalike}");
    }
    assert_eq!(
        Profile::scope_for("https://outlook.office365.com"),
        "https://outlook.office365.com/.default"
    );
}
