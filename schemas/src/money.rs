//! Money: the contract's one fixed-point amount, millionths in an `i64`, within
//! `decimal(18, 6)` (below 10^12 in magnitude). Every conversion into it, and every sum of
//! it, is exact or an error: nothing rounds, saturates or panics.
//!
//! Events carry amounts as the sender wrote them (`Decimal`, so that `59.00` stays `59.00`
//! in the event); the ledger, the Avro encoding and the ClickHouse rows carry `Money`.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Decimal places of every amount: `decimal(18, 6)`.
pub const SCALE: u32 = 6;
/// Total digits of every amount: `decimal(18, 6)`.
pub const PRECISION: u32 = 18;
/// Largest magnitude in millionths (10^18 - 1).
const MAX_MICROS: i64 = 999_999_999_999_999_999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0} has more than {SCALE} decimal places")]
    TooPrecise(Decimal),
    #[error(
        "{0} is outside decimal({PRECISION},{SCALE}) (at most 999999999999.999999 in magnitude)"
    )]
    OutOfRange(String),
    #[error("{0:?} is not a decimal amount")]
    NotANumber(String),
}

/// An amount in millionths.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// The amount of `micros` millionths.
    pub fn from_micros(micros: i64) -> Result<Self, MoneyError> {
        if micros.unsigned_abs() > MAX_MICROS as u64 {
            return Err(MoneyError::OutOfRange(format!("{micros} millionths")));
        }
        Ok(Self(micros))
    }

    /// The amount of a decimal, exactly: more than six decimals, or too large, is an error.
    pub fn from_decimal(amount: Decimal) -> Result<Self, MoneyError> {
        let mut scaled = amount;
        scaled.rescale(SCALE);
        if scaled != amount {
            return Err(MoneyError::TooPrecise(amount));
        }
        i64::try_from(scaled.mantissa())
            .map_err(|_| MoneyError::OutOfRange(amount.to_string()))
            .and_then(Self::from_micros)
            .map_err(|_| MoneyError::OutOfRange(amount.to_string()))
    }

    /// The amount of an optional decimal; none is zero.
    pub fn of(amount: Option<Decimal>) -> Result<Self, MoneyError> {
        amount.map_or(Ok(Self::ZERO), Self::from_decimal)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// The amount as a decimal, without trailing zeros.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, SCALE).normalize()
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        let sum = self.0.checked_add(other.0);
        sum.ok_or_else(|| MoneyError::OutOfRange(format!("{self} + {other}")))
            .and_then(Self::from_micros)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        let difference = self.0.checked_sub(other.0);
        difference
            .ok_or_else(|| MoneyError::OutOfRange(format!("{self} - {other}")))
            .and_then(Self::from_micros)
    }

    pub fn max(self, other: Money) -> Money {
        Ord::max(self, other)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// Always in range: the range is symmetric.
impl std::ops::Neg for Money {
    type Output = Money;

    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl TryFrom<Decimal> for Money {
    type Error = MoneyError;

    fn try_from(amount: Decimal) -> Result<Self, MoneyError> {
        Self::from_decimal(amount)
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        m.to_decimal()
    }
}

/// The one reading of an amount's text, for every door (first-party JSON, network
/// postbacks): a plain decimal (`49.99`, `-12`, `0.000001`; no exponent, no thousands
/// separator), exactly as written. Whether it fits is `Money::from_decimal`'s to say, which
/// validation asks.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    Decimal::from_str_exact(text.trim()).map_err(|_| MoneyError::NotANumber(text.to_owned()))
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(text: &str) -> Result<Self, MoneyError> {
        Self::from_decimal(parse_decimal(text)?)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_decimal().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn decimals_convert_exactly_or_not_at_all() {
        assert_eq!(
            Money::from_decimal(d("49.99")).unwrap().micros(),
            49_990_000
        );
        assert_eq!(Money::from_decimal(d("-0.000001")).unwrap().micros(), -1);
        assert_eq!(
            Money::from_decimal(d("999999999999.999999"))
                .unwrap()
                .micros(),
            MAX_MICROS
        );
        assert!(matches!(
            Money::from_decimal(d("0.0000001")),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Money::from_decimal(d("1000000000000")),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(matches!(
            Money::from_decimal(d("-1000000000000")),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(Money::from_decimal(d("79228162514264337593543950335")).is_err());
        // Trailing zeros are not precision.
        assert_eq!(
            Money::from_decimal(d("1.500000000")).unwrap(),
            "1.5".parse().unwrap()
        );
    }

    #[test]
    fn sums_stay_in_range_or_fail() {
        let max = Money::from_micros(MAX_MICROS).unwrap();
        let cent: Money = "0.01".parse().unwrap();
        assert!(max.checked_add(cent).is_err());
        assert!((-max).checked_sub(cent).is_err());
        assert_eq!(max.checked_sub(cent).unwrap().micros(), MAX_MICROS - 10_000);
        assert!(Money::from_micros(i64::MIN).is_err());
        assert_eq!(
            "47.99"
                .parse::<Money>()
                .unwrap()
                .checked_add("-47.99".parse().unwrap())
                .unwrap(),
            Money::ZERO
        );
    }

    #[test]
    fn text_round_trips() {
        for text in ["0", "49.99", "-12.5", "0.000001", "999999999999.999999"] {
            assert_eq!(text.parse::<Money>().unwrap().to_string(), text);
        }
        assert!(matches!(
            "1e3".parse::<Money>(),
            Err(MoneyError::NotANumber(_))
        ));
        assert!("12,50".parse::<Money>().is_err());
        assert_eq!(serde_json::to_string(&Money(1_500_000)).unwrap(), "1500000");
    }
}
