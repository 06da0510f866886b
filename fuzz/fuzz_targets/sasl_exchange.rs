//! A SASL exchange (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) fed arbitrary
//! tokens: errors only, never a panic, and never success without the
//! password. The first byte picks the mechanism; the rest is split into
//! tokens at 0xff bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_broker::security::sasl::{Credentials, Exchange, Mechanism, Step};
use weir_broker::security::scram::{self, Credential};

struct One(Vec<Credential>);

impl Credentials for One {
    fn scram(&self, user: &str, m: scram::Mechanism) -> Option<Credential> {
        (user == "user")
            .then(|| self.0.iter().find(|c| c.mechanism == m).cloned())
            .flatten()
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static USERS: One = One(
            scram::Mechanism::ALL
                .into_iter()
                .map(|m| Credential::from_password(m, "a password no input has", b"salt".to_vec(), 4096).unwrap())
                .collect(),
        );
    }
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(pick) % Mechanism::ALL.len()];
    USERS.with(|users| {
        let mut e = Exchange::new(mechanism);
        for token in rest.split(|&b| b == 0xff).take(4) {
            match e.step(token, "servernonce", users) {
                Ok(Step::Continue(_)) => {}
                Ok(Step::Done { .. }) => panic!("authenticated without the password"),
                Err(_) => return,
            }
        }
    });
});
