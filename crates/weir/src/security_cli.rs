//! `weir acl` (as `kafka-acls.sh`) and `weir user add|list|delete`
//! against a running cluster (as `kafka-configs.sh --entity-type users`),
//! through [`crate::kafka_admin`].

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_broker::security::scram::Mechanism;
use weir_meta::acl::{operation, pattern, permission, resource};

use crate::kafka_admin::AdminConn;

/// ACL commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Add ACLs: each principal given gets each operation on the resource.
    Add(AclArgs),
    /// List the ACLs that match (no resource: all).
    List(AclArgs),
    /// Remove the ACLs that match.
    Remove(AclArgs),
}

/// A resource and the entries on it, in kafka-acls.sh's words.
#[derive(Debug, Args)]
pub(crate) struct AclArgs {
    /// A topic (`*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (`*`: every group).
    #[arg(long)]
    group: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// A transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
    /// literal or prefixed (list and remove also take any and match;
    /// default: literal for add and remove, any for list).
    #[arg(long)]
    resource_pattern_type: Option<String>,
    /// Principals to allow (User:name, User:*).
    #[arg(long)]
    allow_principal: Vec<String>,
    /// Principals to deny.
    #[arg(long)]
    deny_principal: Vec<String>,
    /// List or remove only this principal's ACLs.
    #[arg(long)]
    principal: Option<String>,
    /// The host the entries apply to (`*`: any).
    #[arg(long)]
    host: Option<String>,
    /// Operations: Read, Write, Create, Delete, Alter, Describe,
    /// ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All.
    #[arg(long)]
    operation: Vec<String>,
}

const OPERATIONS: &[(&str, i8)] = &[
    ("All", operation::ALL),
    ("Read", operation::READ),
    ("Write", operation::WRITE),
    ("Create", operation::CREATE),
    ("Delete", operation::DELETE),
    ("Alter", operation::ALTER),
    ("Describe", operation::DESCRIBE),
    ("ClusterAction", operation::CLUSTER_ACTION),
    ("DescribeConfigs", operation::DESCRIBE_CONFIGS),
    ("AlterConfigs", operation::ALTER_CONFIGS),
    ("IdempotentWrite", operation::IDEMPOTENT_WRITE),
    ("CreateTokens", operation::CREATE_TOKENS),
    ("DescribeTokens", operation::DESCRIBE_TOKENS),
];

fn operation_code(name: &str) -> Result<i8> {
    let flat = name.replace(['_', '-'], "").to_ascii_lowercase();
    OPERATIONS
        .iter()
        .find(|(n, _)| n.to_ascii_lowercase() == flat)
        .map(|(_, c)| *c)
        .with_context(|| {
            format!(
                "--operation {name}: one of {}",
                OPERATIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn operation_name(code: i8) -> String {
    OPERATIONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| (*n).to_owned())
}

fn resource_name(code: i8) -> &'static str {
    match code {
        resource::TOPIC => "Topic",
        resource::GROUP => "Group",
        resource::CLUSTER => "Cluster",
        resource::TRANSACTIONAL_ID => "TransactionalId",
        resource::DELEGATION_TOKEN => "DelegationToken",
        resource::USER => "User",
        _ => "Unknown",
    }
}

fn pattern_code(name: &str) -> Result<i8> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "literal" => pattern::LITERAL,
        "prefixed" => pattern::PREFIXED,
        "any" => pattern::ANY,
        "match" => pattern::MATCH,
        other => bail!("--resource-pattern-type {other}: literal, prefixed, any or match"),
    })
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        pattern::LITERAL => "LITERAL",
        pattern::PREFIXED => "PREFIXED",
        _ => "?",
    }
}

impl AclArgs {
    /// The resource named: (type, name), or `None` for "any".
    fn resource(&self) -> Result<Option<(i8, String)>> {
        let mut named = Vec::new();
        if let Some(t) = &self.topic {
            named.push((resource::TOPIC, t.clone()));
        }
        if let Some(g) = &self.group {
            named.push((resource::GROUP, g.clone()));
        }
        if self.cluster {
            named.push((resource::CLUSTER, weir_meta::acl::CLUSTER_NAME.to_owned()));
        }
        if let Some(t) = &self.transactional_id {
            named.push((resource::TRANSACTIONAL_ID, t.clone()));
        }
        match named.len() {
            0 => Ok(None),
            1 => Ok(named.pop()),
            _ => bail!("name one resource: --topic, --group, --cluster or --transactional-id"),
        }
    }

