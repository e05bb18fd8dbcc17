//! `trackctl fx import`: exchange rates into ClickHouse's `fx_rates`, from a CSV file or from
//! the ECB's euro reference-rate XML (the daily, 90-day or historical file), read from disk.
//! The file is checked whole before anything is written, and written in one insert: a file
//! with one bad line imports nothing, and says which line.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use clickhouse::serde::chrono::datetime64::millis;
use clickhouse::Row;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::warehouse::Warehouse;

/// `fx_rates.rate` is `Decimal(18, 10)`.
pub const RATE_SCALE: u32 = 10;
const RATE_MAX_INTEGER_DIGITS: u32 = 18 - RATE_SCALE;

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The file of rates: a CSV with the header `day,base,quote,rate` (and optionally
    /// `source`), or the ECB's euro reference rates (eurofxref-daily.xml, -hist-90d.xml,
    /// -hist.xml).
    #[arg(long)]
    pub file: PathBuf,
    /// The file's format; by default `ecb` for a `.xml` file, `csv` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The `source` recorded with each rate, where the CSV has no `source` column (default:
    /// `ecb` for the ECB's XML, the file's name for a CSV).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Ecb,
}

/// One rate: one `base` buys `rate` units of `quote` on `day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub day: NaiveDate,
    pub base: String,
    pub quote: String,
    pub rate: Decimal,
    pub source: String,
}

/// Why a file of rates was refused: at the CSV line or the XML element's line, or (line 0)
/// the file as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}{reason}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct FxError {
    pub line: u64,
    pub reason: String,
}

fn refuse(line: u64, reason: impl Into<String>) -> FxError {
    FxError {
        line,
        reason: reason.into(),
    }
}

fn day(text: &str, line: u64) -> Result<NaiveDate, FxError> {
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| refuse(line, format!("day {text:?} is not a date (YYYY-MM-DD)")))?;
    // ClickHouse's Date.
    let (first, last) = (
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2149, 6, 6).unwrap(),
    );
    if day < first || day > last {
        return Err(refuse(
            line,
            format!("day {day} is outside {first}..{last}"),
        ));
    }
    Ok(day)
}

fn currency(field: &str, text: &str, line: u64) -> Result<String, FxError> {
    let code = text.trim();
    schemas::validate::check_currency(code)
        .map_err(|e| refuse(line, format!("{field}: {}", e.reason)))?;
    Ok(code.to_owned())
}

/// A rate the table holds exactly: positive, at most 10 decimal places and 8 integer digits.
fn rate(text: &str, line: u64) -> Result<Decimal, FxError> {
    let text = text.trim();
    let rate: Decimal = text
        .parse()
        .map_err(|_| refuse(line, format!("rate {text:?} is not a decimal number")))?;
    let rate = rate.normalize();
    if !rate.is_sign_positive() || rate.is_zero() {
        return Err(refuse(line, format!("rate {text} is not positive")));
    }
    if rate.scale() > RATE_SCALE {
        return Err(refuse(
            line,
            format!(
                "rate {text} has {} decimal places; fx_rates keeps {RATE_SCALE}, and rounding it here would change it silently: round it in the file",
                rate.scale()
            ),
        ));
    }
    if rate >= Decimal::from(10u64.pow(RATE_MAX_INTEGER_DIGITS)) {
        return Err(refuse(
            line,
            format!("rate {text} has more than {RATE_MAX_INTEGER_DIGITS} integer digits"),
        ));
    }
    Ok(rate)
}

fn rate_row(
    line: u64,
    day_text: &str,
    base: &str,
    quote: &str,
    rate_text: &str,
    source: String,
) -> Result<Rate, FxError> {
    let rate = Rate {
        day: day(day_text, line)?,
        base: currency("base", base, line)?,
        quote: currency("quote", quote, line)?,
        rate: rate(rate_text, line)?,
        source,
    };
    if rate.base == rate.quote {
        return Err(refuse(
            line,
            format!("base and quote are both {}", rate.base),
        ));
    }
    Ok(rate)
}

#[derive(Debug, Deserialize)]
struct CsvRecord {
    day: String,
    base: String,
    quote: String,
    rate: String,
    #[serde(default)]
    source: Option<String>,
}

/// Rates from a CSV file: a header with `day`, `base`, `quote` and `rate`, and optionally
/// `source` (else `default_source`).
pub fn parse_csv(text: &str, default_source: &str) -> Result<Vec<Rate>, FxError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| refuse(1, format!("unreadable header: {e}")))?
        .clone();
    for needed in ["day", "base", "quote", "rate"] {
        if !headers.iter().any(|h| h == needed) {
            return Err(refuse(
                1,
                format!("the header has no `{needed}` column (it needs day,base,quote,rate and may have source)"),
            ));
        }
    }
    let mut rates = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            refuse(line, e.to_string())
        })?;
        let line = row.position().map_or(0, |p| p.line());
        let record: CsvRecord = row
            .deserialize(Some(&headers))
            .map_err(|e| refuse(line, e.to_string()))?;
        let source = record
            .source
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_source.to_owned());
        rates.push(rate_row(
            line,
            &record.day,
            &record.base,
            &record.quote,
            &record.rate,
            source,
        )?);
    }
    Ok(rates)
}

