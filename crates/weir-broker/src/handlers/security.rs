//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! users' SCRAM credentials in the replicated metadata, validated here as
//! Kafka validates them, then written by the controller.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::security::scram::{self, Credential, MAX_ITERATIONS, MIN_ITERATIONS};

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;
const REQUEST_TIMED_OUT: i16 = 7;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

pub(super) fn describe_user_scram_credentials(
    broker: &Broker,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.cluster().image();
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let describe = |user: &str| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = s(user);
        match image.scram.get(user) {
            Some(creds) if !creds.is_empty() => {
                r.credential_infos = creds
                    .values()
                    .filter_map(|c| {
                        let m = scram::Mechanism::from_name(&c.mechanism)?;
                        let mut info = CredentialInfo::default();
                        info.mechanism = m.kafka_type();
                        info.iterations = c.iterations as i32;
                        Some(info)
                    })
                    .collect();
            }
            _ => {
                r.error_code = RESOURCE_NOT_FOUND;
                r.error_message = Some(s(format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                )));
            }
        }
        r
    };
    match req.users.filter(|u| !u.is_empty()) {
        None => {
            resp.results = image.scram.keys().map(|u| describe(u)).collect();
        }
        Some(users) => {
            let mut seen = BTreeMap::new();
            for u in &users {
                *seen.entry(u.name.as_str()).or_insert(0) += 1;
            }
            let mut done = BTreeSet::new();
            for u in &users {
                let name = u.name.as_str();
                if !done.insert(name) {
                    continue;
                }
                if seen[name] > 1 {
                    let mut r = DescribeUserScramCredentialsResult::default();
                    r.user = s(name);
                    r.error_code = DUPLICATE_RESOURCE;
                    r.error_message = Some(s(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                    )));
                    resp.results.push(r);
                } else {
                    resp.results.push(describe(name));
                }
            }
        }
    }
    resp
}

/// One user's outcome while checking a request.
fn refusal(user: &str, code: i16, message: String) -> AlterUserScramCredentialsResult {
    let mut r = AlterUserScramCredentialsResult::default();
    r.user = s(user);
    r.error_code = code;
    r.error_message = Some(s(message));
    r
}

pub(super) async fn alter_user_scram_credentials(
    broker: &Broker,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in request order, each once.
    let mut order: Vec<String> = Vec::new();
    let mut failed: BTreeMap<String, (i16, String)> = BTreeMap::new();
    let mut pairs: BTreeMap<(String, i8), usize> = BTreeMap::new();
    let fail = |failed: &mut BTreeMap<String, (i16, String)>, user: &str, code, msg: String| {
        failed.entry(user.to_owned()).or_insert((code, msg));
    };
    let names = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.as_str(), u.mechanism)),
        );
    for (name, mechanism) in names {
        if !order.iter().any(|o| o == name) {
            order.push(name.to_owned());
        }
        *pairs.entry((name.to_owned(), mechanism)).or_insert(0) += 1;
    }
    for ((name, mechanism), n) in &pairs {
        if name.is_empty() {
            fail(
                &mut failed,
                name,
                UNACCEPTABLE_CREDENTIAL,
                "Username must not be empty".into(),
            );
        } else if scram::Mechanism::from_kafka_type(*mechanism).is_none() {
            fail(
                &mut failed,
                name,
                UNSUPPORTED_SASL_MECHANISM,
                format!("Unknown SCRAM mechanism {mechanism}"),
            );
        } else if *n > 1 {
            fail(
                &mut failed,
                name,
                DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".into(),
            );
        }
    }
    let mut upsertions = Vec::new();
    for u in &req.upsertions {
        let name = u.name.as_str();
        if failed.contains_key(name) {
            continue;
        }
        let Some(m) = scram::Mechanism::from_kafka_type(u.mechanism) else {
            continue;
        };
        let iterations = u.iterations;
        if iterations < MIN_ITERATIONS as i32 {
            fail(
                &mut failed,
                name,
                UNACCEPTABLE_CREDENTIAL,
                format!("Too few iterations: {iterations} (at least {MIN_ITERATIONS})"),
            );
            continue;
        }
        if iterations > MAX_ITERATIONS as i32 {
            fail(
                &mut failed,
                name,
                UNACCEPTABLE_CREDENTIAL,
                format!("Too many iterations: {iterations} (at most {MAX_ITERATIONS})"),
            );
            continue;
        }
        match Credential::from_salted(m, u.salt.to_vec(), iterations as u32, &u.salted_password) {
            Ok(c) => upsertions.push(weir_meta::ScramCredential {
                user: name.to_owned(),
                mechanism: m.name().to_owned(),
                salt: c.salt,
                iterations: c.iterations,
                stored_key: c.stored_key,
                server_key: c.server_key,
            }),
            Err(e) => fail(&mut failed, name, UNACCEPTABLE_CREDENTIAL, e.to_string()),
        }
    }
    // A deletion of what does not exist fails its user before anything
    // is written (the controller reports it too, should it race).
    let image = broker.cluster().image();
    for d in &req.deletions {
        let name = d.name.as_str();
        if let Some(m) = scram::Mechanism::from_kafka_type(d.mechanism)
            && !image
                .scram
                .get(name)
                .is_some_and(|c| c.contains_key(m.name()))
        {
            fail(
                &mut failed,
                name,
                RESOURCE_NOT_FOUND,
                format!("Attempt to delete a user credential that does not exist: {name} {m}"),
            );
        }
    }
    let deletions: Vec<(String, String)> = req
        .deletions
        .iter()
        .filter(|d| !failed.contains_key(d.name.as_str()))
        .filter_map(|d| {
            let m = scram::Mechanism::from_kafka_type(d.mechanism)?;
            Some((d.name.to_string(), m.name().to_owned()))
        })
        .collect();
    // A user with any refused change has none of its changes applied.
    let upsertions: Vec<_> = upsertions
        .into_iter()
        .filter(|c| !failed.contains_key(&c.user))
        .collect();
    if !upsertions.is_empty() || !deletions.is_empty() {
        let answer = broker
            .cluster()
            .request(weir_meta::Request::AlterUserScram {
                upsertions,
                deletions,
                if_absent: false,
            })
            .await;
        match answer {
            Ok(weir_meta::Answer::ScramAltered { missing }) => {
                for (user, mechanism) in missing {
                    fail(
                        &mut failed,
                        &user,
                        RESOURCE_NOT_FOUND,
                        format!(
                            "Attempt to delete a user credential that does not exist: {user} {mechanism}"
                        ),
                    );
                }
            }
            other => {
                let why = match other {
                    Ok(a) => format!("unexpected answer from the controller: {a:?}"),
                    Err(e) => e.to_string(),
                };
                for user in &order {
                    fail(&mut failed, user, REQUEST_TIMED_OUT, why.clone());
                }
            }
        }
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    resp.results = order
        .iter()
        .map(|user| match failed.get(user) {
            Some((code, message)) => refusal(user, *code, message.clone()),
            None => {
                let mut r = AlterUserScramCredentialsResult::default();
                r.user = s(user.as_str());
                r
            }
        })
        .collect();
    resp
}
