//! NTLMv2 client messages (MS-NLMP), sans-IO: Type 1 (negotiate), parse Type 2 (challenge), build
//! Type 3 (authenticate) with the NTLMv2 and LMv2 responses and a MIC.
//!
//! Contract:
//! - Only NTLMv2 is produced (no LM, no NTLMv1): `NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)),
//!   UTF-16LE(uppercase(user) + domain))`, `NTProofStr = HMAC-MD5(NTOWFv2, server challenge || blob)`.
//!   The math is pinned by MS-NLMP §4.2.4's test vectors and checked against pyspnego's acceptor.
//! - Credentials are a password or an NT hash ([`NtSecret`]); neither, nor any token, challenge or key,
//!   is ever printed: the secret types redact themselves in `Debug`.
//! - When the challenge carries `MsvAvTimestamp`, its time is used, the LMv2 response is zeroed and a
//!   MIC over the three messages is sent (MS-NLMP §3.1.5.1.2).
//! - No signing or sealing is negotiated: HTTP proxy authentication only authenticates the connection.

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use zeroize::Zeroizing;

type HmacMd5 = Hmac<Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;
/// The flags we ask for and accept back: Unicode NTLMv2 without signing, sealing or key exchange.
const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_VERSION
    | NEGOTIATE_128
    | NEGOTIATE_56;
/// Windows 10.0 build 19041, NTLM revision 15: what a current Windows client announces.
const VERSION: [u8; 8] = [10, 0, 0x61, 0x4a, 0, 0, 0, 15];

const AV_EOL: u16 = 0;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
/// `MsvAvFlags` bit: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;
/// Offset of the MIC in our AUTHENTICATE message (after the version field).
const MIC_OFFSET: usize = 72;
const AUTHENTICATE_HEADER: usize = 88;
/// Challenges larger than this are not NTLM (a Type 2 is usually ~200 bytes).
const MAX_CHALLENGE: usize = 8 * 1024;

/// The user's secret: a password, or the NT hash (MD4 of the UTF-16LE password) itself.
#[derive(Clone, PartialEq, Eq)]
pub enum NtSecret {
    Password(Zeroizing<String>),
    NtHash(Zeroizing<[u8; 16]>),
}

/// Who authenticates: user, domain (may be empty) and secret.
#[derive(Clone)]
pub struct NtlmIdentity {
    pub user: String,
    pub domain: String,
    pub secret: NtSecret,
}

/// What a Type 2 (CHALLENGE) message told us.
#[derive(Clone, PartialEq, Eq)]
pub struct ChallengeMessage {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    /// The raw AV pairs (MS-NLMP §2.2.2.1), `MsvAvEOL` excluded.
    pub target_info: Vec<(u16, Vec<u8>)>,
    /// `MsvAvTimestamp` (FILETIME), when the server sent one.
    pub timestamp: Option<[u8; 8]>,
}

/// The NTLMv2 responses and the session base key for one challenge.
#[derive(Clone)]
pub struct V2Responses {
    pub nt_response: Vec<u8>,
    pub lm_response: [u8; 24],
    pub session_base_key: Zeroizing<[u8; 16]>,
}

/// Why a challenge could not be answered; never contains token bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NTLM challenge unusable: {0}")]
pub struct NtlmError(pub &'static str);

/// A client-side NTLM handshake: remembers the Type 1 it sent, for the MIC.
#[derive(Debug)]
pub struct NtlmClient {
    identity: NtlmIdentity,
    negotiate: Vec<u8>,
}

// === impl NtSecret ===

impl NtSecret {
    /// `MD4(UTF-16LE(password))`, or the configured hash as is.
    pub fn nt_hash(&self) -> Zeroizing<[u8; 16]> {
        match self {
            NtSecret::NtHash(h) => h.clone(),
            NtSecret::Password(p) => {
                let mut md4 = Md4::new();
                md4.update(utf16le(p).as_slice());
                Zeroizing::new(md4.finalize().into())
            }
        }
    }
}

impl std::fmt::Debug for NtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NtSecret([redacted])")
    }
}

// === impl NtlmIdentity ===

impl NtlmIdentity {
    /// Splits `DOMAIN\user` when no domain is given; `user@realm` stays whole (Windows sends UPNs
    /// as the user name with an empty domain).
    pub fn new(username: &str, domain: Option<&str>, secret: NtSecret) -> NtlmIdentity {
        let (domain, user) = match (domain, username.split_once('\\')) {
            (Some(d), _) => (d.to_string(), username.to_string()),
            (None, Some((d, u))) => (d.to_string(), u.to_string()),
            (None, None) => (String::new(), username.to_string()),
        };
        NtlmIdentity {
            user,
            domain,
            secret,
        }
    }
}

