//! Authentication and authorization (docs/design/security.md): the SASL
//! exchanges ([`sasl`], with SCRAM in [`scram`]) and a connection's
//! authentication state ([`session`]), as pure state machines
//! the connection code drives.

pub mod sasl;
pub mod scram;
pub mod session;
