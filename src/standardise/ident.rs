//! Identifier rules: resident ID card numbers (GB 11643), unified social credit codes
//! (GB 32100) and organisation codes (GB 11714). Pure functions, no allocation on the hot path
//! beyond the returned value.

/// Weights of the ID card check (ISO 7064 MOD 11-2) over the first 17 digits.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// `sum mod 11` indexes this table to give the ID card check character.
const ID_CHECK: [u8; 11] = *b"10X98765432";

/// The check character of an 18-digit ID from its first 17 digits; `None` if any is not a digit.
pub fn id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in first17.iter().zip(ID_WEIGHTS) {
        if !b.is_ascii_digit() {
            return None;
        }
        sum += u32::from(b - b'0') * w;
    }
    Some(ID_CHECK[(sum % 11) as usize])
}

/// Upgrades a legacy 15-digit ID (`AAAAAA YYMMDD SSS`) to 18 digits: `19` goes before the
/// year and the check character is computed.
pub fn upgrade_id15(id15: &str) -> Option<String> {
    let b = id15.as_bytes();
    if b.len() != 15 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&b[..6]);
    out.extend_from_slice(b"19");
    out.extend_from_slice(&b[6..]);
    let c = id_check_char(&out)?;
    out.push(c);
    String::from_utf8(out).ok()
}

/// True when an 18-character ID (upper-case X) has a correct check character and a
/// plausible birth date.
pub fn id_is_valid(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 18
        && id_check_char(&b[..17]) == Some(b[17])
        && crate::standardise::date::ymd_is_valid(
            parse_digits(&b[6..10]),
            parse_digits(&b[10..12]),
            parse_digits(&b[12..14]),
        )
}

/// Birth date `yyyymmdd` encoded in a valid ID.
pub fn id_birth(id: &str) -> Option<u32> {
    let b = id.as_bytes();
    (b.len() == 18).then(|| parse_digits(&b[6..14]))
}

/// Gender from the sequence digit (odd = male): `"M"` or `"F"`.
pub fn id_gender(id: &str) -> Option<&'static str> {
    let d = *id.as_bytes().get(16)?;
    d.is_ascii_digit()
        .then(|| if (d - b'0') % 2 == 1 { "M" } else { "F" })
}

fn parse_digits(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, d| {
        acc * 10 + u32::from(d.wrapping_sub(b'0')) % 10
    })
}

/// The USCC alphabet: `0-9 A-H J-N P-R T U W-Y` (no I O Z S V); a character's value is its index.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// The check character of a USCC from its first 17 characters.
pub fn uscc_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(c)? * w;
    }
    let c = (31 - sum % 31) % 31;
    Some(USCC_ALPHABET[c as usize])
}

/// True when an 18-character USCC has a correct check character.
pub fn uscc_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 18 && uscc_check_char(&b[..17]) == Some(b[17])
}

/// The organisation code embedded in a USCC (positions 9-17).
pub fn uscc_org_code(code: &str) -> Option<&str> {
    code.get(8..17)
}

/// The check character of an organisation code from its 8 body characters
/// (digits, and letters A=10 ... Z=35).
pub fn org_check_char(body: &[u8]) -> Option<u8> {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    if body.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in body.iter().zip(W) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        c => b'0' + c as u8,
    })
}

/// True when a 9-character organisation code (no hyphen) has a correct check character.
pub fn org_code_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 9 && org_check_char(&b[..8]) == Some(b[8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_id_example() {
        assert!(id_is_valid("11010519491231002X"));
        assert!(!id_is_valid("110105194912310021"));
        assert_eq!(id_birth("11010519491231002X"), Some(19491231));
        assert_eq!(id_gender("11010519491231002X"), Some("F"));
    }

    #[test]
    fn upgrade_from_15_digits() {
        assert_eq!(
            upgrade_id15("110105491231002").as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(upgrade_id15("11010549123100X"), None);
    }

    #[test]
    fn published_uscc_example() {
        assert!(uscc_is_valid("91350100M000100Y43"));
        assert!(!uscc_is_valid("91350100M000100Y44"));
        assert_eq!(uscc_org_code("91350100M000100Y43"), Some("M000100Y4"));
        assert!(org_code_is_valid("M000100Y4"));
        assert!(!org_code_is_valid("M000100Y5"));
    }
}