    /// (principal, permission) pairs of --allow-principal / --deny-principal.
    fn entries(&self) -> Vec<(String, i8)> {
        self.allow_principal
            .iter()
            .map(|p| (p.clone(), permission::ALLOW))
            .chain(
                self.deny_principal
                    .iter()
                    .map(|p| (p.clone(), permission::DENY)),
            )
            .collect()
    }
}

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Runs `weir acl ...`.
pub(crate) fn acl(
    brokers: &str,
    settings: &[String],
    cmd: AclCommand,
    out: &mut impl Write,
) -> Result<()> {
    let mut conn = AdminConn::connect(brokers, settings)?;
    match cmd {
        AclCommand::Add(a) => {
            let (rt, name) = a
                .resource()?
                .context("name the resource: --topic, --group, --cluster or --transactional-id")?;
            let pt = pattern_code(a.resource_pattern_type.as_deref().unwrap_or("literal"))?;
            let entries = a.entries();
            if entries.is_empty() {
                bail!("name at least one --allow-principal or --deny-principal");
            }
            if a.operation.is_empty() {
                bail!("name at least one --operation");
            }
            let ops = a
                .operation
                .iter()
                .map(|o| operation_code(o))
                .collect::<Result<Vec<_>>>()?;
            let mut req = CreateAclsRequest::default();
            for (principal, pm) in &entries {
                for &op in &ops {
                    let mut c = create_acls_request::AclCreation::default();
                    c.resource_type = rt;
                    c.resource_name = s(name.clone());
                    c.resource_pattern_type = pt;
                    c.principal = s(principal.clone());
                    c.host = s(a.host.clone().unwrap_or_else(|| "*".into()));
                    c.operation = op;
                    c.permission_type = *pm;
                    req.creations.push(c);
                }
            }
            let n = req.creations.len();
            let resp = conn.call(req)?;
            let failed: Vec<String> = resp
                .results
                .iter()
                .filter(|r| r.error_code != 0)
                .map(|r| {
                    format!(
                        "error {}: {}",
                        r.error_code,
                        r.error_message.as_ref().map_or("", |m| m.as_str())
                    )
                })
                .collect();
            if let Some(first) = failed.first() {
                bail!("{} of {n} ACLs not created: {first}", failed.len());
            }
            writeln!(
                out,
                "added {n} ACL(s) on {} {name} ({})",
                resource_name(rt),
                pattern_name(pt)
            )?;
        }
        AclCommand::List(a) => {
            let (rt, name) = a
                .resource()?
                .map_or((resource::ANY, None), |(t, n)| (t, Some(n)));
            let mut req = DescribeAclsRequest::default();
            req.resource_type_filter = rt;
            req.resource_name_filter = name.map(s);
            req.pattern_type_filter =
                pattern_code(a.resource_pattern_type.as_deref().unwrap_or("any"))?;
            req.principal_filter = a.principal.clone().map(s);
            req.host_filter = a.host.clone().map(s);
            req.operation = match a.operation.as_slice() {
                [] => operation::ANY,
                [one] => operation_code(one)?,
                _ => bail!("list takes at most one --operation"),
            };
            req.permission_type = permission::ANY;
            let resp = conn.call(req)?;
            if resp.error_code != 0 {
                bail!(
                    "DescribeAcls failed with error {}: {}",
                    resp.error_code,
                    resp.error_message.as_ref().map_or("", |m| m.as_str())
                );
            }
            for r in &resp.resources {
                for e in &r.acls {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        resource_name(r.resource_type),
                        r.resource_name.as_str(),
                        pattern_name(r.pattern_type),
                        e.principal.as_str(),
                        e.host.as_str(),
                        operation_name(e.operation),
                        if e.permission_type == permission::DENY {
                            "Deny"
                        } else {
                            "Allow"
                        }
                    )?;
                }
            }
        }
        AclCommand::Remove(a) => {
            let (rt, name) = a
                .resource()?
                .map_or((resource::ANY, None), |(t, n)| (t, Some(n)));
            let pt = pattern_code(a.resource_pattern_type.as_deref().unwrap_or("literal"))?;
            let ops = if a.operation.is_empty() {
                vec![operation::ANY]
            } else {
                a.operation
                    .iter()
                    .map(|o| operation_code(o))
                    .collect::<Result<Vec<_>>>()?
            };
            let mut entries: Vec<(Option<String>, i8)> = a
                .entries()
                .into_iter()
                .map(|(p, pm)| (Some(p), pm))
                .collect();
            if entries.is_empty() {
                entries.push((a.principal.clone(), permission::ANY));
            }
            let mut req = DeleteAclsRequest::default();
            for (principal, pm) in &entries {
                for &op in &ops {
                    let mut f = delete_acls_request::DeleteAclsFilter::default();
                    f.resource_type_filter = rt;
                    f.resource_name_filter = name.clone().map(s);
                    f.pattern_type_filter = pt;
                    f.principal_filter = principal.clone().map(s);
                    f.host_filter = a.host.clone().map(s);
                    f.operation = op;
                    f.permission_type = *pm;
                    req.filters.push(f);
                }
            }
            let resp = conn.call(req)?;
            let mut removed = 0;
            for r in &resp.filter_results {
                if r.error_code != 0 {
                    bail!(
                        "DeleteAcls failed with error {}: {}",
                        r.error_code,
                        r.error_message.as_ref().map_or("", |m| m.as_str())
                    );
                }
                removed += r.matching_acls.len();
            }
            writeln!(out, "removed {removed} ACL(s)")?;
        }
    }
    Ok(())
}

