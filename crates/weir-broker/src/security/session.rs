//! A connection's authentication on a SASL listener, as a pure state
//! machine (docs/design/security.md): which requests may be answered now,
//! the SaslHandshake and SaslAuthenticate answers, re-authentication and
//! session expiry (KIP-368). Time is passed in, in milliseconds.
//!
//! ```text
//! Start --SaslHandshake(enabled m)--> Handshaken(m)
//! Handshaken --token--> Exchanging --last token ok--> Authenticated
//! Authenticated --SaslHandshake--> Handshaken (re-authentication)
//! any bad token, wrong proof or misplaced request: answered, then closed
//! ```

use super::sasl::{Credentials, Exchange, Mechanism, Step};

/// Kafka's API keys the gate knows by name.
pub mod api {
    /// ApiVersions.
    pub const API_VERSIONS: i16 = 18;
    /// SaslHandshake.
    pub const SASL_HANDSHAKE: i16 = 17;
    /// SaslAuthenticate.
    pub const SASL_AUTHENTICATE: i16 = 36;
}

/// UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Why a request is not answered and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A request other than the SASL ones before authentication.
    #[error("request {0} before SASL authentication")]
    Unauthenticated(i16),
    /// A request other than the SASL ones during an exchange.
    #[error("request {0} during a SASL exchange")]
    DuringExchange(i16),
    /// The session lifetime passed without re-authentication.
    #[error("the SASL session expired (connections.max.reauth.ms) and was not re-authenticated")]
    Expired,
}

#[derive(Debug)]
enum State {
    Start,
    Handshaken {
        mechanism: Mechanism,
        raw: bool,
    },
    Exchanging {
        exchange: Box<Exchange>,
        raw: bool,
    },
    Authenticated,
    /// Failed: nothing more is answered.
    Closed,
}

/// The SaslHandshake answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeAnswer {
    /// 0 or UNSUPPORTED_SASL_MECHANISM / ILLEGAL_SASL_STATE.
    pub error_code: i16,
    /// The enabled mechanisms.
    pub mechanisms: Vec<&'static str>,
    /// Close the connection after answering.
    pub close: bool,
}

/// The SaslAuthenticate answer (or a raw v0 token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    /// 0 or SASL_AUTHENTICATION_FAILED / ILLEGAL_SASL_STATE.
    pub error_code: i16,
    /// For the client, on failure.
    pub error_message: Option<String>,
    /// The token to send.
    pub token: Vec<u8>,
    /// KIP-368: the session's lifetime (0: no limit), once authenticated.
    pub session_lifetime_ms: i64,
    /// Close the connection after answering.
    pub close: bool,
    /// Why it failed, for the broker's log (never sent).
    pub reason: Option<String>,
    /// Authenticated now (the exchange ended well).
    pub authenticated: bool,
}

/// One connection's authentication.
#[derive(Debug)]
pub struct Session {
    enabled: Vec<Mechanism>,
    reauth_ms: u64,
    state: State,
    user: Option<String>,
    expires_at_ms: Option<u64>,
}

impl Session {
    /// A new connection; `reauth_ms` is `connections.max.reauth.ms` (0: the
    /// session never expires).
    pub fn new(enabled: Vec<Mechanism>, reauth_ms: u64) -> Self {
        Self {
            enabled,
            reauth_ms,
            state: State::Start,
            user: None,
            expires_at_ms: None,
        }
    }

