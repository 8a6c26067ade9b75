//! Framing of the byte stream from a TURN server over TCP (RFC 8656 §12.5): STUN messages and
//! ChannelData messages, the latter padded to a multiple of four bytes over TCP.
//!
//! rice-proto's TURN client (turn-types 0.7 `TurnTcpBuffer`) frames the stream itself but
//! ignores that padding: after the first ChannelData whose length is not a multiple of four
//! (coturn sends them once a channel is bound) it reads the padding as the next header and
//! the relayed audio stops. So the driver hands it whole messages, one at a time, without the
//! padding; rice then never needs its own buffer.

/// Largest message kept waiting for its end: a STUN message or ChannelData fits in 64 KiB.
const MAX_BUFFERED: usize = 65_536 + 4;

/// Splits a TCP byte stream into messages.
#[derive(Debug, Default)]
pub struct TcpFramer {
    buffer: Vec<u8>,
}

impl TcpFramer {
    /// Adds bytes read from the connection; returns the messages they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        while let Some(header) = self.buffer.get(..4) {
            let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let (message, frame) = match header[0] >> 6 {
                // STUN: a 20-byte header, then `length` bytes (always a multiple of four).
                0b00 => (20 + length, 20 + length),
                // ChannelData: 4 bytes, the data, then padding to four.
                0b01 => (4 + length, (4 + length).div_ceil(4) * 4),
                // Neither: the stream is lost; drop what is buffered (the allocation's
                // refresh will fail and say so).
                _ => {
                    self.buffer.clear();
                    break;
                }
            };
            if self.buffer.len() < frame {
                break;
            }
            messages.push(self.buffer[..message].to_vec());
            self.buffer.drain(..frame);
        }
        if self.buffer.len() > MAX_BUFFERED {
            self.buffer.clear();
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(number: u16, data: &[u8]) -> Vec<u8> {
        let mut out = number.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    fn stun(body: usize) -> Vec<u8> {
        let mut out = vec![0x01, 0x17];
        out.extend_from_slice(&(body as u16).to_be_bytes());
        out.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        out.extend_from_slice(&[7; 12]);
        out.extend(std::iter::repeat_n(0u8, body));
        out
    }

    #[test]
    fn padded_channel_data_and_stun_come_out_whole_and_unpadded_however_the_stream_is_cut() {
        let mut stream = channel(0x4000, b"rtp-five!");
        stream.extend(stun(8));
        stream.extend(channel(0x4001, b"abcd"));
        for cut in 1..stream.len() {
            let mut framer = TcpFramer::default();
            let mut messages = framer.push(&stream[..cut]);
            messages.extend(framer.push(&stream[cut..]));
            assert_eq!(messages.len(), 3, "cut at {cut}");
            assert_eq!(&messages[0][4..], b"rtp-five!", "no padding kept");
            assert_eq!(messages[1].len(), 28);
            assert_eq!(&messages[2][4..], b"abcd");
        }
    }

    #[test]
    fn garbage_is_dropped_and_the_buffer_stays_bounded() {
        let mut framer = TcpFramer::default();
        assert!(framer.push(&[0xff; 100]).is_empty());
        assert!(framer.buffer.is_empty());
        // A header promising more than ever comes: bounded by the u16 length.
        assert!(framer.push(&[0x40, 0x00, 0xff, 0xff]).is_empty());
        assert!(framer.push(&vec![1; 1000]).is_empty());
        assert!(framer.buffer.len() <= MAX_BUFFERED);
    }
}
