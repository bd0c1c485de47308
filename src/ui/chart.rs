//! The small success-rate chart of an endpoint's last day, and the
//! overview's stacked chart of every delivery, drawn as SVG bars by the
//! templates from the numbers worked out here.

use serde::Serialize;

use crate::store::{ActivityBucket, TrafficBucket};

/// Hours shown.
pub const PERIODS: i64 = 24;
const BAR_WIDTH: i64 = 5;
const GAP: i64 = 1;
const HEIGHT: i64 = 28;

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub height: i64,
    /// `ok` (all delivered), `mixed` or `bad` (none delivered).
    pub class: &'static str,
    pub label: String,
}

#[derive(Serialize, Debug)]
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub bars: Vec<Bar>,
    pub attempts: i64,
    /// Delivered attempts, in percent with one decimal; none without attempts.
    pub success_rate: Option<String>,
}

/// One endpoint's buckets (period 0 is the oldest hour) as bars scaled to
/// the busiest hour.
pub fn chart(buckets: &[&ActivityBucket]) -> Chart {
    let busiest = buckets.iter().map(|b| b.attempts).max().unwrap_or(0).max(1);
    let bars = buckets
        .iter()
        .filter(|b| (0..PERIODS).contains(&b.period) && b.attempts > 0)
        .map(|b| {
            let height = ((b.attempts * HEIGHT + busiest - 1) / busiest).max(2);
            let class = match (b.succeeded, b.attempts) {
                (s, a) if s == a => "ok",
                (0, _) => "bad",
                _ => "mixed",
            };
            let hours_ago = PERIODS - b.period;
            Bar {
                x: b.period * (BAR_WIDTH + GAP),
                y: HEIGHT - height,
                height,
                class,
                label: format!("{} of {} delivered, {hours_ago} h ago", b.succeeded, b.attempts),
            }
        })
        .collect();
    let attempts: i64 = buckets.iter().map(|b| b.attempts).sum();
    let succeeded: i64 = buckets.iter().map(|b| b.succeeded).sum();
    Chart {
        width: PERIODS * (BAR_WIDTH + GAP),
        height: HEIGHT,
        bars,
        attempts,
        success_rate: (attempts > 0).then(|| format!("{:.1}", succeeded as f64 * 100.0 / attempts as f64)),
    }
}

/// Height of the overview's charts.
const TRAFFIC_HEIGHT: i64 = 80;

/// One outcome's part of a period's bar.
#[derive(Serialize, Debug)]
pub struct Segment {
    pub y: i64,
    pub height: i64,
    /// `ok` (succeeded), `retrying` or `bad` (failed for good).
    pub class: &'static str,
}

#[derive(Serialize, Debug)]
pub struct Column {
    pub x: i64,
    pub segments: Vec<Segment>,
    pub label: String,
}

/// Attempts of every endpoint over a window, a stacked bar per period.
#[derive(Serialize, Debug)]
pub struct TrafficChart {
    pub width: i64,
    pub height: i64,
    pub bar_width: i64,
    pub columns: Vec<Column>,
    pub succeeded: i64,
    pub failed: i64,
    pub retrying: i64,
    /// Attempts per minute over the window, one decimal.
    pub per_minute: String,
    /// What the chart says, for people who cannot see it.
    pub summary: String,
}

