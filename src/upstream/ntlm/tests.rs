//! MS-NLMP §4.2.4 (NTLMv2) test vectors and message layout checks.

use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// §4.2.4: user "User", domain "Domain", password "Password", server "Server".
fn spec_identity() -> NtlmIdentity {
    NtlmIdentity::new(
        "User",
        Some("Domain"),
        NtSecret::Password(Zeroizing::new("Password".into())),
    )
}

/// §4.2.4.1.3's AV pairs: MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server", EOL.
fn spec_server_name() -> Vec<u8> {
    client_target_info(
        &[
            (2, utf16le("Domain").to_vec()),
            (1, utf16le("Server").to_vec()),
        ],
        false,
    )
}

/// A CHALLENGE message carrying `pairs`, as a server would send it.
pub(super) fn challenge_bytes(
    flags: u32,
    server_challenge: [u8; 8],
    pairs: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut info = Vec::new();
    for (id, v) in pairs {
        push_av(&mut info, *id, v);
    }
    push_av(&mut info, AV_EOL, &[]);
    let mut m = Vec::new();
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    push_security_buffer(&mut m, 0, 56);
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]);
    push_security_buffer(&mut m, info.len(), 56);
    m.extend_from_slice(&VERSION);
    m.extend_from_slice(&info);
    m
}

#[test]
fn nt_hash_and_ntowfv2_match_ms_nlmp_4_2_4() {
    let id = spec_identity();
    let nt = id.secret.nt_hash();
    assert_eq!(nt.to_vec(), h("a4f49c406510bdcab6824ee7c30fd852"));
    assert_eq!(
        ntowfv2(&nt, "User", "Domain").to_vec(),
        h("0c868a403bfd7a93a3001ef22ef02e3f")
    );
}

