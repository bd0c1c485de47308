//! The parts of Herald's domain that read what users and receivers send,
//! compiled from `src/domain` itself so the fuzz targets exercise the code
//! the server runs. Only the modules the targets need are listed; each one
//! finds the siblings it names through `super::`.

#[path = "../../src/domain"]
pub mod domain {
    pub mod format;
    pub mod headers;
    pub mod profile;
    pub mod retry;
    pub mod secret;
    pub mod signature;
}
