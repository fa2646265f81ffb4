//! The request-head guard on arbitrary bytes: never panics; an accepted head is accepted again when
//! rebuilt from its parsed request line and the same header block, and no prefix of it is refused.
#![no_main]

use exoproxy::handler::head::check_head;
use exoproxy::limits::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(Some(head)) = check_head(data, &limits) else {
        return;
    };
    let line_end = data.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut rebuilt =
        format!("{} {} HTTP/1.{}\r\n", head.method, head.target, head.version).into_bytes();
    rebuilt.extend_from_slice(&data[line_end..head.head_len]);
    assert_eq!(check_head(&rebuilt, &limits), Ok(Some(head.clone())));
    assert_eq!(check_head(&data[..head.head_len - 1], &limits), Ok(None));
});
