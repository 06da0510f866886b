//! Access control lists as the metadata keeps them: Kafka's ACL bindings
//! (a resource pattern and an access control entry) with Kafka's numeric
//! codes, and the filters CreateAcls, DescribeAcls and DeleteAcls use.
//! Deciding a request against them is the broker's authorizer
//! (`weir-broker`'s `security::authorizer`); what is here is the data and
//! filter matching, so that the controller deletes exactly what a filter
//! names on the image it decides on.

use serde::{Deserialize, Serialize};

/// Kafka's resource types (`org.apache.kafka.common.resource.ResourceType`).
pub mod resource {
    /// Only in filters: any type.
    pub const ANY: i8 = 1;
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A consumer group.
    pub const GROUP: i8 = 3;
    /// The cluster (its one name is `kafka-cluster`).
    pub const CLUSTER: i8 = 4;
    /// A transactional id.
    pub const TRANSACTIONAL_ID: i8 = 5;
    /// A delegation token.
    pub const DELEGATION_TOKEN: i8 = 6;
    /// A user (for CREATE_TOKENS / DESCRIBE_TOKENS).
    pub const USER: i8 = 7;
}

/// Kafka's pattern types (`PatternType`).
pub mod pattern {
    /// Only in filters: any pattern type.
    pub const ANY: i8 = 1;
    /// Only in filters: every binding that would apply to the named
    /// resource (literal, the `*` wildcard, matching prefixes).
    pub const MATCH: i8 = 2;
    /// The name as given (`*`: every resource of the type).
    pub const LITERAL: i8 = 3;
    /// Every resource whose name starts with the given one.
    pub const PREFIXED: i8 = 4;
}

/// Kafka's operations (`AclOperation`).
pub mod operation {
    /// Only in filters: any operation.
    pub const ANY: i8 = 1;
    /// Every operation.
    pub const ALL: i8 = 2;
    /// Read.
    pub const READ: i8 = 3;
    /// Write.
    pub const WRITE: i8 = 4;
    /// Create.
    pub const CREATE: i8 = 5;
    /// Delete.
    pub const DELETE: i8 = 6;
    /// Alter.
    pub const ALTER: i8 = 7;
    /// Describe.
    pub const DESCRIBE: i8 = 8;
    /// Broker-to-broker actions (a follower's fetch).
    pub const CLUSTER_ACTION: i8 = 9;
    /// Describe configs.
    pub const DESCRIBE_CONFIGS: i8 = 10;
    /// Alter configs.
    pub const ALTER_CONFIGS: i8 = 11;
    /// Idempotent produce.
    pub const IDEMPOTENT_WRITE: i8 = 12;
    /// Create delegation tokens.
    pub const CREATE_TOKENS: i8 = 13;
    /// Describe delegation tokens.
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// Kafka's permission types (`AclPermissionType`).
pub mod permission {
    /// Only in filters: either.
    pub const ANY: i8 = 1;
    /// Deny (wins over any allow).
    pub const DENY: i8 = 2;
    /// Allow.
    pub const ALLOW: i8 = 3;
}

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The name of a literal binding that matches every resource of its type,
/// and the principal or host that matches every one.
pub const WILDCARD: &str = "*";

/// One ACL: a resource pattern and an access control entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// [`resource`] code (never ANY).
    pub resource_type: i8,
    /// The resource name, or prefix, or `*`.
    pub resource_name: String,
    /// [`pattern`] LITERAL or PREFIXED.
    pub pattern_type: i8,
    /// `User:name` or `User:*`.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    /// [`operation`] code (never ANY).
    pub operation: i8,
    /// [`permission`] ALLOW or DENY.
    pub permission: i8,
}

/// A filter over bindings: `None` strings and ANY codes match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    /// [`resource`] code or ANY.
    pub resource_type: i8,
    /// The name (`None`: any).
    pub resource_name: Option<String>,
    /// [`pattern`] code, ANY or MATCH.
    pub pattern_type: i8,
    /// The principal (`None`: any).
    pub principal: Option<String>,
    /// The host (`None`: any).
    pub host: Option<String>,
    /// [`operation`] code or ANY.
    pub operation: i8,
    /// [`permission`] code or ANY.
    pub permission: i8,
}

