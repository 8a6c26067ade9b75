//! `cargo fuzz run parse_stun`. STUN arrives on the SIP and RTP sockets from anyone: the parser
//! returns errors, never panics, and a mapped address it reports survives our own encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipterm::nat::stun::{binding_success, is_stun, parse};

fuzz_target!(|data: &[u8]| {
    let _ = is_stun(data);
    if let Ok(message) = parse(data)
        && let Some(mapped) = message.mapped_address()
    {
        let again = parse(&binding_success(&message.transaction, mapped))
            .expect("our own Binding success must parse");
        assert_eq!(again.mapped_address(), Some(mapped));
        assert_eq!(again.transaction, message.transaction);
    }
});
