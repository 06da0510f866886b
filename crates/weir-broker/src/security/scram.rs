//! SCRAM-SHA-256 and SCRAM-SHA-512, the server side (RFC 5802, RFC 7677),
//! as Kafka serves them: no channel binding, no SASLprep (passwords are
//! their UTF-8 bytes, as Kafka's clients send them), and the credential
//! stored as salt, iterations, StoredKey and ServerKey, never the password.
//!
//! [`ScramServer`] is a pure state machine: the two client messages in,
//! the two server messages out; the server nonce and the credential lookup
//! are given by the caller. Every malformed message is an error, never a
//! panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Kafka's least number of iterations for a SCRAM credential.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's most.
pub const MAX_ITERATIONS: u32 = 16384;

/// Which hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// Both, strongest last.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's number in DescribeUserScramCredentials (1: SHA-256, 2:
    /// SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// The mechanism of Kafka's number.
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Mechanism::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the broker keeps of a user's password for one mechanism.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    /// The hash.
    pub mechanism: Mechanism,
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Credential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl serde::Serialize for Mechanism {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Mechanism {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Mechanism::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown SCRAM mechanism {name}")))
    }
}

/// Why a credential cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Iterations outside Kafka's bounds.
    #[error("iterations {0} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// A salted password of the wrong length for the hash.
    #[error("a {0} salted password has {1} bytes, not {2}")]
    SaltedLength(Mechanism, usize, usize),
    /// An empty salt.
    #[error("the salt is empty")]
    EmptySalt,
}

impl Credential {
    /// The credential of a salted password (what Kafka's
    /// AlterUserScramCredentials carries).
    pub fn from_salted(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        salted_password: &[u8],
    ) -> Result<Self, CredentialError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialError::Iterations(iterations));
        }
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        let want = mechanism.hash(b"").len();
        if salted_password.len() != want {
            return Err(CredentialError::SaltedLength(
                mechanism,
                salted_password.len(),
                want,
            ));
        }
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Ok(Self {
            mechanism,
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        })
    }

    /// The credential of a password.
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(CredentialError::Iterations(iterations));
        }
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted(mechanism, salt, iterations, &salted)
    }

    /// Whether `password` is this credential's (SASL/PLAIN, HTTP basic
    /// auth), compared in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted =
            self.mechanism
                .salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        bool::from(self.mechanism.hash(&client_key).ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed. The client is told only that authentication
/// failed; the reason is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that does not parse.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// Channel binding asked for, or a binding that is not the header's.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// A mandatory extension, or delegation-token authentication.
    #[error("unsupported SCRAM extension {0}")]
    Extension(String),
    /// An authorization identity other than the user.
    #[error("authorization id {0:?} differs from the user")]
    AuthzId(String),
    /// No credential for this user and mechanism.
    #[error("unknown user {0:?} for this mechanism")]
    UnknownUser(String),
    /// The final message's nonce is not the one of this exchange.
    #[error("the nonce does not match")]
    Nonce,
    /// The proof is wrong: the wrong password.
    #[error("invalid proof (wrong password)")]
    InvalidProof,
    /// A message after the exchange ended or failed.
    #[error("message out of order")]
    OutOfOrder,
}

#[derive(Debug)]
enum State {
    First,
    Final {
        user: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: Credential,
    },
    Over,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

/// `saslname` of RFC 5802: `=2C` is ',', `=3D` is '='; any other '=' is
/// an error.
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3);
        match code {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed(format!("bad escape in name {s:?}"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name".into()));
    }
    Ok(out)
}

/// A printable nonce without ',' (RFC 5802).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `name=value`, the value of attribute `name`.
fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let part = part.ok_or_else(|| ScramError::Malformed(format!("missing {name}=")))?;
    let mut chars = part.chars();
    match (chars.next(), chars.next()) {
        (Some(c), Some('=')) if c == name => Ok(&part[2..]),
        _ => Err(ScramError::Malformed(format!(
            "expected {name}=, got {:?}",
            part.chars().take(16).collect::<String>()
        ))),
    }
}

