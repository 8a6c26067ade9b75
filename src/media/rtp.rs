//! RTP fixed header (RFC 3550 §5.1): a zero-copy view for received packets and a builder for
//! outgoing ones. Parsing never panics: every length comes from the buffer and is checked.

use super::MediaError;

/// The only RTP version in use.
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed header, without CSRCs or extension.
pub const RTP_FIXED_HEADER_LEN: usize = 12;
/// At most 15 contributing sources fit the 4-bit CC field.
pub const MAX_CSRCS: usize = 15;

/// A parsed view over one RTP packet; all accessors read the borrowed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    bytes: &'a [u8],
    csrc_count: usize,
    /// `(profile, start, end)` of the header extension's data in `bytes`.
    extension: Option<(u16, usize, usize)>,
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates the header; the payload is what remains after CSRCs, the header
    /// extension and padding.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MediaError> {
        let len = bytes.len();
        let first = match bytes.first() {
            Some(byte) if len >= RTP_FIXED_HEADER_LEN => *byte,
            _ => {
                return Err(MediaError::RtpTruncated {
                    len,
                    needed: RTP_FIXED_HEADER_LEN,
                });
            }
        };
        let version = first >> 6;
        if version != RTP_VERSION {
            return Err(MediaError::RtpVersion(version));
        }
        let has_padding = first & 0x20 != 0;
        let has_extension = first & 0x10 != 0;
        let csrc_count = usize::from(first & 0x0f);

        let mut offset = RTP_FIXED_HEADER_LEN + 4 * csrc_count;
        if len < offset {
            return Err(MediaError::RtpTruncated {
                len,
                needed: offset,
            });
        }
        let extension = if has_extension {
            let needed = offset + 4;
            let (profile, words) = match (read_u16(bytes, offset), read_u16(bytes, offset + 2)) {
                (Some(profile), Some(words)) => (profile, usize::from(words)),
                _ => return Err(MediaError::RtpTruncated { len, needed }),
            };
            let data_start = needed;
            let data_end = data_start + 4 * words;
            if len < data_end {
                return Err(MediaError::RtpTruncated {
                    len,
                    needed: data_end,
                });
            }
            offset = data_end;
            Some((profile, data_start, data_end))
        } else {
            None
        };

        let mut payload_end = len;
        if has_padding {
            // The last octet counts the padding octets, itself included (RFC 3550 §5.1).
            let padding = usize::from(bytes.last().copied().unwrap_or(0));
            let available = len - offset;
            if padding == 0 || padding > available {
                return Err(MediaError::RtpPadding { padding, available });
            }
            payload_end = len - padding;
        }

        Ok(Self {
            bytes,
            csrc_count,
            extension,
            payload_start: offset,
            payload_end,
        })
    }

    pub fn version(&self) -> u8 {
        self.first_byte() >> 6
    }

    pub fn has_padding(&self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    pub fn has_extension(&self) -> bool {
        self.extension.is_some()
    }

    pub fn marker(&self) -> bool {
        self.byte(1) & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.byte(1) & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        read_u16(self.bytes, 2).unwrap_or(0)
    }

    pub fn timestamp(&self) -> u32 {
        read_u32(self.bytes, 4).unwrap_or(0)
    }

    pub fn ssrc(&self) -> u32 {
        read_u32(self.bytes, 8).unwrap_or(0)
    }

    pub fn csrc_count(&self) -> usize {
        self.csrc_count
    }

    /// The contributing sources, in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let bytes = self.bytes;
        (0..self.csrc_count)
            .filter_map(move |index| read_u32(bytes, RTP_FIXED_HEADER_LEN + 4 * index))
    }

    /// The header extension as `(profile-defined id, data)`, if present.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        let (profile, start, end) = self.extension?;
        Some((profile, self.bytes.get(start..end)?))
    }

    /// Number of padding octets (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.bytes.len() - self.payload_end
    }

    pub fn payload(&self) -> &'a [u8] {
        self.bytes
            .get(self.payload_start..self.payload_end)
            .unwrap_or(&[])
    }

    /// The whole packet as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn first_byte(&self) -> u8 {
        self.byte(0)
    }

    fn byte(&self, index: usize) -> u8 {
        self.bytes.get(index).copied().unwrap_or(0)
    }
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let chunk = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([*chunk.first()?, *chunk.get(1)?]))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let chunk: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(chunk))
}

