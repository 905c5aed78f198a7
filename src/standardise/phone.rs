//! Phone numbers: digits only, country prefix removed; mobiles as 11 digits `1[3-9]...`.

/// Standardised phone number, or `None` when the text holds no usable number.
pub fn standardise(s: &str) -> Option<String> {
    let mut d = String::new();
    standardise_into(s, &mut d).then_some(d)
}

/// [`standardise`], written into `d` (empty); false when the number is unusable.
pub fn standardise_into(s: &str, d: &mut String) -> bool {
    d.extend(s.chars().filter(char::is_ascii_digit));
    if d.len() == 15 && d.starts_with("0086") {
        d.drain(..4);
    } else if d.len() == 13 && d.starts_with("86") {
        d.drain(..2);
    }
    let b = d.as_bytes();
    !(b.len() < 7 || b.len() > 12 || b.iter().all(|&c| c == b[0]))
}

/// True for a mainland mobile number.
pub fn is_mobile(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_separators() {
        for s in [
            "+86 138-1234-5678",
            "8613812345678",
            "138 1234 5678",
            "0086 13812345678",
        ] {
            assert_eq!(standardise(s).as_deref(), Some("13812345678"), "{s}");
        }
        assert!(is_mobile("13812345678"));
        assert_eq!(standardise("00000000000"), None);
    }
}
