//! Figures for people: byte counts (`1.2 MiB`), ages (`3m05s`), round-trip times (`0.89ms`)
//! and percentages. Pure formatting; the JSON report keeps the raw numbers.

/// `156 B`, `1.2 KiB`, `34 MiB`: binary units, one decimal below 10.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `12s`, `3m05s`, `2h03m`, `4d02h`: the two leading units of an age in seconds.
pub fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// `0.89ms`, `12.3ms`, `250ms`: about three significant digits.
pub fn rtt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// `0.4%` of `part` in `whole` (one decimal; `-` when `whole` is zero).
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024), "10 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16 EiB");
    }

    #[test]
    fn ages_show_two_units() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(12), "12s");
        assert_eq!(age(65), "1m05s");
        assert_eq!(age(3_600 + 180), "1h03m");
        assert_eq!(age(2 * 86_400 + 3 * 3_600 + 59), "2d03h");
    }

    #[test]
    fn rtt_keeps_three_digits() {
        assert_eq!(rtt_ms(0.892), "0.89ms");
        assert_eq!(rtt_ms(12.34), "12.3ms");
        assert_eq!(rtt_ms(250.4), "250ms");
    }

    #[test]
    fn percent_of_nothing_is_a_dash() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "-");
    }
}
