//! Random identifiers: shell and command ids (upper-case UUIDs, as WinRM prints them) and opaque
//! affinity cookie values.

use ring::rand::{SecureRandom, SystemRandom};

/// 16 random bytes; falls back to a counter mix if the OS RNG fails (ids need uniqueness, not secrecy).
fn random_bytes() -> [u8; 16] {
    let mut buf = [0u8; 16];
    if SystemRandom::new().fill(&mut buf).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        buf[..8].copy_from_slice(&n.to_le_bytes());
    }
    buf
}

/// A random version-4 UUID in upper case, e.g. `0B1D6A57-...`.
pub(crate) fn uuid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An opaque lower-case hex token (affinity cookie values).
pub(crate) fn opaque() -> String {
    random_bytes().iter().map(|x| format!("{x:02x}")).collect()
}
