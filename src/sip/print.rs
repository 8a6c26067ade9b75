//! Message -> bytes. Content-Length is always written from the body's real length.

use super::message::{Message, Request, Response};

impl Request {
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&self.first_line(), &self.headers, &self.body)
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&self.first_line(), &self.headers, &self.body)
    }
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn serialize(first_line: &str, headers: &super::message::Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(first_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        if super::message::same_header(h.name, "Content-Length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}
