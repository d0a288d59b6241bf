//! The Lambda deadline, as an instant.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time the scheduled functions keep back from the Lambda deadline to
/// publish their metrics and answer.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(3);

/// The Runtime API's deadline (epoch milliseconds) as an instant, less
/// `margin`. A missing deadline (0) counts as Lambda's maximum of 15 minutes.
pub fn lambda_deadline(deadline_ms: u64, margin: Duration) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let remaining = match deadline_ms {
        0 => Duration::from_secs(900),
        ms => Duration::from_millis(ms.saturating_sub(now_ms)),
    };
    Instant::now() + remaining.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_comes_off_and_a_past_deadline_is_now() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = lambda_deadline(now_ms + 10_000, Duration::from_secs(3));
        let left = d.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(6_500) && left <= Duration::from_secs(7),
            "{left:?}"
        );
        let past = lambda_deadline(now_ms - 5_000, Duration::from_secs(3));
        assert!(past <= Instant::now());
        let missing = lambda_deadline(0, Duration::ZERO);
        assert!(missing > Instant::now() + Duration::from_secs(899));
    }
}
