//! A SASL exchange on one connection, whatever the mechanism: PLAIN
//! (RFC 4616) or SCRAM ([`super::scram`]). Tokens in, a token to answer
//! and, at the end, the authenticated user or why not. Pure: the server
//! nonce and the credentials are given.

use super::scram::{self, Credential, ScramError, ScramServer};

/// A SASL mechanism Weir serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// PLAIN: the password in the clear (use it over TLS).
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(scram::Mechanism),
}

impl Mechanism {
    /// Every mechanism served, in Kafka's names.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::Scram(scram::Mechanism::Sha256),
        Mechanism::Scram(scram::Mechanism::Sha512),
    ];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    /// The mechanism of a SASL name (`None`: not served, e.g. GSSAPI).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The users' credentials, as the exchange asks for them.
pub trait Credentials {
    /// The credential of `user` for `mechanism`.
    fn scram(&self, user: &str, mechanism: scram::Mechanism) -> Option<Credential>;
}

/// Why authentication failed (for the broker's log; the client hears only
/// that it failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// A SCRAM exchange failed.
    #[error(transparent)]
    Scram(#[from] ScramError),
    /// A PLAIN message that does not parse.
    #[error("malformed PLAIN message: {0}")]
    MalformedPlain(&'static str),
    /// PLAIN with an authorization id other than the user.
    #[error("PLAIN authorization id {0:?} differs from the user")]
    PlainAuthzId(String),
    /// PLAIN with an unknown user or the wrong password.
    #[error("wrong user name or password for {0:?}")]
    BadPassword(String),
    /// A token after the exchange ended.
    #[error("token after the exchange ended")]
    OutOfOrder,
}

/// What a token leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this token; the exchange goes on.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `token` (may be empty).
    Done {
        /// The user.
        user: String,
        /// The last token to send.
        token: Vec<u8>,
    },
}

#[derive(Debug)]
enum State {
    Plain,
    ScramFirst(ScramServer),
    ScramFinal(ScramServer),
    Over,
}

/// One exchange.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

impl Exchange {
    /// Starts an exchange of `mechanism`.
    pub fn new(mechanism: Mechanism) -> Self {
        let state = match mechanism {
            Mechanism::Plain => State::Plain,
            Mechanism::Scram(m) => State::ScramFirst(ScramServer::new(m)),
        };
        Self { mechanism, state }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The next client token. `server_nonce` is used by SCRAM's first
    /// step (fresh and random, printable, no ',').
    pub fn step(
        &mut self,
        token: &[u8],
        server_nonce: &str,
        users: &dyn Credentials,
    ) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Plain => {
                let user = plain(token, users)?;
                Ok(Step::Done {
                    user,
                    token: Vec::new(),
                })
            }
            State::ScramFirst(mut s) => {
                let m = s.mechanism();
                let reply = s.client_first(token, server_nonce, |u| users.scram(u, m))?;
                self.state = State::ScramFinal(s);
                Ok(Step::Continue(reply))
            }
            State::ScramFinal(mut s) => {
                let (token, user) = s.client_final(token)?;
                Ok(Step::Done { user, token })
            }
            State::Over => Err(SaslError::OutOfOrder),
        }
    }
}

/// `[authzid] NUL authcid NUL passwd`, checked against the user's
/// strongest SCRAM credential.
fn plain(token: &[u8], users: &dyn Credentials) -> Result<String, SaslError> {
    let text = std::str::from_utf8(token).map_err(|_| SaslError::MalformedPlain("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedPlain(
            "expected authzid NUL user NUL password",
        ));
    };
    if user.is_empty() {
        return Err(SaslError::MalformedPlain("empty user name"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::PlainAuthzId(authzid.to_owned()));
    }
    let credential = scram::Mechanism::ALL
        .into_iter()
        .rev()
        .find_map(|m| users.scram(user, m));
    match credential {
        Some(c) if c.verify_password(password) => Ok(user.to_owned()),
        _ => Err(SaslError::BadPassword(user.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Users(BTreeMap<(String, scram::Mechanism), Credential>);

    impl Credentials for Users {
        fn scram(&self, user: &str, m: scram::Mechanism) -> Option<Credential> {
            self.0.get(&(user.to_owned(), m)).cloned()
        }
    }

    fn users() -> Users {
        let mut u = Users::default();
        let c = Credential::from_password(
            scram::Mechanism::Sha512,
            "alice-pw",
            b"salt-a".to_vec(),
            4096,
        )
        .unwrap();
        u.0.insert(("alice".into(), scram::Mechanism::Sha512), c);
        let c =
            Credential::from_password(scram::Mechanism::Sha256, "bob-pw", b"salt-b".to_vec(), 4096)
                .unwrap();
        u.0.insert(("bob".into(), scram::Mechanism::Sha256), c);
        u
    }

    #[test]
    fn plain_checks_the_password_against_any_stored_credential() {
        let u = users();
        for (token, want) in [
            (&b"\0alice\0alice-pw"[..], Ok("alice")),
            (b"alice\0alice\0alice-pw", Ok("alice")),
            (b"\0bob\0bob-pw", Ok("bob")),
            (b"\0alice\0bob-pw", Err(())),
            (b"\0carol\0x", Err(())),
            (b"bob\0alice\0alice-pw", Err(())),
            (b"\0alice", Err(())),
            (b"\0\0pw", Err(())),
            (b"\0alice\0alice-pw\0", Err(())),
        ] {
            let mut e = Exchange::new(Mechanism::Plain);
            let got = e.step(token, "n", &u);
            match want {
                Ok(user) => assert_eq!(
                    got,
                    Ok(Step::Done {
                        user: user.into(),
                        token: vec![]
                    })
                ),
                Err(()) => assert!(got.is_err(), "{token:?}: {got:?}"),
            }
            assert_eq!(e.step(b"again", "n", &u), Err(SaslError::OutOfOrder));
        }
    }

    #[test]
    fn a_scram_exchange_takes_two_tokens() {
        let u = users();
        let m = scram::Mechanism::Sha512;
        let mut e = Exchange::new(Mechanism::Scram(m));
        let Step::Continue(first) = e.step(b"n,,n=alice,r=cnonce", "snonce", &u).unwrap() else {
            panic!("expected the server-first message");
        };
        let (fin, expect) = scram::client_final_for(
            m,
            "alice-pw",
            "n=alice,r=cnonce",
            std::str::from_utf8(&first).unwrap(),
        )
        .unwrap();
        let Step::Done { user, token } = e.step(fin.as_bytes(), "unused", &u).unwrap() else {
            panic!("expected the end");
        };
        assert_eq!(user, "alice");
        assert!(token.starts_with(b"v="));
        assert!(!expect.is_empty());
        assert_eq!(e.step(b"x", "n", &u), Err(SaslError::OutOfOrder));
    }

    #[test]
    fn mechanisms_have_kafka_s_names() {
        assert_eq!(Mechanism::from_name("PLAIN"), Some(Mechanism::Plain));
        assert_eq!(
            Mechanism::from_name("SCRAM-SHA-512"),
            Some(Mechanism::Scram(scram::Mechanism::Sha512))
        );
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert_eq!(Mechanism::from_name("OAUTHBEARER"), None);
    }
}
