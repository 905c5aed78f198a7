//! Dates from the usual departmental formats (`1990-01-02`, `1990/1/2`, `19900102`,
//! `1990年1月2日`, `1990.1.2`, `02/01/1990`) to `YYYY-MM-DD`.

/// True for a real calendar date between 1880 and 2100.
pub fn ymd_is_valid(y: u32, m: u32, d: u32) -> bool {
    if !(1880..=2100).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

/// Parses a folded date text into (year, month, day).
pub fn parse(s: &str) -> Option<(u32, u32, u32)> {
    // The forms below look at no more than the first four runs of digits.
    let mut runs = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let mut parts: [&str; 4] = [""; 4];
    let mut count = 0;
    for p in runs.by_ref().take(4) {
        parts[count] = p;
        count += 1;
    }
    let parts = &parts[..count];
    let num = |p: &str| p.parse::<u32>().ok();
    let (y, m, d) = match parts {
        [one] if one.len() == 8 => (num(&one[..4])?, num(&one[4..6])?, num(&one[6..])?),
        [y, m, d, ..] if y.len() == 4 => (num(y)?, num(m)?, num(d)?),
        // Day first (02/01/1990), as some forms write it.
        [d, m, y] if y.len() == 4 && d.len() <= 2 => (num(y)?, num(m)?, num(d)?),
        _ => return None,
    };
    ymd_is_valid(y, m, d).then_some((y, m, d))
}

/// Standardised `YYYY-MM-DD`, or `None` when the text is not a date.
pub fn standardise(s: &str) -> Option<String> {
    let (y, m, d) = parse(s)?;
    Some(iso(y, m, d))
}

/// [`standardise`], appended to `out`; false when the date cannot be read.
pub fn standardise_into(s: &str, out: &mut String) -> bool {
    parse(s).map(|(y, m, d)| iso_into(y, m, d, out)).is_some()
}

/// `YYYY-MM-DD` of a valid date ([`ymd_is_valid`]), without the formatting machinery.
pub fn iso(y: u32, m: u32, d: u32) -> String {
    let mut s = String::with_capacity(10);
    iso_into(y, m, d, &mut s);
    s
}

/// [`iso`], appended to `out`.
pub fn iso_into(y: u32, m: u32, d: u32, out: &mut String) {
    let digit = |v: u32| char::from(b'0' + (v % 10) as u8);
    out.extend([
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        '-',
        digit(m / 10),
        digit(m),
        '-',
        digit(d / 10),
        digit(d),
    ]);
}

/// Days since 1970-01-01 of a standardised date (civil-from-days inverse).
pub fn days(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_formats() {
        for s in [
            "1990-01-02",
            "1990/1/2",
            "19900102",
            "1990年1月2日",
            "1990.01.02",
            "02/01/1990",
        ] {
            assert_eq!(standardise(s).as_deref(), Some("1990-01-02"), "{s}");
        }
        assert_eq!(standardise("1990-02-30"), None);
        assert_eq!(standardise("abc"), None);
    }

    #[test]
    fn day_numbers() {
        assert_eq!(days("1970-01-01"), Some(0));
        assert_eq!(days("2000-03-01"), Some(11017));
    }
}
