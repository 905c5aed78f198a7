//! Masking of personal data in reports, logs and explanations: enough is shown to tell values
//! apart, not to identify anyone (`110105********002X`, `138****5678`, `张*`).

/// Masks a value by its shape: ID-like values keep their first 6 and last 4 characters,
/// phones their first 3 and last 4, short text its first character.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
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
        5..=11 => keep(3, 4.min(n - 3 - 1)),
        _ => keep(6, 4),
    }
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
    }
}
