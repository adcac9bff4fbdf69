//! Domain values that can only hold valid content. They are built once, at the wire edge; the rest of the
//! pipeline relies on them without checking again.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Why a raw value could not become a domain value. The wire layer turns this into a receipt error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("CPR-nummeret skal være 10 cifre")]
    CprFormat,
    #[error("CPR-nummerets første seks cifre er ikke en gyldig dato (DDMMÅÅ)")]
    CprDate,
    #[error("CVR-nummeret skal være 8 cifre og ikke begynde med 0")]
    CvrFormat,
    #[error("CVR-nummeret består ikke modulus 11-kontrollen")]
    CvrModulus,
    #[error("beløbet skal være større end 0 med højst 13 heltalscifre og 2 decimaler")]
    Amount,
    #[error("værdien '{0}' har ikke det krævede format {1}")]
    Pattern(String, &'static str),
}

/// Danish personal identification number. The first six digits are a real date, with the century read from
/// the seventh digit; since 2007 numbers need not pass modulus 11, so that is not checked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cpr(String);

impl Cpr {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() != 10 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::CprFormat);
        }
        Self::birth_date(raw).ok_or(ValueError::CprDate)?;
        Ok(Cpr(raw.to_string()))
    }

    /// The century rule of the CPR office: the seventh digit and the two-digit year decide the century.
    fn birth_date(raw: &str) -> Option<NaiveDate> {
        let num = |r: std::ops::Range<usize>| raw[r].parse::<u32>().ok();
        let (day, month, yy, seventh) = (num(0..2)?, num(2..4)?, num(4..6)?, num(6..7)?);
        let century = match seventh {
            0..=3 => 1900,
            4 | 9 => {
                if yy <= 36 {
                    2000
                } else {
                    1900
                }
            }
            _ => {
                if yy <= 57 {
                    2000
                } else {
                    1800
                }
            }
        };
        NaiveDate::from_ymd_opt((century + yy) as i32, month, day)
    }

    pub fn date_of_birth(&self) -> NaiveDate {
        Self::birth_date(&self.0).expect("checked when built")
    }

    /// The full number, for the ERP's import tables only; never for logs or receipts.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What receipts, mails and logs may show: the first six digits and "-XXXX".
    pub fn masked(&self) -> String {
        mask_cpr(&self.0)
    }
}

/// Masks anything that may be a CPR number the same way, also before it has been parsed.
pub fn mask_cpr(raw: &str) -> String {
    let head: String = raw.chars().take(6).collect();
    format!("{head}-XXXX")
}

/// Masks whatever in a free text looks like a CPR number (ddmmyy and four digits, with or without a hyphen, not
/// part of a longer number): texts a sender's value gets into, such as the schema validator's messages, which
/// quote the value they refuse.
pub fn mask_cpr_in_text(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let digits = |from: usize, n: usize| bytes.len() >= from + n && bytes[from..from + n].iter().all(u8::is_ascii_digit);
    let number = |at: usize| u32::from(bytes[at] - b'0') * 10 + u32::from(bytes[at + 1] - b'0');
    let mut out = String::new();
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        let length = if !starts || !digits(i, 6) {
            0
        } else if digits(i + 6, 4) {
            10
        } else if bytes.get(i + 6) == Some(&b'-') && digits(i + 7, 4) {
            11
        } else {
            0
        };
        let ends = length > 0 && !bytes.get(i + length).is_some_and(u8::is_ascii_digit);
        if ends && (1..=31).contains(&number(i)) && (1..=12).contains(&number(i + 2)) {
            out.push_str(&text[copied..i]);
            out.push_str(&mask_cpr(&text[i..i + 6]));
            i += length;
            copied = i;
        } else {
            i += 1;
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

impl fmt::Debug for Cpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cpr({})", self.masked())
    }
}

impl fmt::Display for Cpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Danish company (or authority) number: 8 digits passing modulus 11 with weights 2,7,6,5,4,3,2,1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cvr(String);

