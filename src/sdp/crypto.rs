//! SDES keys for SRTP: the `a=crypto` attribute (RFC 4568) and the account's SRTP policy.
//!
//! Only what interoperates with deployed phones: the AES_CM_128_HMAC_SHA1_80 / _32 suites, one
//! `inline:` key per line, no MKI. Key material never appears in `Debug` output, so a
//! `tracing::debug!("{params:?}")` cannot leak it; the SIP trace (the message as sent) is the
//! only place a key is written.

use std::fmt;

use rand::RngCore;

/// Master key (16 bytes) followed by master salt (14 bytes), as `inline:` carries it.
pub const KEY_SALT_LEN: usize = 30;
/// Length of the master key part of [`KeySalt`].
pub const MASTER_KEY_LEN: usize = 16;
/// Largest tag RFC 4568 §9.1 allows (`1*9DIGIT`).
const MAX_TAG: u32 = 999_999_999;

/// What an account does about SRTP (config key `srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP/AVP, no `a=crypto`; offers of RTP/SAVP are refused (488).
    Off,
    /// Best effort: offer RTP/AVP with `a=crypto`; encrypt when the peer answers with a key;
    /// accept RTP/SAVP offers and plain ones.
    #[default]
    Optional,
    /// Offer RTP/SAVP; refuse (488) offers without a usable `a=crypto`; hang up when the answer
    /// to our offer has none.
    Mandatory,
}

impl SrtpPolicy {
    pub fn config_name(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Mandatory => "mandatory",
        }
    }
}

/// The crypto suites we run (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// Our offer's order: the 80-bit tag first (stronger; every SDES phone has it).
    pub const OFFERED: [CryptoSuite; 2] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<CryptoSuite> {
        // Suite names are case-sensitive tokens in the grammar; accept any case anyway.
        Self::OFFERED
            .into_iter()
            .find(|suite| suite.name().eq_ignore_ascii_case(name))
    }
}

/// 30 bytes of master key and salt. `Debug` prints no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt([u8; KEY_SALT_LEN]);

impl KeySalt {
    /// A fresh key from the thread CSPRNG (ChaCha seeded by the OS).
    pub fn random() -> KeySalt {
        let mut bytes = [0u8; KEY_SALT_LEN];
        rand::rng().fill_bytes(&mut bytes);
        KeySalt(bytes)
    }

    pub fn from_bytes(bytes: [u8; KEY_SALT_LEN]) -> KeySalt {
        KeySalt(bytes)
    }

    pub fn master_key(&self) -> &[u8] {
        &self.0[..MASTER_KEY_LEN]
    }

    pub fn master_salt(&self) -> &[u8] {
        &self.0[MASTER_KEY_LEN..]
    }

    fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }
}

impl fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySalt(<redacted>)")
    }
}

/// Our SRTP side of a call: the policy and the fresh keys we offer (one per offered suite,
/// in [`CryptoSuite::OFFERED`] order; an answer uses the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSrtp {
    pub policy: SrtpPolicy,
    pub keys: [KeySalt; 2],
}

impl LocalSrtp {
    /// Fresh keys for one call.
    pub fn new(policy: SrtpPolicy) -> LocalSrtp {
        LocalSrtp {
            policy,
            keys: [KeySalt::random(), KeySalt::random()],
        }
    }

    /// No SRTP; the keys are zeros and never used.
    pub fn off() -> LocalSrtp {
        LocalSrtp {
            policy: SrtpPolicy::Off,
            keys: [KeySalt([0; KEY_SALT_LEN]), KeySalt([0; KEY_SALT_LEN])],
        }
    }

    /// The `a=crypto` values of our offer: tags 1, 2, ... in suite order.
    pub(super) fn offer_lines(&self) -> Vec<String> {
        if self.policy == SrtpPolicy::Off {
            return Vec::new();
        }
        CryptoSuite::OFFERED
            .iter()
            .zip(&self.keys)
            .enumerate()
            .map(|(index, (suite, key))| {
                CryptoAttribute {
                    tag: index as u32 + 1,
                    suite: *suite,
                    key: key.clone(),
                }
                .sdp_value()
            })
            .collect()
    }

