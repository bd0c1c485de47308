//! Adapter: the command line's own workflows, those that are more than one
//! call into a service (`herald token` is one call, and lives in the
//! service). `herald import svix` copies a Svix server into Herald.

pub mod import_svix;
mod svix;