impl std::fmt::Debug for NtlmIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NtlmIdentity({}\\{}, [redacted])",
            self.domain, self.user
        )
    }
}

// === impl ChallengeMessage ===

impl ChallengeMessage {
    /// Parses a Type 2 message, checking every offset against the buffer (the 32-byte header is
    /// required; the target info may be absent).
    pub fn parse(bytes: &[u8]) -> Result<ChallengeMessage, NtlmError> {
        if bytes.len() > MAX_CHALLENGE {
            return Err(NtlmError("message too large"));
        }
        if bytes.len() < 32 || &bytes[..8] != SIGNATURE || read_u32(bytes, 8) != Some(2) {
            return Err(NtlmError("not an NTLM CHALLENGE message"));
        }
        let flags = read_u32(bytes, 20).ok_or(NtlmError("truncated"))?;
        if flags & NEGOTIATE_UNICODE == 0 {
            return Err(NtlmError("the server does not speak Unicode NTLM"));
        }
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(&bytes[24..32]);
        // Target info outside the message is read as none: squid's ntlm_fake_auth sends a short,
        // pre-NTLMv2 challenge with the flag set and no field. The blob then names no server, which
        // weakens nothing on our side.
        let info = match flags & NEGOTIATE_TARGET_INFO {
            0 => &[][..],
            _ => payload(bytes, 40).unwrap_or_default(),
        };
        let target_info = parse_av_pairs(info)?;
        let timestamp = target_info
            .iter()
            .find(|(id, v)| *id == AV_TIMESTAMP && v.len() == 8)
            .and_then(|(_, v)| v.as_slice().try_into().ok());
        Ok(ChallengeMessage {
            flags,
            server_challenge,
            target_info,
            timestamp,
        })
    }
}

impl std::fmt::Debug for ChallengeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChallengeMessage(flags {:#010x}, [redacted])",
            self.flags
        )
    }
}

impl std::fmt::Debug for V2Responses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("V2Responses([redacted])")
    }
}

// === impl NtlmClient ===

impl NtlmClient {
    pub fn new(identity: NtlmIdentity) -> NtlmClient {
        NtlmClient {
            identity,
            negotiate: negotiate_message(),
        }
    }

    /// The Type 1 message to send first.
    pub fn negotiate(&self) -> &[u8] {
        &self.negotiate
    }

    /// The Type 3 message answering a Type 2, with a fresh client challenge and the current time
    /// (or the server's timestamp).
    pub fn authenticate(&self, challenge_bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, NtlmError> {
        let challenge = ChallengeMessage::parse(challenge_bytes)?;
        let mut client_challenge = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut client_challenge)
            .map_err(|_| NtlmError("no randomness for the client challenge"))?;
        let time = challenge.timestamp.unwrap_or_else(filetime_now);
        Ok(authenticate_message(
            &self.identity,
            &self.negotiate,
            challenge_bytes,
            &challenge,
            client_challenge,
            time,
        ))
    }
}

/// The Type 1 message: our flags, no domain or workstation (they are optional and leak names).
pub fn negotiate_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0u8; 16]); // empty domain and workstation fields
    m.extend_from_slice(&VERSION);
    m
}

/// `NTOWFv2(user, domain)` from the NT hash.
pub fn ntowfv2(nt_hash: &[u8; 16], user: &str, domain: &str) -> Zeroizing<[u8; 16]> {
    let mut who = utf16le(&user.to_uppercase());
    who.extend_from_slice(&utf16le(domain));
    hmac_md5(nt_hash, &[&who])
}