impl Cvr {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() != 8 || !raw.bytes().all(|b| b.is_ascii_digit()) || raw.starts_with('0') {
            return Err(ValueError::CvrFormat);
        }
        const WEIGHTS: [u32; 8] = [2, 7, 6, 5, 4, 3, 2, 1];
        let sum: u32 = raw.bytes().zip(WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
        if !sum.is_multiple_of(11) {
            return Err(ValueError::CvrModulus);
        }
        Ok(Cvr(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cvr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cvr::parse(s)
    }
}

/// An amount: exact decimal, greater than zero, at most 13 integer and 2 fraction digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Beloeb(Decimal);

impl Beloeb {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let value = Decimal::from_str_exact(raw.trim()).map_err(|_| ValueError::Amount)?;
        let limit = Decimal::from(10_000_000_000_000i64);
        if value <= Decimal::ZERO || value.scale() > 2 || value >= limit {
            return Err(ValueError::Amount);
        }
        Ok(Beloeb(value))
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DebetKredit {
    Debet,
    Kredit,
}

impl DebetKredit {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw {
            "D" => Ok(DebetKredit::Debet),
            "K" => Ok(DebetKredit::Kredit),
            other => Err(ValueError::Pattern(other.to_string(), "D eller K")),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            DebetKredit::Debet => "D",
            DebetKredit::Kredit => "K",
        }
    }
}

/// Checks a string against a shape of digit placeholders: 'd' is a digit, anything else is itself.
fn matches_shape(raw: &str, shape: &str) -> bool {
    raw.len() == shape.len() && raw.bytes().zip(shape.bytes()).all(|(c, s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
}

macro_rules! shaped_value {
    ($(#[$doc:meta])* $name:ident, $($shape:literal)|+) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValueError> {
                if [$($shape),+].iter().any(|shape| matches_shape(raw, shape)) {
                    Ok($name(raw.to_string()))
                } else {
                    Err(ValueError::Pattern(raw.to_string(), concat!($($shape, " "),+)))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

shaped_value!(
    /// Funktion of the municipal chart of accounts, written h.hf.ff (e.g. 5.57.72).
    Funktion, "d.dd.dd"
);
shaped_value!(
    /// Art, written d.d or d.dd (e.g. 5.2).
    Art, "d.d" | "d.dd"
);
shaped_value!(
    /// Dranst: one digit, the kind of transaction.
    Dranst, "d"
);
shaped_value!(
    /// Gruppering: three digits.
    Gruppering, "ddd"
);
shaped_value!(
    /// Ejerforhold: one digit.
    Ejerforhold, "d"
);

/// ISO 4217 currency code: three capital letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Valuta(String);

impl Valuta {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Valuta(raw.to_string()))
        } else {
            Err(ValueError::Pattern(raw.to_string(), "ISO 4217, tre store bogstaver"))
        }
    }

    pub fn dkk() -> Self {
        Valuta("DKK".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Valuta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_looks_like_a_cpr_number_in_a_text_is_masked_and_nothing_else() {
        let text = "Element 'CPR': [facet 'pattern'] The value '010190-1234' is not accepted; also 0101901234, \
                    not 12345678901, not 3213901234 (no such day), PosteringId 9, beløb 1250.50, CVR 29189846.";
        let masked = mask_cpr_in_text(text);
        assert_eq!(
            masked,
            "Element 'CPR': [facet 'pattern'] The value '010190-XXXX' is not accepted; also 010190-XXXX, \
             not 12345678901, not 3213901234 (no such day), PosteringId 9, beløb 1250.50, CVR 29189846."
        );
        assert!(matches!(mask_cpr_in_text("ingen tal her, æøå"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(mask_cpr_in_text("0101901234"), "010190-XXXX");
    }

    #[test]
    fn cpr_century_rule() {
        // seventh digit 4 with year 36 is 2036, with 37 it is 1937
        assert_eq!(Cpr::parse("0101364000").unwrap().date_of_birth().to_string(), "2036-01-01");
        assert_eq!(Cpr::parse("0101374000").unwrap().date_of_birth().to_string(), "1937-01-01");
        // seventh digit 5-8: year 57 is 2057, year 58 is 1858
        assert_eq!(Cpr::parse("0101575000").unwrap().date_of_birth().to_string(), "2057-01-01");
        assert_eq!(Cpr::parse("0101585000").unwrap().date_of_birth().to_string(), "1858-01-01");
        // 29 February exists in 2000 (digit 4, year 00) but not in 1900 (digit 0)
        assert!(Cpr::parse("2902004000").is_ok());
        assert_eq!(Cpr::parse("2902000000"), Err(ValueError::CprDate));
        assert_eq!(Cpr::parse("3102901234"), Err(ValueError::CprDate));
        assert_eq!(Cpr::parse("12345"), Err(ValueError::CprFormat));
    }

    #[test]
    fn cpr_never_shows_in_full() {
        let cpr = Cpr::parse("0101901234").unwrap();
        assert_eq!(format!("{cpr} {cpr:?}"), "010190-XXXX Cpr(010190-XXXX)");
    }

    #[test]
    fn cvr_modulus_11() {
        assert!(Cvr::parse("29189846").is_ok());
        assert_eq!(Cvr::parse("29189847"), Err(ValueError::CvrModulus));
        assert_eq!(Cvr::parse("2918984"), Err(ValueError::CvrFormat));
        // 00000000 has a weighted sum of 0, a multiple of 11, but no CVR number starts with 0
        assert_eq!(Cvr::parse("00000000"), Err(ValueError::CvrFormat));
    }

    #[test]
    fn amounts_are_exact_and_bounded() {
        assert_eq!(Beloeb::parse("0.10").unwrap().value().to_string(), "0.10");
        assert!(Beloeb::parse("9999999999999.99").is_ok());
        assert!(Beloeb::parse("10000000000000").is_err());
        assert!(Beloeb::parse("0").is_err());
        assert!(Beloeb::parse("1.001").is_err());
        assert!(Beloeb::parse("-5").is_err());
    }

    #[test]
    fn shapes() {
        assert!(Funktion::parse("5.57.72").is_ok());
        assert!(Funktion::parse("5.5.72").is_err());
        assert!(Art::parse("5.2").is_ok() && Art::parse("5.25").is_ok() && Art::parse("52").is_err());
    }
}
