//! The small success-rate chart of an endpoint's last day, drawn as SVG
//! bars by the template from the numbers worked out here.

use serde::Serialize;

use crate::store::ActivityBucket;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EndpointId;

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
