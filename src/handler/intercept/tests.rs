use super::*;

#[test]
fn flavor_follows_the_injection_path() {
    assert_eq!(Flavor::of("/PowerShell-LiveID"), Flavor::WsMan);
    assert_eq!(Flavor::of("/adminapi/beta/x/InvokeCommand"), Flavor::Rest);
    assert_eq!(Flavor::of("/owa/"), Flavor::Plain);
}