/// The NTLMv2 response, the LMv2 response and the session base key (MS-NLMP §3.3.2).
/// `server_name` is the AV-pair block (with its EOL) copied into the blob.
pub fn ntlmv2_responses(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    time: &[u8; 8],
    server_name: &[u8],
) -> V2Responses {
    let mut blob = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(time);
    blob.extend_from_slice(client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(server_name);
    blob.extend_from_slice(&[0; 4]);
    let nt_proof = hmac_md5(response_key, &[server_challenge, &blob]);
    let session_base_key = hmac_md5(response_key, &[nt_proof.as_slice()]);
    let lm_proof = hmac_md5(response_key, &[server_challenge, client_challenge]);
    let mut lm_response = [0u8; 24];
    lm_response[..16].copy_from_slice(lm_proof.as_slice());
    lm_response[16..].copy_from_slice(client_challenge);
    let mut nt_response = nt_proof.to_vec();
    nt_response.extend_from_slice(&blob);
    V2Responses {
        nt_response,
        lm_response,
        session_base_key,
    }
}

/// Builds the Type 3 message (deterministic: the randomness and time come in as arguments).
pub fn authenticate_message(
    identity: &NtlmIdentity,
    negotiate: &[u8],
    challenge_bytes: &[u8],
    challenge: &ChallengeMessage,
    client_challenge: [u8; 8],
    time: [u8; 8],
) -> Zeroizing<Vec<u8>> {
    let with_mic = challenge.timestamp.is_some();
    let key = ntowfv2(&identity.secret.nt_hash(), &identity.user, &identity.domain);
    let server_name = client_target_info(&challenge.target_info, with_mic);
    let mut r = ntlmv2_responses(
        &key,
        &challenge.server_challenge,
        &client_challenge,
        &time,
        &server_name,
    );
    if with_mic {
        r.lm_response = [0; 24];
    }
    let flags = challenge.flags & CLIENT_FLAGS | NEGOTIATE_UNICODE;
    let fields: [&[u8]; 5] = [
        &r.lm_response,
        &r.nt_response,
        &utf16le(&identity.domain),
        &utf16le(&identity.user),
        &[], // workstation: optional, and a name we need not reveal
    ];
    let mut m = Zeroizing::new(layout_authenticate(&fields, flags));
    if with_mic {
        // The exported session key is the session base key: no key exchange was negotiated.
        let mic = hmac_md5(
            r.session_base_key.as_slice(),
            &[negotiate, challenge_bytes, &m],
        );
        m[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(mic.as_slice());
    }
    m
}

/// Header (security buffers, empty session key, flags, version, zero MIC) followed by the payloads.
fn layout_authenticate(fields: &[&[u8]; 5], flags: u32) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(AUTHENTICATE_HEADER + fields.iter().map(|f| f.len()).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = AUTHENTICATE_HEADER;
    for field in fields {
        push_security_buffer(&mut m, field.len(), offset);
        offset += field.len();
    }
    push_security_buffer(&mut m, 0, offset); // encrypted random session key: none
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&VERSION);
    m.extend_from_slice(&[0; 16]);
    for field in fields {
        m.extend_from_slice(field);
    }
    m
}

fn push_security_buffer(m: &mut Vec<u8>, len: usize, offset: usize) {
    // Fields are bounded by MAX_CHALLENGE plus short names, so the casts cannot truncate in practice;
    // saturate rather than wrap if a caller passes something absurd.
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&offset.to_le_bytes());
}

/// The server's AV pairs as the client echoes them: `MsvAvFlags` gains the MIC bit when we send a
/// MIC, and the block ends with `MsvAvEOL`.
fn client_target_info(pairs: &[(u16, Vec<u8>)], with_mic: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut saw_flags = false;
    for (id, value) in pairs {
        let mut value = value.clone();
        if *id == AV_FLAGS && with_mic && value.len() == 4 {
            let flags = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) | AV_FLAG_MIC;
            value = flags.to_le_bytes().to_vec();
            saw_flags = true;
        }
        push_av(&mut out, *id, &value);
    }
    if with_mic && !saw_flags {
        push_av(&mut out, AV_FLAGS, &AV_FLAG_MIC.to_le_bytes());
    }
    push_av(&mut out, AV_EOL, &[]);
    out
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
}

fn parse_av_pairs(mut info: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, NtlmError> {
    let mut pairs = Vec::new();
    while info.len() >= 4 {
        let id = u16::from_le_bytes([info[0], info[1]]);
        let len = usize::from(u16::from_le_bytes([info[2], info[3]]));
        if id == AV_EOL {
            return Ok(pairs);
        }
        let value = info
            .get(4..4 + len)
            .ok_or(NtlmError("AV pair out of bounds"))?;
        pairs.push((id, value.to_vec()));
        info = &info[4 + len..];
    }
    match info.is_empty() && pairs.is_empty() {
        true => Ok(pairs),
        false => Err(NtlmError("target info without MsvAvEOL")),
    }
}

/// The payload a security buffer (len u16, maxlen u16, offset u32) at `at` points to.
fn payload(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    let offset = usize::try_from(read_u32(bytes, at + 4)?).ok()?;
    bytes.get(offset..offset.checked_add(len)?)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn utf16le(s: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(s.encode_utf16().flat_map(u16::to_le_bytes).collect())
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 16]> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacMd5::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Zeroizing::new([0; 16]),
    };
    for part in parts {
        mac.update(part);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Now as a Windows FILETIME: 100 ns ticks since 1601-01-01, little-endian.
fn filetime_now() -> [u8; 8] {
    const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ticks = u64::try_from(since_unix.as_nanos() / 100).unwrap_or(0);
    (UNIX_EPOCH_AS_FILETIME + ticks).to_le_bytes()
}

#[cfg(test)]
mod tests;
