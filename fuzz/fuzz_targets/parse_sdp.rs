//! `cargo fuzz run parse_sdp` (seed corpus: tests/data/sdp). Remote SDP is hostile input: the
//! crypto scan, the answerer and the offerer's answer reader must return errors, never panic,
//! and an answer we build always carries the audio line it accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipterm::sdp::{
    Codec, Direction, LocalMedia, LocalSrtp, SrtpPolicy, answer_offer, apply_answer, crypto_lines,
};

fn local() -> LocalMedia {
    LocalMedia {
        address: std::net::IpAddr::from([127, 0, 0, 1]),
        rtp_port: 40000,
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        direction: Direction::SendRecv,
        session_id: 1,
        session_version: 1,
        // Keys offered and accepted, so the a=crypto paths are fuzzed too.
        srtp: LocalSrtp::new(SrtpPolicy::Optional),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crypto_lines(text);
    let local = local();
    if let Ok((answer, params)) = answer_offer(text, &local) {
        // An accepted offer gets an answer with an audio line on our port (rejected lines, which
        // keep their place with port 0, may come before it) and only CRLF-terminated lines.
        let audio = format!("m=audio {} ", local.rtp_port);
        assert!(
            answer.contains(&audio),
            "no accepted audio line in {answer:?}"
        );
        assert!(answer.ends_with("\r\n") && !answer.contains("\r\r"));
        assert!(params.ptime_ms > 0);
    }
    let _ = apply_answer(text, &local);
});
