//! PostgreSQL intervals as seconds, the way `extract(epoch FROM interval)` counts them: a year of
//! months is 365.25 days, a month outside whole years 30 days, a day 86,400 seconds. Parts may
//! carry different signs (`1 day -1 hour` is 23 hours).

/// Seconds in an interval of `months`, `days` and `micros` (PostgreSQL's three fields).
pub fn epoch_seconds(months: i32, days: i32, micros: i64) -> f64 {
    const SECS_PER_DAY: i64 = 86_400;
    // DAYS_PER_YEAR (365.25) * SECS_PER_DAY, and DAYS_PER_MONTH (30) * SECS_PER_DAY.
    const SECS_PER_YEAR: i64 = 31_557_600;
    const SECS_PER_MONTH: i64 = 30 * SECS_PER_DAY;
    let months = i64::from(months);
    let whole = SECS_PER_YEAR * (months / 12)
        + SECS_PER_MONTH * (months % 12)
        + SECS_PER_DAY * i64::from(days);
    whole as f64 + micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_extract_epoch_counts() {
        assert_eq!(epoch_seconds(0, 0, 3_600_000_000), 3600.0);
        assert_eq!(epoch_seconds(0, 1, -3_600_000_000), 82_800.0); // '1 day -1 hour'
        assert_eq!(epoch_seconds(1, 0, 0), 2_592_000.0); // '1 month'
        assert_eq!(epoch_seconds(12, 0, 0), 31_557_600.0); // '1 year'
        assert_eq!(epoch_seconds(14, 0, 0), 31_557_600.0 + 2.0 * 2_592_000.0);
        assert_eq!(epoch_seconds(-1, 0, 0), -2_592_000.0);
        assert_eq!(epoch_seconds(0, 0, 1_500_000), 1.5);
        assert_eq!(epoch_seconds(-13, 0, 0), -31_557_600.0 - 2_592_000.0);
    }
}
