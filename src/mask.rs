//! Masking of personal data in reports, logs and explanations: enough is shown to tell values
//! apart, not to identify anyone (`110105********002X`, `138****5678`, `张*`).

/// Masks a value by its shape: dates show no digit (a birth date's month and day with an ID
/// number's shown ends would give the whole ID back), ID-like values keep their first 6 and
/// last 4 characters, phones their first 3 and last 4, other short codes their first and a
/// quarter of their last characters, short text its first character. At least half of a
/// value of 5 to 14 characters is hidden (but for 11, phones, shown in their usual form),
/// and an ID number's birth date always.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if is_date(&chars) {
        return chars
            .iter()
            .map(|&c| if c.is_ascii_digit() { '*' } else { c })
            .collect();
    }
    let keep = |head: usize, tail: usize| -> String {
        chars[..head]
            .iter()
            .chain(std::iter::repeat_n(&'*', n - head - tail))
            .chain(&chars[n - tail..])
            .collect()
    };
    match n {
        0 => String::new(),
        1 => "*".into(),
        2..=4 => keep(1, 0),
        5..=10 => keep(1, n / 4),
        11 => keep(3, 4),
        12..=14 => keep(3, 3),
        // A 15-digit ID number's birth date is characters 7-12: all hidden.
        15..=17 => keep(6, 3),
        _ => keep(6, 4),
    }
}

/// `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD` or `YYYY-MM`: digits with at most
/// single separators, in the lengths a date has.
fn is_date(chars: &[char]) -> bool {
    let digits = chars.iter().filter(|c| c.is_ascii_digit()).count();
    let seps = chars.len() - digits;
    let sep_ok = chars
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | '/' | '.'));
    let starts_with_year = chars.len() >= 4 && chars[..4].iter().all(char::is_ascii_digit);
    sep_ok
        && starts_with_year
        && matches!((digits, seps), (8, 0) | (6..=8, 2) | (5..=6, 1))
        && chars.len() == digits + seps
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn shapes() {
        assert_eq!(mask("11010519491231002X"), "110105********002X");
        assert_eq!(mask("13812345678"), "138****5678");
        assert_eq!(mask("张伟"), "张*");
        assert_eq!(mask("欧阳翠花"), "欧***");
        assert_eq!(mask("x"), "*");
        assert_eq!(mask("AB123456"), "A*****56");
    }

    #[test]
    fn dates_show_no_digit() {
        // With the ID's shown ends, a birth date's month and day would give the whole ID.
        assert_eq!(mask("2006-09-12"), "****-**-**");
        assert_eq!(mask("20060912"), "********");
        assert_eq!(mask("2006/9/12"), "****/*/**");
        assert_eq!(mask("2006-09"), "****-**");
    }

    #[test]
    fn at_least_half_hidden() {
        for n in (5..=14).filter(|&n| n != 11) {
            let s: String = "0123456789ABCDEFGHIJKLMNOPQ".chars().take(n).collect();
            let hidden = mask(&s).chars().filter(|&c| c == '*').count();
            assert!(2 * hidden >= n, "{s} -> {}", mask(&s));
        }
        // Birth dates inside ID numbers: characters 7-14 of 18, 7-12 of 15.
        assert_eq!(&mask("110105194912310021")[6..14], "********");
        assert_eq!(&mask("110105491231002")[6..12], "******");
    }
}