/// `weir user add NAME --password P` against a running cluster.
pub(crate) fn user_add(
    brokers: &str,
    settings: &[String],
    name: &str,
    password: &str,
    mechanisms: &[Mechanism],
    iterations: u32,
    out: &mut impl Write,
) -> Result<()> {
    let mut conn = AdminConn::connect(brokers, settings)?;
    let mut req = AlterUserScramCredentialsRequest::default();
    for &m in mechanisms {
        let salt: Vec<u8> = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut u = alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
        u.name = s(name);
        u.mechanism = m.kafka_type();
        u.iterations = i32::try_from(iterations).context("--iterations")?;
        u.salted_password = m
            .salted_password(password.as_bytes(), &salt, iterations)
            .into();
        u.salt = salt.into();
        req.upsertions.push(u);
    }
    alter_users(&mut conn, req)?;
    writeln!(
        out,
        "user {name} ({}) stored in the cluster",
        mechanisms
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(())
}

/// Sends an AlterUserScramCredentials; the first user's refusal, if any.
fn alter_users(conn: &mut AdminConn, req: AlterUserScramCredentialsRequest) -> Result<()> {
    let resp = conn.call(req)?;
    match resp.results.iter().find(|r| r.error_code != 0) {
        Some(r) => bail!(
            "user {}: error {}: {}",
            r.user.as_str(),
            r.error_code,
            r.error_message.as_ref().map_or("", |m| m.as_str())
        ),
        None => Ok(()),
    }
}

/// `weir user list`.
pub(crate) fn user_list(brokers: &str, settings: &[String], out: &mut impl Write) -> Result<()> {
    let mut conn = AdminConn::connect(brokers, settings)?;
    let resp = conn.call(DescribeUserScramCredentialsRequest::default())?;
    if resp.error_code != 0 {
        bail!(
            "DescribeUserScramCredentials failed with error {}: {}",
            resp.error_code,
            resp.error_message.as_ref().map_or("", |m| m.as_str())
        );
    }
    for r in &resp.results {
        let creds: Vec<String> = r
            .credential_infos
            .iter()
            .map(|c| {
                let m = Mechanism::from_kafka_type(c.mechanism)
                    .map_or_else(|| c.mechanism.to_string(), |m| m.name().to_owned());
                format!("{m} (iterations {})", c.iterations)
            })
            .collect();
        writeln!(out, "{}\t{}", r.user.as_str(), creds.join(", "))?;
    }
    Ok(())
}

/// `weir user delete NAME [--mechanism ...]`.
pub(crate) fn user_delete(
    brokers: &str,
    settings: &[String],
    name: &str,
    mechanisms: &[Mechanism],
    out: &mut impl Write,
) -> Result<()> {
    let mut conn = AdminConn::connect(brokers, settings)?;
    // Without --mechanism: every mechanism the user has.
    let mechanisms: Vec<Mechanism> = if mechanisms.is_empty() {
        let mut d = DescribeUserScramCredentialsRequest::default();
        let mut u = describe_user_scram_credentials_request::UserName::default();
        u.name = s(name);
        d.users = Some(vec![u]);
        let resp = conn.call(d)?;
        let r = resp
            .results
            .first()
            .context("DescribeUserScramCredentials answered nothing")?;
        if r.error_code != 0 {
            bail!("user {name}: no such user (error {})", r.error_code);
        }
        r.credential_infos
            .iter()
            .filter_map(|c| Mechanism::from_kafka_type(c.mechanism))
            .collect()
    } else {
        mechanisms.to_vec()
    };
    let mut req = AlterUserScramCredentialsRequest::default();
    for m in &mechanisms {
        let mut d = alter_user_scram_credentials_request::ScramCredentialDeletion::default();
        d.name = s(name);
        d.mechanism = m.kafka_type();
        req.deletions.push(d);
    }
    alter_users(&mut conn, req)?;
    writeln!(out, "user {name} deleted")?;
    Ok(())
}