/// Rates from the ECB's euro reference-rate XML: `<Cube time="YYYY-MM-DD">` elements whose
/// `<Cube currency="USD" rate="1.0523"/>` children each give a rate with base EUR.
pub fn parse_ecb(text: &str, source: &str) -> Result<Vec<Rate>, FxError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| refuse(u64::from(e.pos().row), format!("not well-formed XML: {e}")))?;
    let mut rates = Vec::new();
    let mut days = 0;
    for day_cube in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Cube" && n.has_attribute("time"))
    {
        days += 1;
        let line = u64::from(doc.text_pos_at(day_cube.range().start).row);
        let time = day_cube.attribute("time").unwrap_or_default();
        for cube in day_cube
            .children()
            .filter(|n| n.tag_name().name() == "Cube")
        {
            let line = u64::from(doc.text_pos_at(cube.range().start).row);
            let (Some(code), Some(value)) = (cube.attribute("currency"), cube.attribute("rate"))
            else {
                return Err(refuse(
                    line,
                    "a Cube without its currency or rate attribute",
                ));
            };
            rates.push(rate_row(line, time, "EUR", code, value, source.to_owned())?);
        }
        if rates.is_empty() {
            return Err(refuse(line, format!("the day {time} has no rates")));
        }
    }
    if days == 0 {
        return Err(refuse(
            1,
            "no <Cube time=\"…\"> element: not the ECB's euro reference-rate format",
        ));
    }
    Ok(rates)
}

/// Refuses a file that gives one day and pair two different rates (the same rate twice is
/// kept once).
pub fn dedupe(rates: Vec<Rate>) -> Result<Vec<Rate>, FxError> {
    let mut by_key: BTreeMap<(NaiveDate, String, String), Rate> = BTreeMap::new();
    for rate in rates {
        let key = (rate.day, rate.base.clone(), rate.quote.clone());
        match by_key.get(&key) {
            Some(kept) if kept.rate != rate.rate => {
                return Err(refuse(
                    0,
                    format!(
                        "{} {}/{} is given twice, as {} and {}",
                        rate.day, rate.base, rate.quote, kept.rate, rate.rate
                    ),
                ))
            }
            Some(_) => {}
            None => {
                by_key.insert(key, rate);
            }
        }
    }
    Ok(by_key.into_values().collect())
}

/// Reads and checks a file of rates.
pub fn read(args: &ImportArgs) -> anyhow::Result<Vec<Rate>> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let format = args.format.unwrap_or_else(|| format_of(&args.file));
    let parsed = match format {
        Format::Ecb => parse_ecb(&text, args.source.as_deref().unwrap_or("ecb")),
        Format::Csv => {
            let name = args
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            parse_csv(&text, args.source.as_deref().unwrap_or(&name))
        }
    };
    let rates = parsed
        .and_then(dedupe)
        .with_context(|| format!("{} refused, nothing imported", args.file.display()))?;
    anyhow::ensure!(
        !rates.is_empty(),
        "{} holds no rates, nothing imported",
        args.file.display()
    );
    Ok(rates)
}

fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("xml") => Format::Ecb,
        _ => Format::Csv,
    }
}

#[derive(Debug, Row, Serialize)]
struct FxRow<'a> {
    /// Days since 1970-01-01 (ClickHouse's `Date`).
    day: u16,
    base: &'a str,
    quote: &'a str,
    /// The rate scaled by 10^10 (`Decimal(18, 10)`).
    rate: i64,
    source: &'a str,
    #[serde(with = "millis")]
    imported_at: DateTime<Utc>,
}

/// What an import wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Imported {
    pub rates: usize,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub days: usize,
    pub pairs: usize,
}

