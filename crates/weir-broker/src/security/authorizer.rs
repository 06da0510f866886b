//! The authorizer: whether a principal from a host may perform an
//! operation on a resource, decided on the ACL bindings of a metadata
//! image, as Kafka's `StandardAuthorizer` decides (docs/design/security.md,
//! invariant S4). Pure: the bindings and the request come in, a yes or no
//! goes out, so every broker decides the same on the same image (S5).

use std::collections::BTreeSet;

use weir_meta::AclBinding;
use weir_meta::acl::{WILDCARD, operation as op, permission, resource};

/// The principal of a client that did not authenticate (a PLAINTEXT
/// listener's), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The broker's authorizer settings, with Kafka's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `authorizer.class.name` set (Kafka's StandardAuthorizer or `weir`):
    /// requests are checked. Off, everything is allowed.
    pub enabled: bool,
    /// `super.users`: principals every check allows.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: a resource no binding applies to
    /// is open to everyone.
    pub allow_if_no_acl: bool,
}

/// The class names `authorizer.class.name` accepts.
pub const CLASS_NAMES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "weir",
];

impl AuthorizerConfig {
    /// Whether every check passes for `subject`: no authorizer, or a
    /// super user.
    fn passes(&self, subject: Subject<'_>) -> bool {
        !self.enabled || self.super_users.iter().any(|s| s == subject.principal)
    }

    /// Parses `super.users`: `User:a;User:b` (Kafka separates them with
    /// semicolons; commas are taken too).
    pub fn parse_super_users(value: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for p in value
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    out.push(p.to_owned())
                }
                _ => return Err(format!("{p:?} is not a principal (User:name)")),
            }
        }
        Ok(out)
    }
}

/// One check: who, from where.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `User:name`.
    pub principal: &'a str,
    /// The client's IP address.
    pub host: &'a str,
}

/// Whether `subject` may perform `operation` on the resource `name` of
/// `resource_type`, given `acls`.
pub fn authorize(
    cfg: &AuthorizerConfig,
    acls: &BTreeSet<AclBinding>,
    subject: Subject<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if cfg.passes(subject) {
        return true;
    }
    let mut any_for_resource = false;
    let mut allowed = false;
    for b in acls.iter().filter(|b| b.applies_to(resource_type, name)) {
        any_for_resource = true;
        if !entry_applies(b, subject) {
            continue;
        }
        if b.permission == permission::DENY {
            // DENY covers its own operation and ALL, nothing implied.
            if b.operation == operation || b.operation == op::ALL {
                return false;
            }
        } else if grants(b.operation, operation) {
            allowed = true;
        }
    }
    allowed || (!any_for_resource && cfg.allow_if_no_acl)
}

/// Whether `subject` may perform `operation` on at least one resource of
/// `resource_type` (Kafka's `authorizeByResourceType`, used for an
/// idempotent producer without IDEMPOTENT_WRITE on the cluster: WRITE on
/// any topic will do). Some ALLOW binding must grant it and no DENY must
/// cover every name (a literal `*` or an empty prefix).
pub fn authorize_any(
    cfg: &AuthorizerConfig,
    acls: &BTreeSet<AclBinding>,
    subject: Subject<'_>,
    operation: i8,
    resource_type: i8,
) -> bool {
    if cfg.passes(subject) {
        return true;
    }
    let mine = || {
        acls.iter()
            .filter(move |b| b.resource_type == resource_type && entry_applies(b, subject))
    };
    let denied_everywhere = mine().any(|b| {
        b.permission == permission::DENY
            && (b.operation == operation || b.operation == op::ALL)
            && match b.pattern_type {
                weir_meta::acl::pattern::LITERAL => b.resource_name == WILDCARD,
                _ => b.resource_name.is_empty(),
            }
    });
    if denied_everywhere {
        return false;
    }
    let granted =
        mine().any(|b| b.permission == permission::ALLOW && grants(b.operation, operation));
    granted || (cfg.allow_if_no_acl && !acls.iter().any(|b| b.resource_type == resource_type))
}