/// Builds an RTP packet: set the fields, then [`RtpPacketBuilder::write`] appends header and
/// payload to a buffer (so the caller can reuse one allocation per packet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpPacketBuilder {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
    /// `(profile-defined id, data)`; data must be a multiple of 4 octets.
    pub extension: Option<(u16, Vec<u8>)>,
    /// Padding octets to append (0 = no P bit); at most 255.
    pub padding: u8,
}

impl RtpPacketBuilder {
    pub fn new(payload_type: u8, sequence_number: u16, timestamp: u32, ssrc: u32) -> Self {
        Self {
            payload_type,
            sequence_number,
            timestamp,
            ssrc,
            ..Self::default()
        }
    }

    pub fn marker(mut self, marker: bool) -> Self {
        self.marker = marker;
        self
    }

    /// Length of the header this builder writes, CSRCs and extension included.
    pub fn header_len(&self) -> usize {
        RTP_FIXED_HEADER_LEN
            + 4 * self.csrcs.len()
            + self
                .extension
                .as_ref()
                .map_or(0, |(_, data)| 4 + data.len())
    }

    /// Appends the packet (header, `payload`, padding) to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), MediaError> {
        if self.payload_type > 0x7f {
            return Err(MediaError::RtpBuild("payload type exceeds 127"));
        }
        if self.csrcs.len() > MAX_CSRCS {
            return Err(MediaError::RtpBuild("more than 15 CSRCs"));
        }
        let extension_words = match &self.extension {
            Some((_, data)) if data.len() % 4 != 0 => {
                return Err(MediaError::RtpBuild(
                    "header extension is not a multiple of 4 octets",
                ));
            }
            Some((_, data)) => Some(
                u16::try_from(data.len() / 4)
                    .map_err(|_| MediaError::RtpBuild("header extension too long"))?,
            ),
            None => None,
        };