impl ScramServer {
    /// A new exchange.
    pub fn new(mechanism: Mechanism) -> Self {
        Self {
            mechanism,
            state: State::First,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The client's first message: answers the server-first message.
    /// `server_nonce` must be fresh and random (printable, no ',');
    /// `lookup` finds the user's credential for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::First) {
            self.state = State::Over;
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Over;
        let text =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            f => return Err(ScramError::Malformed(format!("bad gs2 flag {f:?}"))),
        }
        let authzid = parts
            .next()
            .ok_or_else(|| ScramError::Malformed("no gs2 header".into()))?;
        let bare = parts
            .next()
            .ok_or_else(|| ScramError::Malformed("no client-first-bare".into()))?;
        let gs2_header = format!("{flag},{authzid},");
        let mut fields = bare.split(',');
        let first = fields.next();
        if first.is_some_and(|f| f.starts_with("m=")) {
            return Err(ScramError::Extension("m".into()));
        }
        let user = unescape_name(attr(first, 'n')?)?;
        let client_nonce = attr(fields.next(), 'r')?;
        if !valid_nonce(client_nonce) {
            return Err(ScramError::Malformed("bad client nonce".into()));
        }
        // Extensions are `name=value` (Kafka's names are words, such as
        // `tokenauth`).
        for ext in fields {
            let Some((name, value)) = ext.split_once('=') else {
                return Err(ScramError::Malformed(format!("bad extension {ext:?}")));
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ScramError::Malformed(format!("bad extension {ext:?}")));
            }
            if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(ScramError::Extension(
                    "tokenauth (delegation tokens)".into(),
                ));
            }
        }
        if !authzid.is_empty() {
            let id = unescape_name(attr(Some(authzid), 'a')?)?;
            if id != user {
                return Err(ScramError::AuthzId(id));
            }
        }
        if !valid_nonce(server_nonce) {
            return Err(ScramError::Malformed("bad server nonce".into()));
        }
        let credential = lookup(&user)
            .filter(|c| c.mechanism == self.mechanism)
            .ok_or_else(|| ScramError::UnknownUser(user.clone()))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::Final {
            user,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            credential,
        };
        Ok(reply)
    }

    /// The client's final message: answers the server-final message and
    /// the authenticated user.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let State::Final {
            user,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            credential,
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let text =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError::Malformed("no proof".into()))?;
        let mut fields = without_proof.split(',');
        let binding = attr(fields.next(), 'c')?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64".into()))?;
        if binding != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        let got_nonce = attr(fields.next(), 'r')?;
        if got_nonce != nonce {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64".into()))?;
        let m = self.mechanism;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", B64.encode(server_signature)).into_bytes(),
            user,
        ))
    }
}