    /// The authenticated user, once there is one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the next frame is a raw SASL token (after SaslHandshake v0)
    /// rather than a Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.state,
            State::Handshaken { raw: true, .. } | State::Exchanging { raw: true, .. }
        )
    }

    /// Whether request `api` may be answered now; `Err`: close the
    /// connection without answering (invariant S1).
    pub fn admit(&self, api: i16, now_ms: u64) -> Result<(), Refused> {
        use api::*;
        match &self.state {
            State::Closed => Err(Refused::Unauthenticated(api)),
            State::Start if self.user.is_none() => match api {
                API_VERSIONS | SASL_HANDSHAKE | SASL_AUTHENTICATE => Ok(()),
                _ => Err(Refused::Unauthenticated(api)),
            },
            State::Start | State::Authenticated => {
                let expired = self.expires_at_ms.is_some_and(|t| now_ms >= t);
                match api {
                    API_VERSIONS | SASL_HANDSHAKE | SASL_AUTHENTICATE => Ok(()),
                    _ if expired => Err(Refused::Expired),
                    _ => Ok(()),
                }
            }
            State::Handshaken { .. } | State::Exchanging { .. } => match api {
                API_VERSIONS | SASL_AUTHENTICATE => Ok(()),
                _ => Err(Refused::DuringExchange(api)),
            },
        }
    }

    /// SaslHandshake of `version` for `mechanism`.
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> HandshakeAnswer {
        let names = self.enabled.iter().map(|m| m.name()).collect();
        let answer = |error_code, close| HandshakeAnswer {
            error_code,
            mechanisms: names,
            close,
        };
        let ready = match self.state {
            State::Start => true,
            // Re-authentication needs SaslAuthenticate (v1 handshake).
            State::Authenticated => version >= 1,
            _ => false,
        };
        if !ready {
            self.state = State::Closed;
            return answer(ILLEGAL_SASL_STATE, true);
        }
        match Mechanism::from_name(mechanism).filter(|m| self.enabled.contains(m)) {
            Some(m) => {
                self.state = State::Handshaken {
                    mechanism: m,
                    raw: version == 0,
                };
                answer(0, false)
            }
            // The client may try another mechanism on a fresh connection;
            // this one has nothing more to do.
            None => {
                self.state = State::Closed;
                answer(UNSUPPORTED_SASL_MECHANISM, true)
            }
        }
    }

    /// A token (SaslAuthenticate's `auth_bytes` or a raw v0 frame).
    /// `server_nonce` must be fresh and random.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        server_nonce: &str,
        users: &dyn Credentials,
        now_ms: u64,
    ) -> AuthAnswer {
        let (mut exchange, raw) = match std::mem::replace(&mut self.state, State::Closed) {
            State::Handshaken { mechanism, raw } => (Box::new(Exchange::new(mechanism)), raw),
            State::Exchanging { exchange, raw } => (exchange, raw),
            _ => {
                return AuthAnswer {
                    error_code: ILLEGAL_SASL_STATE,
                    error_message: Some(
                        "SaslAuthenticate without a SaslHandshake before it".into(),
                    ),
                    token: Vec::new(),
                    session_lifetime_ms: 0,
                    close: true,
                    reason: Some("SaslAuthenticate out of order".into()),
                    authenticated: false,
                };
            }
        };
        let mechanism = exchange.mechanism();
        let failed = |reason: String| AuthAnswer {
            error_code: SASL_AUTHENTICATION_FAILED,
            error_message: Some(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            )),
            token: Vec::new(),
            session_lifetime_ms: 0,
            close: true,
            reason: Some(reason),
            authenticated: false,
        };
        match exchange.step(token, server_nonce, users) {
            Ok(Step::Continue(reply)) => {
                self.state = State::Exchanging { exchange, raw };
                AuthAnswer {
                    error_code: 0,
                    error_message: None,
                    token: reply,
                    session_lifetime_ms: 0,
                    close: false,
                    reason: None,
                    authenticated: false,
                }
            }
            Ok(Step::Done { user, token }) => {
                if let Some(before) = &self.user
                    && *before != user
                {
                    // KIP-368: re-authentication keeps the principal.
                    return failed(format!(
                        "re-authenticated as {user:?}, not {before:?} as before"
                    ));
                }
                self.user = Some(user);
                self.expires_at_ms = (self.reauth_ms > 0).then(|| now_ms + self.reauth_ms);
                self.state = State::Authenticated;
                AuthAnswer {
                    error_code: 0,
                    error_message: None,
                    token,
                    session_lifetime_ms: self.reauth_ms as i64,
                    close: false,
                    reason: None,
                    authenticated: true,
                }
            }
            Err(e) => failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::{self, Credential};
    use proptest::prelude::*;

    struct Users(Vec<(String, Credential)>);

    impl Credentials for Users {
        fn scram(&self, user: &str, m: scram::Mechanism) -> Option<Credential> {
            self.0
                .iter()
                .find(|(u, c)| u == user && c.mechanism == m)
                .map(|(_, c)| c.clone())
        }
    }

    fn users() -> Users {
        Users(
            ["alice", "bob"]
                .into_iter()
                .flat_map(|u| {
                    scram::Mechanism::ALL.into_iter().map(move |m| {
                        (
                            u.to_owned(),
                            Credential::from_password(
                                m,
                                &format!("{u}-pw"),
                                b"salt".to_vec(),
                                4096,
                            )
                            .unwrap(),
                        )
                    })
                })
                .collect(),
        )
    }

    const PRODUCE: i16 = 0;

    #[test]
    fn only_the_sasl_apis_before_authentication_then_everything() {
        let u = users();
        let mut s = Session::new(Mechanism::ALL.to_vec(), 0);
        assert_eq!(s.admit(PRODUCE, 0), Err(Refused::Unauthenticated(0)));
        assert!(s.admit(api::API_VERSIONS, 0).is_ok());
        let h = s.handshake("PLAIN", 1);
        assert_eq!(h.error_code, 0);
        assert_eq!(
            h.mechanisms,
            vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        );
        assert_eq!(s.admit(PRODUCE, 0), Err(Refused::DuringExchange(0)));
        let a = s.authenticate(b"\0alice\0alice-pw", "n", &u, 0);
        assert!(a.authenticated && a.error_code == 0 && !a.close, "{a:?}");
        assert_eq!(s.user(), Some("alice"));
        assert!(s.admit(PRODUCE, 10_000_000).is_ok(), "no expiry configured");
    }

    #[test]
    fn a_wrong_password_is_answered_then_closed() {
        let u = users();
        let mut s = Session::new(Mechanism::ALL.to_vec(), 0);
        s.handshake("PLAIN", 1);
        let a = s.authenticate(b"\0alice\0bob-pw", "n", &u, 0);
        assert_eq!(a.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(a.close && !a.authenticated);
        assert!(a.error_message.unwrap().contains("PLAIN"));
        assert_eq!(s.user(), None);
        assert!(s.admit(PRODUCE, 0).is_err());
        assert!(
            s.admit(api::API_VERSIONS, 0).is_err(),
            "nothing after a failure"
        );
    }

    #[test]
    fn unknown_and_disabled_mechanisms_are_refused_with_the_enabled_list() {
        let mut s = Session::new(vec![Mechanism::Plain], 0);
        let h = s.handshake("SCRAM-SHA-256", 1);
        assert_eq!(h.error_code, UNSUPPORTED_SASL_MECHANISM);
        assert_eq!(h.mechanisms, vec!["PLAIN"]);
        assert!(h.close);
        let mut s = Session::new(vec![Mechanism::Plain], 0);
        assert_eq!(
            s.handshake("GSSAPI", 0).error_code,
            UNSUPPORTED_SASL_MECHANISM
        );
    }

    #[test]
    fn v0_handshakes_take_raw_tokens() {
        let u = users();
        let mut s = Session::new(Mechanism::ALL.to_vec(), 0);
        assert!(!s.expects_raw_token());
        s.handshake("SCRAM-SHA-256", 0);
        assert!(s.expects_raw_token());
        let a = s.authenticate(b"n,,n=bob,r=abc", "def", &u, 0);
        assert_eq!(a.error_code, 0);
        assert!(s.expects_raw_token());
        let first = String::from_utf8(a.token).unwrap();
        let (fin, _) =
            scram::client_final_for(scram::Mechanism::Sha256, "bob-pw", "n=bob,r=abc", &first)
                .unwrap();
        let a = s.authenticate(fin.as_bytes(), "unused", &u, 0);
        assert!(a.authenticated, "{a:?}");
        assert!(!s.expects_raw_token());
    }

    #[test]
    fn sessions_expire_and_re_authentication_keeps_the_user() {
        let u = users();
        let mut s = Session::new(Mechanism::ALL.to_vec(), 5_000);
        s.handshake("PLAIN", 1);
        let a = s.authenticate(b"\0alice\0alice-pw", "n", &u, 1_000);
        assert_eq!(a.session_lifetime_ms, 5_000);
        assert!(s.admit(PRODUCE, 5_999).is_ok());
        assert_eq!(s.admit(PRODUCE, 6_000), Err(Refused::Expired));
        // Re-authentication (v1) renews the session.
        assert_eq!(s.handshake("PLAIN", 1).error_code, 0);
        let a = s.authenticate(b"\0alice\0alice-pw", "n", &u, 6_500);
        assert!(a.authenticated);
        assert!(s.admit(PRODUCE, 11_000).is_ok());
        assert!(s.admit(PRODUCE, 11_500).is_err());
        // As another user: refused and closed.
        s.handshake("PLAIN", 1);
        let a = s.authenticate(b"\0bob\0bob-pw", "n", &u, 12_000);
        assert_eq!(a.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(a.close);
        // A v0 handshake cannot re-authenticate.
        let mut s = Session::new(Mechanism::ALL.to_vec(), 5_000);
        s.handshake("PLAIN", 0);
        s.authenticate(b"\0alice\0alice-pw", "n", &u, 0);
        assert_eq!(s.handshake("PLAIN", 0).error_code, ILLEGAL_SASL_STATE);
    }

    #[test]
    fn authenticate_without_a_handshake_is_an_illegal_state() {
        let mut s = Session::new(Mechanism::ALL.to_vec(), 0);
        let a = s.authenticate(b"\0alice\0alice-pw", "n", &users(), 0);
        assert_eq!(a.error_code, ILLEGAL_SASL_STATE);
        assert!(a.close);
        assert_eq!(s.user(), None);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Request(i16),
        Handshake(usize, i16),
        PlainGood(usize),
        PlainBad(usize),
        Garbage(Vec<u8>),
        Wait(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            prop_oneof![Just(0i16), Just(1), Just(3), Just(18), Just(17), Just(36)]
                .prop_map(Event::Request),
            (0usize..4, 0i16..2).prop_map(|(m, v)| Event::Handshake(m, v)),
            (0usize..2).prop_map(Event::PlainGood),
            (0usize..2).prop_map(Event::PlainBad),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Event::Garbage),
            (0u64..4_000).prop_map(Event::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any sequence of requests, handshakes, tokens and waits: a
        /// non-SASL request is admitted only after a good password and
        /// before the session's end (S1, S2), and the user never changes.
        #[test]
        fn nothing_is_admitted_without_a_good_password_in_time(
            events in proptest::collection::vec(event(), 1..40),
        ) {
            let u = users();
            let names = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI"];
            let mut s = Session::new(Mechanism::ALL.to_vec(), 3_000);
            let mut now = 0u64;
            // The model: when the last good authentication happened.
            let mut good_at: Option<u64> = None;
            let mut first_user: Option<String> = None;
            let mut closed = false;
            for e in events {
                match e {
                    Event::Request(api) => {
                        let ok = s.admit(api, now).is_ok();
                        if ok && ![17, 18, 36].contains(&api) {
                            prop_assert!(!closed);
                            let at = good_at.expect("admitted without authentication");
                            prop_assert!(now < at + 3_000, "admitted after expiry");
                        }
                    }
                    Event::Handshake(m, v) => {
                        if s.handshake(names[m], v).close {
                            closed = true;
                        }
                    }
                    Event::PlainGood(i) | Event::PlainBad(i) => {
                        let user = ["alice", "bob"][i];
                        let good = matches!(e, Event::PlainGood(_));
                        let pw = if good { format!("{user}-pw") } else { "nope".into() };
                        let token = format!("\0{user}\0{pw}");
                        let a = s.authenticate(token.as_bytes(), "n", &u, now);
                        if a.authenticated {
                            prop_assert!(good && !closed);
                            if let Some(f) = &first_user {
                                prop_assert_eq!(f, user);
                            }
                            first_user = Some(user.to_owned());
                            good_at = Some(now);
                        }
                        if a.close {
                            closed = true;
                        }
                    }
                    Event::Garbage(bytes) => {
                        let a = s.authenticate(&bytes, "n", &u, now);
                        prop_assert!(!a.authenticated);
                        if a.close {
                            closed = true;
                        }
                    }
                    Event::Wait(ms) => now += ms,
                }
            }
        }
    }
}