/// Writes checked rates in one insert: one atomic block, so an import is whole or absent.
pub async fn import(warehouse: &Warehouse, rates: &[Rate]) -> anyhow::Result<Imported> {
    let client = warehouse
        .client()?
        .with_setting("async_insert", "0")
        .with_setting("max_insert_block_size", "10000000");
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let now = Utc::now();
    let mut insert = client
        .insert::<FxRow>("fx_rates")
        .await
        .context("fx_rates: has the sink applied its migrations?")?;
    for r in rates {
        let scaled = (r.rate * Decimal::from(10u64.pow(RATE_SCALE)))
            .to_i64()
            .context("a checked rate fits Decimal(18, 10)")?;
        insert
            .write(&FxRow {
                day: u16::try_from((r.day - epoch).num_days()).context("a checked day")?,
                base: &r.base,
                quote: &r.quote,
                rate: scaled,
                source: &r.source,
                imported_at: now,
            })
            .await?;
    }
    insert.end().await.context("writing fx_rates")?;
    let days: BTreeSet<NaiveDate> = rates.iter().map(|r| r.day).collect();
    let pairs: BTreeSet<(&str, &str)> = rates
        .iter()
        .map(|r| (r.base.as_str(), r.quote.as_str()))
        .collect();
    Ok(Imported {
        rates: rates.len(),
        first_day: *days.first().context("no rates")?,
        last_day: *days.last().context("no rates")?,
        days: days.len(),
        pairs: pairs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const ECB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<gesmes:Sender>
		<gesmes:name>European Central Bank</gesmes:name>
	</gesmes:Sender>
	<Cube>
		<Cube time="2026-11-27">
			<Cube currency="USD" rate="1.0523"/>
			<Cube currency="JPY" rate="161.45"/>
		</Cube>
		<Cube time="2026-11-26">
			<Cube currency="USD" rate="1.0498"/>
		</Cube>
	</Cube>
</gesmes:Envelope>"#;

    #[test]
    fn ecb_days_and_rates_have_base_eur() {
        let rates = parse_ecb(ECB, "ecb").unwrap();
        assert_eq!(rates.len(), 3);
        assert_eq!(
            rates[0],
            Rate {
                day: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
                base: "EUR".into(),
                quote: "USD".into(),
                rate: d("1.0523"),
                source: "ecb".into(),
            }
        );
        assert_eq!(rates[1].quote, "JPY");
        assert_eq!(rates[1].rate, d("161.45"));
        assert_eq!(rates[2].day, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
    }

    #[test]
    fn ecb_errors_name_the_line() {
        let bad = ECB.replace("161.45", "-1");
        assert_eq!(
            parse_ecb(&bad, "ecb").unwrap_err(),
            refuse(10, "rate -1 is not positive")
        );
        let err = parse_ecb("<a><b/></a>", "ecb").unwrap_err();
        assert!(err.reason.contains("not the ECB's"), "{err}");
        assert!(parse_ecb("<a>", "ecb").unwrap_err().reason.contains("XML"));
    }

    #[test]
    fn csv_rates_with_and_without_source() {
        let text = "day,base,quote,rate\n2026-11-27,USD,CAD,1.3941\n2026-11-27,EUR,USD,1.0523\n";
        let rates = parse_csv(text, "rates.csv").unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].base, "USD");
        assert_eq!(rates[0].quote, "CAD");
        assert_eq!(rates[0].rate, d("1.3941"));
        assert_eq!(rates[0].source, "rates.csv");
        let text = "day,base,quote,rate,source\n2026-11-27,USD,CAD,1.3941,bank\n";
        assert_eq!(parse_csv(text, "x").unwrap()[0].source, "bank");
    }

    #[test]
    fn csv_errors_name_the_line_and_the_reason() {
        let cases = [
            (
                "2026-11-27,USD,CAD,1.39\n2026-13-01,USD,CAD,1.39\n",
                3,
                "day \"2026-13-01\" is not a date (YYYY-MM-DD)",
            ),
            (
                "2026-11-27,USD,usd,1.39\n",
                2,
                "quote: \"usd\" is not a three-letter upper-case ISO-4217 code",
            ),
            (
                "2026-11-27,XYZ,USD,1.39\n",
                2,
                "base: \"XYZ\" is not an ISO-4217 currency",
            ),
            (
                "2026-11-27,USD,USD,1.39\n",
                2,
                "base and quote are both USD",
            ),
            ("2026-11-27,USD,CAD,0\n", 2, "rate 0 is not positive"),
            (
                "2026-11-27,USD,CAD,abc\n",
                2,
                "rate \"abc\" is not a decimal number",
            ),
            (
                "2026-11-27,USD,CAD,123456789\n",
                2,
                "rate 123456789 has more than 8 integer digits",
            ),
        ];
        for (body, line, reason) in cases {
            let err = parse_csv(&format!("day,base,quote,rate\n{body}"), "f").unwrap_err();
            assert_eq!((err.line, err.reason.as_str()), (line, reason), "{body}");
        }
        let err = parse_csv(
            "day,base,quote,rate\n2026-11-27,USD,CAD,0.12345678901\n",
            "f",
        )
        .unwrap_err();
        assert!(err.reason.contains("has 11 decimal places"), "{err}");
        let err = parse_csv("day,base,rate\n2026-11-27,USD,1\n", "f").unwrap_err();
        assert!(err.reason.contains("no `quote` column"), "{err}");
    }

    #[test]
    fn the_same_pair_and_day_twice_must_agree() {
        let text = "day,base,quote,rate\n2026-11-27,USD,CAD,1.39\n2026-11-27,USD,CAD,1.390\n";
        assert_eq!(dedupe(parse_csv(text, "f").unwrap()).unwrap().len(), 1);
        let text = "day,base,quote,rate\n2026-11-27,USD,CAD,1.39\n2026-11-27,USD,CAD,1.4\n";
        let err = dedupe(parse_csv(text, "f").unwrap()).unwrap_err();
        assert_eq!(
            err.reason,
            "2026-11-27 USD/CAD is given twice, as 1.39 and 1.4"
        );
    }
}
