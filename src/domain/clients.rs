//! What the generations of Svix SDKs expect where they disagree, so one
//! Herald serves each as it expects. They name themselves in `User-Agent`
//! as `svix-libs/<version>/<language>`.

/// How to answer a secret rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateAnswer {
    /// `204` with no body: the 1.x SDKs accept nothing else.
    Empty,
    /// The new secret as JSON: the 2.x SDKs read a body, and so may anyone else.
    Secret,
}

/// The answer to a rotation for the client that sent `user_agent`.
pub fn rotate_answer(user_agent: Option<&str>) -> RotateAnswer {
    match svix_sdk_major(user_agent) {
        Some(1) => RotateAnswer::Empty,
        _ => RotateAnswer::Secret,
    }
}

/// The major version of a Svix SDK from its `User-Agent`, if it is one.
fn svix_sdk_major(user_agent: Option<&str>) -> Option<u64> {
    let version = user_agent?.strip_prefix("svix-libs/")?.split('/').next()?;
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_generation_sdks_get_an_empty_answer() {
        assert_eq!(rotate_answer(Some("svix-libs/1.40.0/python")), RotateAnswer::Empty);
        assert_eq!(rotate_answer(Some("svix-libs/1.99.1/rust")), RotateAnswer::Empty);
    }

    #[test]
    fn everyone_else_gets_the_secret() {
        for ua in [
            Some("svix-libs/2.9.1/python"),
            Some("svix-libs/10.0.0/javascript"),
            Some("svix-libs/garbage"),
            Some("curl/8.5.0"),
            Some("svix-libs-fake/1.0.0/python"),
            None,
        ] {
            assert_eq!(rotate_answer(ua), RotateAnswer::Secret, "{ua:?}");
        }
    }
}
