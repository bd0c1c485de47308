//! Endpoint checks: the handshake a profile asks for before Herald accepts
//! an endpoint's URL, and its repetition (`reverify_every`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::Method;
use reqwest::header::ALLOW;
use tokio_util::sync::CancellationToken;

use super::client::Outbound;
use super::sender::{describe_send_error, overruled, read_bounded};
use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::operational::{DisableTrigger, Notices};
use crate::domain::profile::{Profile, VerifyMethod};
use crate::store::{Endpoint, Store};
use crate::telemetry::notify::Notifier;

/// Enough of a GET answer to compare with a challenge.
const CHALLENGE_BODY_LIMIT: usize = 1024;
const CHALLENGE_LEN: usize = 32;
/// Endpoints checked per round of the repeat loop.
const REVERIFY_BATCH: u32 = 100;
/// Longest pause between looks for endpoints due a repeat check.
const REVERIFY_TICK: Duration = Duration::from_secs(30);

/// Runs the profile's check against the endpoint's URL. The error says what the endpoint
/// did wrong, in words an operator can act on.
pub async fn check(outbound: &Outbound, profile: &Profile, endpoint: &Endpoint) -> Result<(), String> {
    let method = profile.verify;
    if method == VerifyMethod::None {
        return Ok(());
    }
    let mut target = outbound
        .policy()
        .check_url(&endpoint.url)
        .map_err(|e| format!("the URL {e}"))?;
    let timeout = profile.timeout;
    outbound.check_target(&target, timeout).await?;
    let verify_token = endpoint.verify_token.as_deref();
    let route = outbound.route(endpoint);
    let (verb, challenge) = match method {
        VerifyMethod::None => return Ok(()),
        VerifyMethod::Options => (Method::OPTIONS, None),
        VerifyMethod::Head => (Method::HEAD, None),
        VerifyMethod::GetChallenge => {
            let challenge = Alphanumeric.sample_string(&mut rand::thread_rng(), CHALLENGE_LEN);
            target
                .query_pairs_mut()
                .append_pair("verifyToken", verify_token.unwrap_or_default())
                .append_pair("challenge", &challenge);
            (Method::GET, Some(challenge))
        }
    };
    let response = route
        .client
        .request(verb.clone(), target)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            let reason = format!(
                "the {verb} check could not reach the endpoint: {}",
                describe_send_error(&e, timeout)
            );
            overruled(reason, route.tls_verify_ignored)
        })?;
    let status = response.status().as_u16();
    match method {
        VerifyMethod::Options => {
            let allow = response
                .headers()
                .get_all(ALLOW)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ");
            if !matches!(status, 200 | 204) {
                return Err(format!(
                    "the OPTIONS check got {status}; the endpoint must answer 200 or 204"
                ));
            }
            if !allow.split(',').any(|m| m.trim().eq_ignore_ascii_case("POST")) {
                let seen = if allow.is_empty() {
                    "no Allow header".to_owned()
                } else {
                    format!("Allow: {allow}")
                };
                return Err(format!(
                    "the OPTIONS answer must carry an Allow header that lists POST (it had {seen})"
                ));
            }
        }
        VerifyMethod::Head if status != 200 => {
            return Err(format!("the HEAD check got {status}; the endpoint must answer 200"));
        }
        VerifyMethod::GetChallenge => {
            if status != 200 {
                return Err(format!(
                    "the GET challenge check got {status}; the endpoint must answer 200"
                ));
            }
            let body = tokio::time::timeout(timeout, read_bounded(response, CHALLENGE_BODY_LIMIT))
                .await
                .unwrap_or_default();
            if challenge.as_deref() != Some(body.trim()) {
                let shown: String = body.chars().take(64).collect();
                return Err(format!(
                    "the GET challenge check must answer with the `challenge` query parameter as its body; \
                     it answered {shown:?}"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Repeats the checks of profiles with `reverify_every`, disabling an
/// endpoint whose check fails. Runs only if some profile asks for it.
pub async fn run_reverifier(
    store: Arc<dyn Store>,
    notifier: Notifier,
    wake: Arc<tokio::sync::Notify>,
    config: Arc<Config>,
    outbound: Outbound,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let Some(shortest) = config.profiles.iter().filter_map(|p| p.reverify_every).min() else {
        return;
    };
    let tick = shortest.clamp(Duration::from_secs(1), REVERIFY_TICK);
    tracing::info!(every = ?tick, "repeating endpoint checks");
    while !shutdown.is_cancelled() {
        if let Err(e) = reverify_due(store.as_ref(), (&notifier, &wake), &config, &outbound, &clock).await {
            tracing::error!(error = %e, "repeating endpoint checks failed; trying again later");
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// `told`: who hears of a disable, and the dispatcher's wake-up for its event.
async fn reverify_due(
    store: &dyn Store,
    told: (&Notifier, &tokio::sync::Notify),
    config: &Config,
    outbound: &Outbound,
    clock: &Clock,
) -> crate::store::StoreResult<()> {
    let now = clock.now();
    for (endpoint, app_profile) in store.endpoints_to_reverify(now, REVERIFY_BATCH).await? {
        let Some(due) = endpoint.reverify_at else { continue };
        let profile = config
            .profiles
            .resolve(endpoint.profile.as_deref(), app_profile.as_deref());
        let next = profile
            .and_then(|p| p.reverify_every)
            .and_then(|every| chrono::Duration::from_std(every).ok())
            .map(|every| now + every);
        if !store.claim_reverify(&endpoint.id, due, next).await? {
            continue; // another node took it
        }
        let Some(profile) = profile.filter(|_| next.is_some()) else {
            continue; // the profile no longer repeats its check
        };
        if let Err(reason) = check(outbound, profile, &endpoint).await {
            disable(store, told, &endpoint, &reason, clock.now()).await?;
        }
    }
    Ok(())
}

/// Disables the endpoint and tells the operator, in one transaction.
async fn disable(
    store: &dyn Store,
    (notifier, wake): (&Notifier, &tokio::sync::Notify),
    endpoint: &Endpoint,
    reason: &str,
    now: DateTime<Utc>,
) -> crate::store::StoreResult<()> {
    tracing::warn!(endpoint_id = %endpoint.id, %reason, "repeated endpoint check failed; disabling the endpoint");
    let reason = format!(
        "the repeated endpoint check failed at {}: {reason}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let notices = match store.get_app(endpoint.app_id.as_str()).await? {
        Some(app) => notifier.endpoint_disabled(&app, endpoint, DisableTrigger::Automatic, Some(&reason)),
        None => Notices::default(),
    };
    if store
        .disable_endpoint_noting(&endpoint.id, &reason, now, &notices)
        .await?
    {
        notifier.written(&notices);
        if !notices.messages.is_empty() {
            wake.notify_one();
        }
    }
    Ok(())
}