        out.reserve(self.header_len() + payload.len() + usize::from(self.padding));
        let mut first = RTP_VERSION << 6;
        if self.padding > 0 {
            first |= 0x20;
        }
        if self.extension.is_some() {
            first |= 0x10;
        }
        // Checked above: at most 15.
        first |= self.csrcs.len() as u8;
        out.push(first);
        out.push(u8::from(self.marker) << 7 | self.payload_type);
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for csrc in &self.csrcs {
            out.extend_from_slice(&csrc.to_be_bytes());
        }
        if let (Some((profile, data)), Some(words)) = (&self.extension, extension_words) {
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0, usize::from(self.padding) - 1));
            out.push(self.padding);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMU packet as a capture shows it: V=2, M=1, PT=0, seq 0x1234, ts 0xdeadbeef,
    /// SSRC 0x01020304, 4 payload octets.
    const PCMU_PACKET: [u8; 16] = [
        0x80, 0x80, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0xff, 0x7f, 0x00,
        0x80,
    ];

    #[test]
    fn parses_fixed_header_vector() {
        let packet = RtpPacket::parse(&PCMU_PACKET).unwrap();
        assert_eq!(packet.version(), 2);
        assert!(packet.marker());
        assert!(!packet.has_padding());
        assert!(!packet.has_extension());
        assert_eq!(packet.payload_type(), 0);
        assert_eq!(packet.sequence_number(), 0x1234);
        assert_eq!(packet.timestamp(), 0xdead_beef);
        assert_eq!(packet.ssrc(), 0x0102_0304);
        assert_eq!(packet.csrc_count(), 0);
        assert_eq!(packet.payload(), &[0xff, 0x7f, 0x00, 0x80]);
    }

    #[test]
    fn builder_writes_the_same_vector() {
        let mut out = Vec::new();
        RtpPacketBuilder::new(0, 0x1234, 0xdead_beef, 0x0102_0304)
            .marker(true)
            .write(&[0xff, 0x7f, 0x00, 0x80], &mut out)
            .unwrap();
        assert_eq!(out, PCMU_PACKET);
    }

    #[test]
    fn csrcs_extension_and_padding_round_trip() {
        let builder = RtpPacketBuilder {
            marker: false,
            payload_type: 111,
            sequence_number: 65535,
            timestamp: 7,
            ssrc: 0xcafe_babe,
            csrcs: vec![1, 0xffff_ffff],
            extension: Some((0xbede, vec![0x10, 0xaa, 0, 0])),
            padding: 3,
        };
        let mut out = Vec::new();
        builder.write(b"opus", &mut out).unwrap();
        assert_eq!(out.len(), 12 + 8 + 8 + 4 + 3);
        assert_eq!(out.first(), Some(&0xb2)); // V=2 P=1 X=1 CC=2
        let packet = RtpPacket::parse(&out).unwrap();
        assert_eq!(packet.payload_type(), 111);
        assert_eq!(packet.sequence_number(), 65535);
        assert_eq!(packet.csrcs().collect::<Vec<_>>(), vec![1, 0xffff_ffff]);
        assert_eq!(packet.extension(), Some((0xbede, &[0x10, 0xaa, 0, 0][..])));
        assert_eq!(packet.padding_len(), 3);
        assert_eq!(packet.payload(), b"opus");
    }

    #[test]
    fn rejects_truncated_and_wrong_version() {
        assert!(matches!(
            RtpPacket::parse(&PCMU_PACKET[..11]),
            Err(MediaError::RtpTruncated { len: 11, .. })
        ));
        let mut v1 = PCMU_PACKET;
        v1[0] = 0x40;
        assert!(matches!(
            RtpPacket::parse(&v1),
            Err(MediaError::RtpVersion(1))
        ));
        // CC=15 announces 60 CSRC octets that are not there.
        let mut many_csrcs = PCMU_PACKET;
        many_csrcs[0] = 0x8f;
        assert!(matches!(
            RtpPacket::parse(&many_csrcs),
            Err(MediaError::RtpTruncated { needed: 72, .. })
        ));
        // X bit with an extension length running past the end.
        let mut bad_extension = PCMU_PACKET.to_vec();
        bad_extension[0] = 0x90;
        bad_extension.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert!(RtpPacket::parse(&bad_extension[..16]).is_err());
    }

    #[test]
    fn rejects_padding_longer_than_packet_body() {
        let mut padded = PCMU_PACKET;
        padded[0] |= 0x20;
        padded[15] = 5; // only 4 octets follow the header
        assert!(matches!(
            RtpPacket::parse(&padded),
            Err(MediaError::RtpPadding {
                padding: 5,
                available: 4
            })
        ));
        padded[15] = 0;
        assert!(RtpPacket::parse(&padded).is_err());
        padded[15] = 4;
        assert_eq!(RtpPacket::parse(&padded).unwrap().payload(), &[] as &[u8]);
    }

    #[test]
    fn builder_rejects_invalid_fields() {
        let mut out = Vec::new();
        let mut builder = RtpPacketBuilder::new(128, 0, 0, 0);
        assert!(builder.write(&[], &mut out).is_err());
        builder.payload_type = 0;
        builder.csrcs = vec![0; 16];
        assert!(builder.write(&[], &mut out).is_err());
        builder.csrcs.clear();
        builder.extension = Some((1, vec![1, 2, 3]));
        assert!(builder.write(&[], &mut out).is_err());
        assert!(
            out.is_empty(),
            "failed writes must not leave partial packets"
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic byte soup of every length up to 80, with the version bits forced to 2 so
        // that parsing goes past the first check.
        let mut state: u32 = 0x1234_5678;
        for len in 0..80 {
            for _ in 0..50 {
                let mut buffer = Vec::with_capacity(len);
                for _ in 0..len {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    buffer.push(state as u8);
                }
                if let Some(first) = buffer.first_mut() {
                    *first = (*first & 0x3f) | 0x80;
                }
                if let Ok(packet) = RtpPacket::parse(&buffer) {
                    assert!(packet.payload().len() <= len);
                    let _ = packet.csrcs().count();
                    let _ = packet.extension();
                }
            }
        }
    }
}
