//! The `[profiles]` table of the configuration file, as TOML text: reading
//! and building never panics, and a profile that builds keeps the rules its
//! error messages promise.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_fuzz::domain::headers::{is_reserved, is_token};
use herald_fuzz::domain::profile::{
    DEFAULT_PROFILE, MAX_TIMEOUT, Profile, ProfileSpec, Profiles, ServerDefaults, VerifyMethod,
};
use herald_fuzz::domain::retry::RetrySchedule;
use herald_fuzz::domain::signature::SignatureStyle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(specs) = toml::from_str::<BTreeMap<String, ProfileSpec>>(text) else {
        return;
    };
    let names: Vec<String> = specs.keys().cloned().collect();
    let defaults = ServerDefaults {
        retry_schedule: RetrySchedule::default(),
        timeout: Duration::from_secs(15),
    };
    let Ok(profiles) = Profiles::build(specs, &defaults) else {
        return;
    };
    assert!(profiles.get(DEFAULT_PROFILE).is_some());
    for name in &names {
        let profile = profiles.get(name).expect("every table becomes a profile");
        check_profile(name, profile);
    }
});

fn check_profile(name: &str, p: &Profile) {
    assert_eq!(p.name, name);
    assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert!(
        !p.timeout.is_zero() && p.timeout <= MAX_TIMEOUT,
        "{name}: timeout {:?}",
        p.timeout
    );
    if let Some(every) = p.reverify_every {
        assert!(every >= Duration::from_secs(1) && p.verify != VerifyMethod::None);
    }
    if let Some(event) = &p.event_header {
        assert!(is_token(event) && !is_reserved(event), "{name}: event header {event:?}");
    }
    if let SignatureStyle::BodyHmac { header, prefix, .. } = &p.signature {
        assert!(
            is_token(header) && !is_reserved(header),
            "{name}: signature header {header:?}"
        );
        assert!(prefix.len() <= 64 && prefix.chars().all(|c| c.is_ascii_graphic()));
        if let Some(event) = &p.event_header {
            assert!(!header.eq_ignore_ascii_case(event));
        }
    }
}