/// The client side, for tests, `weir`'s own tools and the fuzz target:
/// given the server-first message, the client-final message and the
/// server signature to expect.
pub fn client_final_for(
    mechanism: Mechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> Result<(String, Vec<u8>), ScramError> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for f in server_first.split(',') {
        match f.split_once('=') {
            Some(("r", v)) => nonce = Some(v),
            Some(("s", v)) => salt = B64.decode(v).ok(),
            Some(("i", v)) => iterations = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(ScramError::Malformed("server-first".into()));
    };
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ScramError::Malformed("iterations".into()));
    }
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    let stored_key = mechanism.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = mechanism.hmac(&salted, b"Server Key");
    let expect = mechanism.hmac(&server_key, auth_message.as_bytes());
    Ok((format!("{without_proof},p={}", B64.encode(proof)), expect))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 7677, section 3: the SCRAM-SHA-256 example exchange.
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> Credential {
        Credential::from_password(
            Mechanism::Sha256,
            "pencil",
            B64.decode(RFC_SALT).unwrap(),
            4096,
        )
        .unwrap()
    }

    #[test]
    fn the_rfc_7677_example_exchange_is_answered_byte_for_byte() {
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s
            .client_first(RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE, |u| {
                (u == "user").then(rfc_credential)
            })
            .unwrap();
        assert_eq!(std::str::from_utf8(&first).unwrap(), RFC_SERVER_FIRST);
        let (last, user) = s.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(std::str::from_utf8(&last).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(user, "user");
        // The client side computes the same final message.
        let (fin, expect) = client_final_for(
            Mechanism::Sha256,
            "pencil",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            RFC_SERVER_FIRST,
        )
        .unwrap();
        assert_eq!(fin, RFC_CLIENT_FINAL);
        assert_eq!(format!("v={}", B64.encode(expect)), RFC_SERVER_FINAL);
        // A second final message is out of order.
        assert_eq!(
            s.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn wrong_proofs_nonces_bindings_and_users_fail() {
        let lookup = |u: &str| (u == "user").then(rfc_credential);
        let start = || {
            let mut s = ScramServer::new(Mechanism::Sha256);
            s.client_first(RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE, lookup)
                .unwrap();
            s
        };
        let tampered = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(
            start().client_final(tampered.as_bytes()),
            Err(ScramError::InvalidProof)
        );
        let other_nonce = RFC_CLIENT_FINAL.replace("k0,p=", "k1,p=");
        assert_eq!(
            start().client_final(other_nonce.as_bytes()),
            Err(ScramError::Nonce)
        );
        let bound = RFC_CLIENT_FINAL.replace("c=biws", "c=eSws");
        assert_eq!(
            start().client_final(bound.as_bytes()),
            Err(ScramError::ChannelBinding)
        );
        let mut s = ScramServer::new(Mechanism::Sha256);
        assert_eq!(
            s.client_first(b"n,,n=nobody,r=abc", "def", lookup),
            Err(ScramError::UnknownUser("nobody".into()))
        );
        // A SHA-256 credential does not serve SHA-512.
        let mut s = ScramServer::new(Mechanism::Sha512);
        assert!(matches!(
            s.client_first(RFC_CLIENT_FIRST.as_bytes(), "def", lookup),
            Err(ScramError::UnknownUser(_))
        ));
        for bad in [
            &b"p=tls-unique,,n=user,r=abc"[..],
            b"x,,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=user,r=abc,tokenauth=true",
            b"n,a=admin,n=user,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user,r=a,b",
            b"n,,n=user",
            b"n,,",
            b"",
            b"\xff\xfe",
        ] {
            let mut s = ScramServer::new(Mechanism::Sha256);
            assert!(
                s.client_first(bad, "def", lookup).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn names_are_unescaped_and_an_equal_authzid_is_accepted() {
        assert_eq!(unescape_name("a=2Cb=3Dc").unwrap(), "a,b=c");
        let cred = rfc_credential();
        let mut s = ScramServer::new(Mechanism::Sha256);
        let mut asked = String::new();
        s.client_first(b"n,a=x=2Cy,n=x=2Cy,r=abc", "def", |u| {
            asked = u.to_owned();
            Some(cred.clone())
        })
        .unwrap();
        assert_eq!(asked, "x,y");
    }

    #[test]
    fn credentials_check_bounds_and_passwords() {
        let c =
            Credential::from_password(Mechanism::Sha512, "secret", b"salt".to_vec(), 4096).unwrap();
        assert!(c.verify_password("secret"));
        assert!(!c.verify_password("Secret"));
        assert_eq!(
            Credential::from_password(Mechanism::Sha256, "p", b"s".to_vec(), 4095),
            Err(CredentialError::Iterations(4095))
        );
        assert_eq!(
            Credential::from_password(Mechanism::Sha256, "p", b"s".to_vec(), 16385),
            Err(CredentialError::Iterations(16385))
        );
        assert!(matches!(
            Credential::from_salted(Mechanism::Sha512, b"s".to_vec(), 4096, &[0; 32]),
            Err(CredentialError::SaltedLength(..))
        ));
        assert!(!format!("{c:?}").contains("stored_key"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any user, password and salt: the right password authenticates
        /// (and the client can check the server's signature); any other
        /// password fails with InvalidProof.
        #[test]
        fn the_right_password_and_only_it_authenticates(
            user in "[a-zA-Z0-9_,=.@-]{1,20}",
            password in "\\PC{0,24}",
            other in "\\PC{0,24}",
            salt in proptest::collection::vec(any::<u8>(), 1..32),
            sha512 in any::<bool>(),
            cnonce in "[!-+--~]{8,24}",
            snonce in "[!-+--~]{8,24}",
        ) {
            let m = if sha512 { Mechanism::Sha512 } else { Mechanism::Sha256 };
            let cred = Credential::from_password(m, &password, salt, 4096).unwrap();
            let escaped = user.replace('=', "=3D").replace(',', "=2C");
            let bare = format!("n={escaped},r={cnonce}");
            for (attempt, ok) in [(&password, true), (&other, other == password)] {
                let mut s = ScramServer::new(m);
                let first = s
                    .client_first(format!("n,,{bare}").as_bytes(), &snonce, |u| {
                        (u == user).then(|| cred.clone())
                    })
                    .unwrap();
                let first = String::from_utf8(first).unwrap();
                let (fin, expect) = client_final_for(m, attempt, &bare, &first).unwrap();
                match s.client_final(fin.as_bytes()) {
                    Ok((last, who)) => {
                        prop_assert!(ok);
                        prop_assert_eq!(&who, &user);
                        prop_assert_eq!(last, format!("v={}", B64.encode(expect)).into_bytes());
                    }
                    Err(e) => {
                        prop_assert!(!ok);
                        prop_assert_eq!(e, ScramError::InvalidProof);
                    }
                }
            }
        }

        /// Garbage in either message is an error, never a panic.
        #[test]
        fn garbage_never_panics(a in proptest::collection::vec(any::<u8>(), 0..200),
                                b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut s = ScramServer::new(Mechanism::Sha256);
            let _ = s.client_first(&a, "nonce", |_| Some(rfc_credential()));
            let _ = s.client_final(&b);
        }
    }
}