/// `periods` periods of `period_seconds` (period 0 the oldest), scaled to the busiest.
pub fn traffic_chart(periods: i64, period_seconds: u64, buckets: &[TrafficBucket], window: &str) -> TrafficChart {
    let bar_width = if periods > 50 { 4 } else { 6 };
    let total = |b: &TrafficBucket| b.succeeded + b.failed + b.retrying;
    let busiest = buckets.iter().map(total).max().unwrap_or(0).max(1);
    let minutes = |n: i64| {
        let secs = i64::try_from(period_seconds).unwrap_or(60) * n;
        if secs >= 3600 && secs % 3600 == 0 {
            format!("{} h", secs / 3600)
        } else {
            format!("{} min", secs / 60)
        }
    };
    let columns = buckets
        .iter()
        .filter(|b| (0..periods).contains(&b.period) && total(b) > 0)
        .map(|b| {
            let mut top = TRAFFIC_HEIGHT;
            let mut segments = Vec::new();
            for (count, class) in [(b.succeeded, "ok"), (b.retrying, "retrying"), (b.failed, "bad")] {
                if count > 0 {
                    let height = ((count * TRAFFIC_HEIGHT + busiest - 1) / busiest).max(2);
                    top -= height;
                    segments.push(Segment { y: top, height, class });
                }
            }
            Column {
                x: b.period * (bar_width + 1),
                segments,
                label: format!(
                    "{} succeeded, {} retrying, {} failed, {} ago",
                    b.succeeded,
                    b.retrying,
                    b.failed,
                    minutes(periods - b.period)
                ),
            }
        })
        .collect();
    let (succeeded, failed, retrying) = buckets.iter().fold((0, 0, 0), |(s, f, r), b| {
        (s + b.succeeded, f + b.failed, r + b.retrying)
    });
    let window_minutes = (i64::try_from(period_seconds).unwrap_or(60) * periods / 60).max(1);
    let per_minute = format!("{:.1}", (succeeded + failed + retrying) as f64 / window_minutes as f64);
    TrafficChart {
        width: periods * (bar_width + 1),
        height: TRAFFIC_HEIGHT,
        bar_width,
        columns,
        succeeded,
        failed,
        retrying,
        summary: format!(
            "Attempts in the last {window}: {succeeded} succeeded, {retrying} failed and were retried, {failed} failed for good; {per_minute} a minute"
        ),
        per_minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EndpointId;

    #[test]
    fn traffic_stacks_outcomes_and_scales_to_the_busiest_period() {
        let b = [
            TrafficBucket {
                period: 0,
                succeeded: 6,
                failed: 1,
                retrying: 1,
            },
            TrafficBucket {
                period: 59,
                succeeded: 4,
                failed: 0,
                retrying: 0,
            },
        ];
        let c = traffic_chart(60, 60, &b, "hour");
        assert_eq!(c.columns.len(), 2);
        let first = &c.columns[0];
        assert_eq!(
            first.segments.iter().map(|s| s.class).collect::<Vec<_>>(),
            ["ok", "retrying", "bad"]
        );
        assert_eq!(first.segments[0].height, TRAFFIC_HEIGHT * 6 / 8);
        assert!(first.segments.iter().all(|s| s.y >= 0));
        assert_eq!(c.columns[1].x, 59 * 5);
        assert!(first.label.ends_with("1 h ago"), "{}", first.label);
        assert_eq!((c.succeeded, c.failed, c.retrying), (10, 1, 1));
        assert_eq!(c.per_minute, "0.2");
    }

    fn bucket(period: i64, succeeded: i64, attempts: i64) -> ActivityBucket {
        ActivityBucket {
            endpoint_id: EndpointId::generate(),
            period,
            succeeded,
            attempts,
        }
    }

    #[test]
    fn bars_scale_to_the_busiest_hour_and_colour_by_outcome() {
        let b = [bucket(0, 10, 10), bucket(12, 0, 5), bucket(23, 3, 4)];
        let c = chart(&b.iter().collect::<Vec<_>>());
        assert_eq!(c.bars.len(), 3);
        assert_eq!((c.bars[0].height, c.bars[0].class), (HEIGHT, "ok"));
        assert_eq!((c.bars[1].height, c.bars[1].class), (HEIGHT / 2, "bad"));
        assert_eq!(c.bars[2].class, "mixed");
        assert_eq!(c.bars[2].x, 23 * (BAR_WIDTH + GAP));
        assert_eq!(c.attempts, 19);
        assert_eq!(c.success_rate.as_deref(), Some("68.4"));
    }

    #[test]
    fn no_attempts_means_no_rate() {
        let c = chart(&[]);
        assert!(c.bars.is_empty());
        assert_eq!(c.success_rate, None);
    }
}
