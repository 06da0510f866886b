//! Authentication and authorization (docs/design/security.md): the SASL
//! exchanges ([`sasl`], with SCRAM in [`scram`]) and a connection's
//! authentication state ([`session`]), as pure state machines
//! the connection code drives; the first users of a cluster ([`bootstrap`]);
//! the ACL decision ([`authorizer`]), pure over a metadata image's bindings.

pub mod authorizer;
pub mod bootstrap;
pub mod sasl;
pub mod scram;
pub mod session;