    /// The key we offered under `tag` with `suite`, if we did.
    pub(super) fn offered(&self, tag: u32, suite: CryptoSuite) -> Option<&KeySalt> {
        let index = usize::try_from(tag.checked_sub(1)?).ok()?;
        (CryptoSuite::OFFERED.get(index) == Some(&suite))
            .then(|| self.keys.get(index))
            .flatten()
    }
}

impl Default for LocalSrtp {
    fn default() -> Self {
        LocalSrtp::off()
    }
}

/// The negotiated SRTP of a call: suite, our key (we send with it) and the peer's (we
/// receive with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: CryptoSuite,
    pub tag: u32,
    pub local_key: KeySalt,
    pub remote_key: KeySalt,
}

/// One `a=crypto` line we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: CryptoSuite,
    pub key: KeySalt,
}

/// Why an `a=crypto` line is not usable. Each is a reason to skip the line (RFC 4568 §7.1.1:
/// the answerer picks among the lines it understands).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("malformed a=crypto line")]
    Malformed,
    #[error("bad a=crypto tag")]
    BadTag,
    #[error("unsupported crypto suite {0}")]
    UnknownSuite(String),
    #[error("key method other than inline")]
    NotInline,
    #[error("key is not valid base64")]
    BadBase64,
    #[error("key and salt are {0} bytes, not 30")]
    WrongKeyLength(usize),
    #[error("bad key lifetime")]
    BadLifetime,
    /// RFC 4568 §6.1: an answerer that does not support MKI must not accept a key with one.
    #[error("MKI is not supported")]
    Mki,
    /// Several keys need MKI to tell them apart.
    #[error("more than one key")]
    SeveralKeys,
    /// RFC 4568 §6.3.7: a line with a session parameter we do not understand is not usable.
    #[error("unsupported session parameter {0}")]
    SessionParameter(String),
}

impl CryptoAttribute {
    /// Parses the value of an `a=crypto` line (the text after `a=crypto:`):
    /// `tag SP crypto-suite SP key-params *(SP session-param)`.
    pub fn parse(value: &str) -> Result<CryptoAttribute, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(CryptoError::Malformed);
        };
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoError::BadTag);
        }
        let tag: u32 = tag.parse().map_err(|_| CryptoError::BadTag)?;
        if tag > MAX_TAG {
            return Err(CryptoError::BadTag);
        }
        let suite = CryptoSuite::from_name(suite)
            .ok_or_else(|| CryptoError::UnknownSuite(printable(suite)))?;
        if key_params.contains(';') {
            return Err(CryptoError::SeveralKeys);
        }
        let key_info = match key_params.split_once(':') {
            Some((method, info)) if method.eq_ignore_ascii_case("inline") => info,
            _ => return Err(CryptoError::NotInline),
        };
        let mut parts = key_info.split('|');
        let key = base64_decode(parts.next().unwrap_or_default()).ok_or(CryptoError::BadBase64)?;
        let key: [u8; KEY_SALT_LEN] = key
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::WrongKeyLength(key.len()))?;
        // Optional lifetime, then optional MKI:length (RFC 4568 §6.1, §9.2).
        for (index, part) in parts.enumerate() {
            if index == 0 && !part.contains(':') {
                check_lifetime(part)?;
            } else if part.contains(':') && index <= 1 {
                return Err(CryptoError::Mki);
            } else {
                return Err(CryptoError::Malformed);
            }
        }
        // WSH (window size hint) is only a hint; any other session parameter changes how SRTP
        // runs (KDR, UNENCRYPTED_SRTP, FEC_ORDER, ...), so such a line is not usable.
        for param in fields {
            if !param.to_ascii_uppercase().starts_with("WSH=") {
                return Err(CryptoError::SessionParameter(printable(param)));
            }
        }
        Ok(CryptoAttribute {
            tag,
            suite,
            key: KeySalt(key),
        })
    }

    /// `tag SUITE inline:KEY`, the value after `a=crypto:`.
    pub fn sdp_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.to_base64()
        )
    }
}

/// The key lifetime: a decimal number or `2^n` (RFC 4568 §6.1). The lifetime is accepted and
/// not enforced: a call would have to run for days at 50 packets/s to reach 2^31 packets;
/// webrtc-srtp itself stops at the SRTP limit of 2^48.
fn check_lifetime(text: &str) -> Result<(), CryptoError> {
    let ok = match text.strip_prefix("2^") {
        Some(power) => power.parse::<u8>().is_ok_and(|p| (1..=48).contains(&p)),
        None => text.parse::<u64>().is_ok_and(|n| n > 0),
    };
    if ok {
        Ok(())
    } else {
        Err(CryptoError::BadLifetime)
    }
}

