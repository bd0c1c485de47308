//! What an operator sees first: deliveries across every application, the
//! queue, the endpoints in trouble, the broker sources and the server.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::ServiceResult;
use super::sources::SourceHealth;
use crate::config::DatabaseUrl;
use crate::store::{Gauges, TrafficBucket};

/// Most endpoints in trouble listed.
pub const TROUBLED_SHOWN: u32 = 100;

/// Attempts in a window, by outcome, per period.
#[derive(Debug)]
pub struct Traffic {
    /// Periods in the window, oldest first.
    pub periods: i64,
    pub period_seconds: u64,
    pub buckets: Vec<TrafficBucket>,
}

/// An endpoint that is failing or disabled, with its application.
#[derive(Debug, Serialize)]
pub struct TroubledEndpoint {
    pub app_id: String,
    pub app_name: String,
    pub endpoint_id: String,
    pub description: String,
    pub url: String,
    /// `failing` or `disabled`.
    pub state: &'static str,
    pub since: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Storage {
    /// `SQLite` or `PostgreSQL`.
    pub backend: &'static str,
    /// The file, or the server and database (never the password).
    pub location: String,
    pub oldest_message_at: Option<DateTime<Utc>>,
    pub history_retention: String,
    pub payload_retention: String,
}

#[derive(Debug)]
pub struct Overview {
    pub last_hour: Traffic,
    pub last_day: Traffic,
    pub queued: i64,
    /// How late the most overdue queued delivery is, in seconds.
    pub lag_seconds: i64,
    pub endpoints_healthy: i64,
    pub endpoints_failing: i64,
    pub endpoints_disabled: i64,
    pub troubled: Vec<TroubledEndpoint>,
    pub sources: Vec<SourceHealth>,
    pub version: &'static str,
    pub storage: Storage,
}

async fn traffic(state: &AppState, periods: i64, period: Duration) -> ServiceResult<Traffic> {
    let span = chrono::Duration::from_std(period * u32::try_from(periods).unwrap_or(1)).unwrap_or_default();
    let since = state.clock.now() - span;
    let buckets = state.store.traffic(since, period).await?;
    Ok(Traffic {
        periods,
        period_seconds: period.as_secs(),
        buckets: buckets
            .into_iter()
            .filter(|b| (0..periods).contains(&b.period))
            .collect(),
    })
}

fn storage(state: &AppState, oldest_message_at: Option<DateTime<Utc>>) -> Storage {
    let (backend, location) = match &state.config.database {
        DatabaseUrl::Sqlite(path) => ("SQLite", path.display().to_string()),
        DatabaseUrl::Postgres(url) => (
            "PostgreSQL",
            url::Url::parse(url.expose())
                .ok()
                .map(|u| {
                    let host = u.host_str().unwrap_or("localhost");
                    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                    format!("{host}{port}{}", u.path())
                })
                .unwrap_or_default(),
        ),
    };
    Storage {
        backend,
        location,
        oldest_message_at,
        history_retention: crate::config::format_window(state.config.history_retention),
        payload_retention: crate::config::format_window(state.config.payload_retention),
    }
}

/// The operator's overview, read in a few queries.
pub async fn overview(state: &AppState) -> ServiceResult<Overview> {
    let last_hour = traffic(state, 60, Duration::from_secs(60)).await?;
    let last_day = traffic(state, 48, Duration::from_secs(1800)).await?;
    let Gauges {
        queued,
        most_overdue,
        endpoints_healthy,
        endpoints_failing,
        endpoints_disabled,
    } = state.store.gauges().await?;
    let now = state.clock.now();
    let lag_seconds = most_overdue.map_or(0, |due| (now - due).num_seconds().max(0));
    let endpoints = state.store.troubled_endpoints(TROUBLED_SHOWN).await?;
    let mut names = BTreeMap::new();
    let mut troubled = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        if !names.contains_key(ep.app_id.as_str()) {
            let name = state.store.get_app(ep.app_id.as_str()).await?.map(|a| a.name);
            names.insert(ep.app_id.to_string(), name.unwrap_or_default());
        }
        troubled.push(TroubledEndpoint {
            app_name: names.get(ep.app_id.as_str()).cloned().unwrap_or_default(),
            app_id: ep.app_id.to_string(),
            endpoint_id: ep.id.to_string(),
            description: ep.description,
            url: ep.url,
            state: if ep.disabled { "disabled" } else { "failing" },
            since: ep.failing_since,
            reason: ep.disabled_reason,
        });
    }
    let oldest = state.store.oldest_message_at().await?;
    Ok(Overview {
        last_hour,
        last_day,
        queued,
        lag_seconds,
        endpoints_healthy,
        endpoints_failing,
        endpoints_disabled,
        troubled,
        sources: state.sources.health(),
        version: env!("CARGO_PKG_VERSION"),
        storage: storage(state, oldest),
    })
}