impl AclBinding {
    /// Why this binding cannot be stored, as Kafka's CreateAcls refuses
    /// it (INVALID_REQUEST), or `None`.
    pub fn invalid(&self) -> Option<String> {
        use self::{operation as op, pattern as pt, permission as pm, resource as rt};
        if !(rt::TOPIC..=rt::USER).contains(&self.resource_type) {
            return Some(format!(
                "resource type {} is not a concrete resource type",
                self.resource_type
            ));
        }
        if ![pt::LITERAL, pt::PREFIXED].contains(&self.pattern_type) {
            return Some(format!(
                "pattern type {} is not LITERAL or PREFIXED",
                self.pattern_type
            ));
        }
        if !(op::ALL..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some(format!(
                "operation {} is not a concrete operation",
                self.operation
            ));
        }
        if ![pm::ALLOW, pm::DENY].contains(&self.permission) {
            return Some(format!(
                "permission type {} is not ALLOW or DENY",
                self.permission
            ));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name must not be empty".to_owned());
        }
        if self.resource_type == rt::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Some(format!(
                    "principal {:?} is not of the form Type:name (User:alice)",
                    self.principal
                ));
            }
        }
        if self.host.is_empty() {
            return Some("the host must be an address or *".to_owned());
        }
        None
    }

    /// Whether this binding's pattern applies to the resource `name` of
    /// type `resource_type`.
    pub fn applies_to(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

impl AclFilter {
    /// Why this filter cannot be used (INVALID_REQUEST), or `None`.
    pub fn invalid(&self) -> Option<String> {
        use self::{operation as op, pattern as pt, permission as pm, resource as rt};
        if !(rt::ANY..=rt::USER).contains(&self.resource_type) {
            return Some(format!("unknown resource type {}", self.resource_type));
        }
        if !(pt::ANY..=pt::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("unknown pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some(format!("unknown operation {}", self.operation));
        }
        if !(pm::ANY..=pm::ALLOW).contains(&self.permission) {
            return Some(format!("unknown permission type {}", self.permission));
        }
        None
    }

    /// Whether the binding passes this filter (Kafka's
    /// `AclBindingFilter.matches`).
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource = match self.pattern_type {
            pattern::MATCH => {
                (self.resource_type == resource::ANY || self.resource_type == b.resource_type)
                    && match &self.resource_name {
                        None => true,
                        Some(name) => b.applies_to(b.resource_type, name),
                    }
            }
            pt => {
                (self.resource_type == resource::ANY || self.resource_type == b.resource_type)
                    && (pt == pattern::ANY || pt == b.pattern_type)
                    && self
                        .resource_name
                        .as_ref()
                        .is_none_or(|n| *n == b.resource_name)
            }
        };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == operation::ANY || self.operation == b.operation)
            && (self.permission == permission::ANY || self.permission == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: i8, name: &str, pt: i8, principal: &str, op: i8, pm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: pm,
        }
    }

    fn any() -> AclFilter {
        AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission: permission::ANY,
        }
    }

    #[test]
    fn kafka_refuses_these_bindings_and_so_does_the_metadata() {
        let ok = binding(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:alice",
            operation::READ,
            permission::ALLOW,
        );
        assert_eq!(ok.invalid(), None);
        let bad = [
            AclBinding {
                resource_type: resource::ANY,
                ..ok.clone()
            },
            AclBinding {
                pattern_type: pattern::MATCH,
                ..ok.clone()
            },
            AclBinding {
                operation: operation::ANY,
                ..ok.clone()
            },
            AclBinding {
                permission: permission::ANY,
                ..ok.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..ok.clone()
            },
            AclBinding {
                resource_type: resource::CLUSTER,
                resource_name: "mine".into(),
                ..ok.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                host: String::new(),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.invalid().is_some(), "{b:?}");
        }
    }

    #[test]
    fn filters_match_as_kafka_defines_them() {
        use operation::*;
        let literal = binding(
            resource::TOPIC,
            "logs",
            pattern::LITERAL,
            "User:a",
            READ,
            permission::ALLOW,
        );
        let wildcard = binding(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:b",
            WRITE,
            permission::DENY,
        );
        let prefixed = binding(
            resource::TOPIC,
            "lo",
            pattern::PREFIXED,
            "User:a",
            DESCRIBE,
            permission::ALLOW,
        );
        let group = binding(
            resource::GROUP,
            "logs",
            pattern::LITERAL,
            "User:a",
            READ,
            permission::ALLOW,
        );
        let all = [&literal, &wildcard, &prefixed, &group];
        let count = |f: &AclFilter| all.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(&any()), 4);
        // MATCH: what applies to topic "logs".
        let f = AclFilter {
            resource_type: resource::TOPIC,
            resource_name: Some("logs".into()),
            pattern_type: pattern::MATCH,
            ..any()
        };
        assert_eq!(count(&f), 3);
        // ANY with a name: exactly that name, either pattern type.
        let f = AclFilter {
            resource_name: Some("logs".into()),
            ..any()
        };
        assert_eq!(count(&f), 2);
        let f = AclFilter {
            pattern_type: pattern::PREFIXED,
            ..any()
        };
        assert_eq!(count(&f), 1);
        let f = AclFilter {
            principal: Some("User:a".into()),
            operation: READ,
            ..any()
        };
        assert_eq!(count(&f), 2);
        let f = AclFilter {
            permission: permission::DENY,
            ..any()
        };
        assert_eq!(count(&f), 1);
        let f = AclFilter {
            host: Some("10.0.0.1".into()),
            ..any()
        };
        assert_eq!(count(&f), 0);
        assert!(
            AclFilter {
                resource_type: 9,
                ..any()
            }
            .invalid()
            .is_some()
        );
        assert!(any().invalid().is_none());
    }
}