/// `text` with the key of every `inline:` key parameter (RFC 4568) replaced by `REDACTED...`.
/// The one masking function for SRTP keys: the SIP trace (TUI log, exports, pcap, log file)
/// goes through it, so keys never leave the process in clear except on the wire itself.
pub fn redact_inline_keys(text: &str) -> std::borrow::Cow<'_, str> {
    match redact_inline_key_bytes(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
        // Only ASCII was replaced (a run of key characters by `REDACTED...`), so still UTF-8.
        std::borrow::Cow::Owned(bytes) => std::borrow::Cow::Owned(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// `redact_inline_keys` on raw bytes (a message need not be UTF-8): the key after each
/// `inline:` (any case) up to `|`, `;`, whitespace or the end becomes `REDACTEDREDACTED...` of
/// the key's length. Masked text passes through unchanged, so masking twice is harmless.
pub fn redact_inline_key_bytes(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const MARK: &[u8] = b"inline:";
    const MASK: &[u8] = b"REDACTED";
    let found = |from: usize| {
        raw.get(from..)?
            .windows(MARK.len())
            .position(|w| w.eq_ignore_ascii_case(MARK))
            .map(|at| from + at)
    };
    let Some(mut at) = found(0) else {
        return std::borrow::Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = 0;
    loop {
        let key_start = at + MARK.len();
        out.extend_from_slice(&raw[rest..key_start]);
        let key_len = raw[key_start..]
            .iter()
            .position(|&c| c == b'|' || c == b';' || c.is_ascii_whitespace())
            .unwrap_or(raw.len() - key_start);
        // `REDACTEDREDACTED...`, as long as the key and keeping its `=` padding: the message's
        // Content-Length still holds and the value is still base64 of the key's size, so a
        // pcap reader (Wireshark) parses the SDP and sets up the RTP streams from it.
        let key = &raw[key_start..key_start + key_len];
        let padding = key.iter().rev().take_while(|&&c| c == b'=').count();
        out.extend(MASK.iter().cycle().take(key_len - padding));
        out.extend(std::iter::repeat_n(b'=', padding));
        rest = key_start + key_len;
        match found(rest) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(&raw[rest..]);
    std::borrow::Cow::Owned(out)
}

/// For error messages: bounded, printable.
fn printable(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) with padding.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(BASE64[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padding optional (some phones leave it off); `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let data = text.trim_end_matches('=');
    if text.len() - data.len() > 2 || data.len() % 4 == 1 {
        return None;
    }
    if text.len() != data.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in data.bytes() {
        let value = BASE64.iter().position(|b| *b == byte)? as u32;
        acc = acc << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero in canonical base64.
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4568 §4's example key (30 bytes).
    const RFC_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64_encode(&bytes);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(base64_decode(&text), Some(bytes.clone()), "len {len}");
            assert_eq!(
                base64_decode(text.trim_end_matches('=')),
                Some(bytes),
                "unpadded len {len}"
            );
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), Some(b"fo".to_vec()));
        for bad in ["Zm9v!mFy", "Z", "Zm8===", "Zm9=", "Zm=8"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_the_rfc_example_with_lifetime_and_without() {
        let line =
            CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20"))
                .expect("RFC 4568 example without MKI");
        assert_eq!(line.tag, 1);
        assert_eq!(line.suite, CryptoSuite::AesCm128HmacSha1_80);
        assert_eq!(line.key.master_key(), b"YS___semctl () {");
        assert_eq!(line.key.master_salt().len(), 14);
        let plain = CryptoAttribute::parse(&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}"))
            .expect("no lifetime");
        assert_eq!(plain.tag, 7);
        assert_eq!(plain.suite, CryptoSuite::AesCm128HmacSha1_32);
        assert!(
            CryptoAttribute::parse(&format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1048576"
            ))
            .is_ok()
        );
        assert!(
            CryptoAttribute::parse(&format!(
                "1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} WSH=128"
            ))
            .is_ok(),
            "a window size hint is only a hint"
        );
    }

    #[test]
    fn refuses_what_rfc_4568_says_an_answerer_must_not_take() {
        let cases = [
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4"),
                CryptoError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4"),
                CryptoError::Mki,
            ),
            (
                format!(
                    "1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4;inline:{RFC_KEY}|2^20|2:4"
                ),
                CryptoError::SeveralKeys,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1"),
                CryptoError::SessionParameter("KDR=1".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP"),
                CryptoError::SessionParameter("UNENCRYPTED_SRTP".into()),
            ),
            (
                format!("1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}"),
                CryptoError::UnknownSuite("F8_128_HMAC_SHA1_80".into()),
            ),
            (
                format!("1 AEAD_AES_256_GCM inline:{RFC_KEY}"),
                CryptoError::UnknownSuite("AEAD_AES_256_GCM".into()),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64!!!".into(),
                CryptoError::BadBase64,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:Zm9vYmFy".into(),
                CryptoError::WrongKeyLength(6),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 uri:{RFC_KEY}"),
                CryptoError::NotInline,
            ),
            (
                format!("x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}"),
                CryptoError::BadTag,
            ),
            (
                format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}"),
                CryptoError::BadTag,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^99"),
                CryptoError::BadLifetime,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|0"),
                CryptoError::BadLifetime,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80".into(), CryptoError::Malformed),
            ("".into(), CryptoError::Malformed),
        ];
        for (line, expected) in cases {
            assert_eq!(CryptoAttribute::parse(&line), Err(expected), "{line}");
        }
    }

    #[test]
    fn prints_what_it_parses_and_keys_are_fresh() {
        let ours = LocalSrtp::new(SrtpPolicy::Optional);
        let lines = ours.offer_lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("2 AES_CM_128_HMAC_SHA1_32 inline:"),
            "{}",
            lines[1]
        );
        for (index, line) in lines.iter().enumerate() {
            let parsed = CryptoAttribute::parse(line).expect("our own line parses");
            assert_eq!(parsed.key, ours.keys[index]);
            assert_eq!(&parsed.sdp_value(), line);
        }
        assert_ne!(ours.keys[0], ours.keys[1], "one key per offered suite");
        assert_ne!(
            ours.keys[0],
            LocalSrtp::new(SrtpPolicy::Optional).keys[0],
            "fresh per call"
        );
        assert!(LocalSrtp::new(SrtpPolicy::Off).offer_lines().is_empty());
        assert_eq!(
            ours.offered(1, CryptoSuite::AesCm128HmacSha1_80),
            Some(&ours.keys[0])
        );
        assert_eq!(ours.offered(1, CryptoSuite::AesCm128HmacSha1_32), None);
        assert_eq!(ours.offered(0, CryptoSuite::AesCm128HmacSha1_80), None);
        assert_eq!(ours.offered(3, CryptoSuite::AesCm128HmacSha1_80), None);
    }

    #[test]
    fn log_text_hides_inline_keys_and_keeps_the_rest() {
        let sdp = format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_32 INLINE:{RFC_KEY}\r\na=sendrecv\r\n"
        );
        let redacted = redact_inline_keys(&sdp);
        assert!(!redacted.contains(RFC_KEY), "{redacted}");
        // Same length as the key (40 characters), so Content-Length stays right.
        let mask = "REDACTED".repeat(5);
        assert_eq!(
            redacted,
            format!(
                "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{mask}|2^20|1:4\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_32 INLINE:{mask}\r\na=sendrecv\r\n"
            )
        );
        assert_eq!(redacted.len(), sdp.len());
        assert_eq!(
            redact_inline_keys(&redacted),
            redacted,
            "masking twice changes nothing"
        );
        assert!(matches!(
            redact_inline_keys("INVITE sip:a@b SIP/2.0"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(redact_inline_keys("x inline:"), "x inline:");
        assert_eq!(redact_inline_keys("x inline:abc|1"), "x inline:RED|1");
        assert_eq!(
            redact_inline_keys("inline:abcdefghij=="),
            "inline:REDACTEDRE=="
        );
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let ours = LocalSrtp::new(SrtpPolicy::Mandatory);
        let text = format!("{ours:?}");
        let encoded = ours.keys[0].to_base64();
        assert!(!text.contains(&encoded[..20]), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
}
