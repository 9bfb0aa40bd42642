//! The link stage must refuse any byte sequence it does not accept without panicking, and never
//! link with a wrong ticket. Input = what a client sends: LinkHeader (16), LinkMess (header.size
//! bytes), optional auth mechanism (4), ticket (128). Seeds: `corpus/link/`.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use spice_bridge::link::{ExpectAuth, ExpectHeader, ExpectTicket, TicketPolicy};
use spice_bridge::testing::test_key;

fuzz_target!(|data: &[u8]| {
    let key = test_key();
    let Some((h, rest)) = data.split_at_checked(ExpectHeader::LEN) else {
        return;
    };
    let Ok(s) = ExpectHeader.handle(h) else {
        return;
    };
    let Some((m, rest)) = rest.split_at_checked(s.len()) else {
        return;
    };
    let Ok((auth, reply)) = s.handle(m, key) else {
        return;
    };
    assert!(reply.len() >= 16 + 178);
    let (t, rest): (ExpectTicket, &[u8]) = if auth.expects_mechanism() {
        let Some((mech, rest)) = rest.split_at_checked(ExpectAuth::LEN) else {
            return;
        };
        match auth.handle(mech) {
            Ok(t) => (t, rest),
            Err(_) => return,
        }
    } else {
        (auth.skip_mechanism(), rest)
    };
    let Some((ticket, _)) = rest.split_at_checked(ExpectTicket::LEN) else {
        return;
    };
    let policy = TicketPolicy::Password {
        password: "fuzz-password-not-guessable-0123456789".into(),
        expires: None,
    };
    // Random bytes never decrypt to the password.
    assert!(t.handle(ticket, key, &policy, SystemTime::now()).is_err());
});
