//! Adapter: the command line's own workflows, those that are more than one
//! call into a service (`herald token` is one call, and lives in the
//! service). `herald import svix` copies a Svix server into Herald; `herald
//! keys` makes keys and drives a rotation of the secret key.

pub mod import_svix;
pub mod keys;
mod svix;