#[test]
fn ntlmv2_responses_match_ms_nlmp_4_2_4() {
    let key = ntowfv2(&spec_identity().secret.nt_hash(), "User", "Domain");
    let r = ntlmv2_responses(
        &key,
        &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
        &[0xaa; 8],
        &[0; 8],
        &spec_server_name(),
    );
    assert_eq!(
        &r.nt_response[..16],
        h("68cd0ab851e51c96aabc927bebef6a1c").as_slice()
    );
    assert_eq!(
        r.nt_response,
        h(
            "68cd0ab851e51c96aabc927bebef6a1c01010000000000000000000000000000aaaaaaaaaaaaaaaa00000000\
           02000c0044006f006d00610069006e0001000c005300650072007600650072000000000000000000"
        )
    );
    assert_eq!(
        r.lm_response.to_vec(),
        h("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
    );
    assert_eq!(
        r.session_base_key.to_vec(),
        h("8de40ccadbc14a82f15cb0ad0de95ca3")
    );
}

#[test]
fn nt_hash_secret_equals_password_secret() {
    let hash: [u8; 16] = h("a4f49c406510bdcab6824ee7c30fd852").try_into().unwrap();
    let by_hash = NtSecret::NtHash(Zeroizing::new(hash));
    assert_eq!(by_hash.nt_hash(), spec_identity().secret.nt_hash());
    assert_eq!(format!("{by_hash:?}"), "NtSecret([redacted])");
}

#[test]
fn domain_from_backslash_username() {
    let secret = NtSecret::Password(Zeroizing::new("pw-s3cret".into()));
    let id = NtlmIdentity::new("CORP\\alice", None, secret.clone());
    assert_eq!((id.domain.as_str(), id.user.as_str()), ("CORP", "alice"));
    let id = NtlmIdentity::new("alice@corp.example", None, secret);
    assert_eq!(
        (id.domain.as_str(), id.user.as_str()),
        ("", "alice@corp.example")
    );
    assert!(!format!("{id:?}").contains("s3cret"));
}

#[test]
fn negotiate_message_layout() {
    let m = negotiate_message();
    assert_eq!(&m[..8], b"NTLMSSP\0");
    assert_eq!(read_u32(&m, 8), Some(1));
    assert_eq!(read_u32(&m, 12), Some(CLIENT_FLAGS));
    assert_eq!(m.len(), 40);
}

#[test]
fn challenge_parse_reads_flags_challenge_and_timestamp() {
    let pairs = vec![(2, utf16le("Domain").to_vec()), (AV_TIMESTAMP, vec![7; 8])];
    let bytes = challenge_bytes(CLIENT_FLAGS, [9; 8], &pairs);
    let c = ChallengeMessage::parse(&bytes).unwrap();
    assert_eq!(c.flags, CLIENT_FLAGS);
    assert_eq!(c.server_challenge, [9; 8]);
    assert_eq!(c.target_info, pairs);
    assert_eq!(c.timestamp, Some([7; 8]));
}

#[test]
fn challenge_parse_refuses_garbage_and_out_of_bounds() {
    assert!(ChallengeMessage::parse(b"").is_err());
    assert!(ChallengeMessage::parse(&negotiate_message()).is_err());
    let mut bytes = challenge_bytes(CLIENT_FLAGS, [9; 8], &[(1, vec![1; 4])]);
    bytes[40] = 0xff; // target info length beyond the buffer: read as none
    assert!(
        ChallengeMessage::parse(&bytes)
            .unwrap()
            .target_info
            .is_empty()
    );
    let mut bytes = challenge_bytes(CLIENT_FLAGS, [9; 8], &[(1, vec![1; 4])]);
    bytes[58] = 0xff; // an AV pair longer than the target info
    assert!(ChallengeMessage::parse(&bytes).is_err());
    let bytes = challenge_bytes(CLIENT_FLAGS & !NEGOTIATE_UNICODE, [9; 8], &[]);
    assert!(ChallengeMessage::parse(&bytes).is_err());
    let mut bytes = challenge_bytes(CLIENT_FLAGS, [9; 8], &[(1, vec![1; 4])]);
    (bytes[40], bytes[42]) = (8, 8); // the field stops before MsvAvEOL
    assert!(ChallengeMessage::parse(&bytes).is_err());
}

#[test]
fn authenticate_message_carries_verifiable_responses_and_mic() {
    let pairs = vec![(1, utf16le("Server").to_vec()), (AV_TIMESTAMP, vec![3; 8])];
    let chal = challenge_bytes(CLIENT_FLAGS, [5; 8], &pairs);
    let parsed = ChallengeMessage::parse(&chal).unwrap();
    let id = spec_identity();
    let neg = negotiate_message();
    let m = authenticate_message(&id, &neg, &chal, &parsed, [0xaa; 8], [3; 8]);
    assert_eq!(read_u32(&m, 8), Some(3));
    let lm = payload(&m, 12).unwrap();
    assert_eq!(
        lm, [0u8; 24],
        "LMv2 is zeroed when the server sent a timestamp"
    );
    let nt = payload(&m, 20).unwrap();
    assert_eq!(payload(&m, 28).unwrap(), utf16le("Domain").as_slice());
    assert_eq!(payload(&m, 36).unwrap(), utf16le("User").as_slice());
    // A verifier recomputes NTProofStr from the blob.
    let key = ntowfv2(&id.secret.nt_hash(), "USER", "Domain");
    let proof = hmac_md5(key.as_slice(), &[&[5; 8], &nt[16..]]);
    assert_eq!(proof.as_slice(), &nt[..16]);
    // The blob echoes the timestamp and announces the MIC.
    assert_eq!(&nt[24..32], &[3; 8]);
    assert!(nt.windows(8).any(|w| w == [6, 0, 4, 0, 2, 0, 0, 0]));
    // MIC = HMAC-MD5(session key, neg || chal || auth with zero MIC).
    let session = hmac_md5(key.as_slice(), &[proof.as_slice()]);
    let mut zeroed = m.to_vec();
    zeroed[MIC_OFFSET..MIC_OFFSET + 16].fill(0);
    let mic = hmac_md5(session.as_slice(), &[&neg, &chal, &zeroed]);
    assert_eq!(mic.as_slice(), &m[MIC_OFFSET..MIC_OFFSET + 16]);
}

#[test]
fn without_timestamp_lmv2_is_sent_and_no_mic() {
    let chal = challenge_bytes(CLIENT_FLAGS, [5; 8], &[(1, utf16le("S").to_vec())]);
    let parsed = ChallengeMessage::parse(&chal).unwrap();
    let m = authenticate_message(
        &spec_identity(),
        &negotiate_message(),
        &chal,
        &parsed,
        [0xaa; 8],
        [0; 8],
    );
    assert_eq!(&payload(&m, 12).unwrap()[16..], &[0xaa; 8]);
    assert_eq!(&m[MIC_OFFSET..MIC_OFFSET + 16], &[0; 16]);
}

#[test]
fn squid_fake_auth_challenge_with_garbage_offsets_parses() {
    // squid 5.7's ntlm_fake_auth: empty target info whose offset points nowhere, no version.
    let bytes = h(
        "4e544c4d535350000200000009000900aeaaaaaa35828ae2b0880c98e4bdbbb50000000000003a00574f524b47524f5550",
    );
    let c = ChallengeMessage::parse(&bytes).unwrap();
    assert!(c.target_info.is_empty());
    assert_eq!(c.timestamp, None);
}