/// Whether the binding's principal and host are the subject's.
fn entry_applies(b: &AclBinding, subject: Subject<'_>) -> bool {
    let principal = b.principal == subject.principal
        || b.principal
            .split_once(':')
            .is_some_and(|(kind, name)| name == WILDCARD && subject.principal.starts_with(kind));
    principal && (b.host == WILDCARD || b.host == subject.host)
}

/// Whether an ALLOW of `given` grants `wanted`: itself, ALL, and Kafka's
/// implications (DESCRIBE by READ, WRITE, DELETE, ALTER; DESCRIBE_CONFIGS
/// by ALTER_CONFIGS).
fn grants(given: i8, wanted: i8) -> bool {
    given == wanted
        || given == op::ALL
        || (wanted == op::DESCRIBE && [op::READ, op::WRITE, op::DELETE, op::ALTER].contains(&given))
        || (wanted == op::DESCRIBE_CONFIGS && given == op::ALTER_CONFIGS)
}

/// The name of the cluster resource, for checks on it.
pub const CLUSTER: (i8, &str) = (resource::CLUSTER, weir_meta::acl::CLUSTER_NAME);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_meta::acl::pattern;

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_no_acl: false,
        }
    }

    fn b(name: &str, pt: i8, principal: &str, host: &str, operation: i8, pm: i8) -> AclBinding {
        AclBinding {
            resource_type: resource::TOPIC,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission: pm,
        }
    }

    const ALICE: Subject<'static> = Subject {
        principal: "User:alice",
        host: "10.0.0.1",
    };

    fn topic(
        acls: &[AclBinding],
        cfg: &AuthorizerConfig,
        s: Subject<'_>,
        o: i8,
        name: &str,
    ) -> bool {
        let set: BTreeSet<_> = acls.iter().cloned().collect();
        authorize(cfg, &set, s, o, resource::TOPIC, name)
    }

    #[test]
    fn allow_deny_wildcards_prefixes_and_implied_operations() {
        let cfg = on();
        let acls = [
            b(
                "logs",
                pattern::LITERAL,
                "User:alice",
                "*",
                op::WRITE,
                permission::ALLOW,
            ),
            b(
                "met",
                pattern::PREFIXED,
                "User:*",
                "*",
                op::READ,
                permission::ALLOW,
            ),
            b(
                "metrics-secret",
                pattern::LITERAL,
                "User:alice",
                "*",
                op::ALL,
                permission::DENY,
            ),
            b(
                "*",
                pattern::LITERAL,
                "User:bob",
                "10.0.0.9",
                op::ALTER_CONFIGS,
                permission::ALLOW,
            ),
        ];
        assert!(topic(&acls, &cfg, ALICE, op::WRITE, "logs"));
        assert!(
            !topic(&acls, &cfg, ALICE, op::READ, "logs"),
            "WRITE does not give READ"
        );
        assert!(
            topic(&acls, &cfg, ALICE, op::DESCRIBE, "logs"),
            "WRITE implies DESCRIBE"
        );
        assert!(
            topic(&acls, &cfg, ALICE, op::READ, "metrics"),
            "User:* and a prefix"
        );
        assert!(
            !topic(&acls, &cfg, ALICE, op::READ, "metrics-secret"),
            "DENY wins"
        );
        assert!(!topic(&acls, &cfg, ALICE, op::DESCRIBE, "metrics-secret"));
        assert!(!topic(&acls, &cfg, ALICE, op::READ, "other"));
        let bob = Subject {
            principal: "User:bob",
            host: "10.0.0.9",
        };
        assert!(
            topic(&acls, &cfg, bob, op::DESCRIBE_CONFIGS, "anything"),
            "ALTER_CONFIGS implies DESCRIBE_CONFIGS"
        );
        assert!(
            !topic(
                &acls,
                &cfg,
                Subject {
                    host: "10.0.0.8",
                    ..bob
                },
                op::ALTER_CONFIGS,
                "x"
            ),
            "another host"
        );
        // Super users pass everything; a disabled authorizer too.
        let admin = Subject {
            principal: "User:admin",
            host: "1.2.3.4",
        };
        assert!(topic(&acls, &cfg, admin, op::DELETE, "metrics-secret"));
        assert!(topic(
            &acls,
            &AuthorizerConfig::default(),
            ALICE,
            op::DELETE,
            "x"
        ));
    }

    #[test]
    fn no_acl_found_is_open_only_when_configured_and_only_where_no_binding_applies() {
        let acls = [b(
            "logs",
            pattern::LITERAL,
            "User:bob",
            "*",
            op::READ,
            permission::ALLOW,
        )];
        let closed = on();
        let open = AuthorizerConfig {
            allow_if_no_acl: true,
            ..on()
        };
        assert!(!topic(&acls, &closed, ALICE, op::READ, "free"));
        assert!(topic(&acls, &open, ALICE, op::READ, "free"));
        assert!(
            !topic(&acls, &open, ALICE, op::READ, "logs"),
            "bob's binding applies to logs"
        );
    }

    #[test]
    fn write_on_any_topic_is_enough_for_an_idempotent_producer() {
        let cfg = on();
        let mut set = BTreeSet::new();
        assert!(!authorize_any(
            &cfg,
            &set,
            ALICE,
            op::WRITE,
            resource::TOPIC
        ));
        set.insert(b(
            "logs",
            pattern::PREFIXED,
            "User:alice",
            "*",
            op::WRITE,
            permission::ALLOW,
        ));
        assert!(authorize_any(&cfg, &set, ALICE, op::WRITE, resource::TOPIC));
        set.insert(b(
            "*",
            pattern::LITERAL,
            "User:alice",
            "*",
            op::WRITE,
            permission::DENY,
        ));
        assert!(!authorize_any(
            &cfg,
            &set,
            ALICE,
            op::WRITE,
            resource::TOPIC
        ));
    }

    #[test]
    fn super_users_parse_as_kafka_writes_them() {
        assert_eq!(
            AuthorizerConfig::parse_super_users("User:admin; User:ops").unwrap(),
            ["User:admin", "User:ops"]
        );
        assert!(AuthorizerConfig::parse_super_users("admin").is_err());
    }

    fn arb_binding() -> impl Strategy<Value = AclBinding> {
        (
            prop::sample::select(vec!["a", "ab", "abc", "b", "*", ""]),
            prop::sample::select(vec![pattern::LITERAL, pattern::PREFIXED]),
            prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
            prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
            prop::sample::select(vec![op::ALL, op::READ, op::WRITE, op::DESCRIBE, op::ALTER]),
            prop::sample::select(vec![permission::ALLOW, permission::DENY]),
        )
            .prop_map(|(name, pt, principal, host, o, pm)| b(name, pt, principal, host, o, pm))
    }

    proptest! {
        /// S4 as a property: allowed exactly when some applicable ALLOW
        /// grants the operation and no applicable DENY covers it (or no
        /// binding applies and the config opens such resources); adding a
        /// DENY never opens anything, adding an ALLOW never closes.
        #[test]
        fn decisions_follow_the_rule(
            acls in prop::collection::btree_set(arb_binding(), 0..12),
            extra in arb_binding(),
            name in prop::sample::select(vec!["a", "ab", "abc", "b", "c"]),
            wanted in prop::sample::select(vec![op::READ, op::WRITE, op::DESCRIBE, op::ALTER, op::DELETE]),
            open in any::<bool>(),
        ) {
            let cfg = AuthorizerConfig { allow_if_no_acl: open, ..on() };
            let got = authorize(&cfg, &acls, ALICE, wanted, resource::TOPIC, name);
            let applicable: Vec<_> = acls.iter().filter(|b| b.applies_to(resource::TOPIC, name)).collect();
            let mine: Vec<_> = applicable.iter().filter(|b| entry_applies(b, ALICE)).collect();
            let denied = mine.iter().any(|b| b.permission == permission::DENY && (b.operation == wanted || b.operation == op::ALL));
            let allowed = mine.iter().any(|b| b.permission == permission::ALLOW && grants(b.operation, wanted));
            prop_assert_eq!(got, !denied && (allowed || (applicable.is_empty() && open)));
            let mut more = acls.clone();
            more.insert(extra.clone());
            let after = authorize(&cfg, &more, ALICE, wanted, resource::TOPIC, name);
            if extra.permission == permission::DENY {
                // A DENY may close, never open.
                prop_assert!(!after || got);
            } else if !(applicable.is_empty() && open) {
                prop_assert!(after || !got);
            }
        }
    }
}
