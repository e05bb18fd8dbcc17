//! A network's payout report, imported from its CSV export.
//!
//! Every shape is a [`Mapping`]: which column holds what, and how the network names its
//! transaction types. ClickBank and Digistore24 are built in; any other network is a
//! `[report.<name>]` table in the recon configuration (`config/recon.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

/// What a report line is, in the ledger's terms. Cancellations carry no money and are left
/// out of payout reports, so they are not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LineKind {
    Sale,
    Refund,
    Chargeback,
}

impl LineKind {
    pub fn from_event_name(name: &str) -> Option<Self> {
        match name {
            "SALE" => Some(Self::Sale),
            "REFUND" => Some(Self::Refund),
            "CHARGEBACK" => Some(Self::Chargeback),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sale => "SALE",
            Self::Refund => "REFUND",
            Self::Chargeback => "CHARGEBACK",
        }
    }

    /// Refunds and chargebacks both reverse a sale; a report and the ledger that disagree
    /// on which one it was have a status difference, not two missing lines.
    pub fn is_reversal(self) -> bool {
        !matches!(self, Self::Sale)
    }
}

/// One transaction as the network reports it, or as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub order_id: String,
    /// The rebill or payment sequence, where the network numbers them.
    pub sequence: Option<i32>,
    pub kind: LineKind,
    /// A magnitude: refunds and chargebacks are positive too.
    pub amount: Decimal,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    /// The ledger's event_id (ledger lines only).
    pub event_id: Option<String>,
    /// When the ledger learned of it (ledger lines only).
    pub received_at: Option<DateTime<Utc>>,
}

/// Which ledger amount the report's amount is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// The network's payout / commission (`payout` in the contract).
    #[default]
    Payout,
    /// The order amount (`revenue` in the contract).
    Revenue,
}

/// How to read one network's CSV export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The ledger's `network` the report is compared with.
    pub network: String,
    /// Field delimiter, one character.
    #[serde(default = "comma")]
    pub delimiter: char,
    /// Amounts are written with a decimal comma (`29,50`).
    #[serde(default)]
    pub decimal_comma: bool,
    pub date_column: String,
    /// chrono format of a date without a zone, read as UTC; RFC 3339 is always accepted.
    #[serde(default = "default_date_format")]
    pub date_format: String,
    pub order_column: String,
    /// A column with the payment sequence (rebills), if the export has one.
    #[serde(default)]
    pub sequence_column: Option<String>,
    /// ClickBank-style receipts: `ABCD1234-B002` is rebill 2 of order `ABCD1234`.
    #[serde(default)]
    pub receipt_rebills: bool,
    pub type_column: String,
    pub amount_column: String,
    #[serde(default)]
    pub currency_column: Option<String>,
    #[serde(default = "usd")]
    pub default_currency: String,
    #[serde(default)]
    pub compare: Compare,
    /// The network's type names (case-insensitive) → SALE, REFUND or CHARGEBACK. Lines of
    /// other types (cancellations, fees) are skipped.
    pub types: BTreeMap<String, String>,
}

fn comma() -> char {
    ','
}
fn usd() -> String {
    "USD".into()
}
fn default_date_format() -> String {
    "%Y-%m-%d %H:%M:%S".into()
}

fn types(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Mapping {
    /// ClickBank's transaction export (Reporting → Transactions → CSV).
    pub fn clickbank() -> Self {
        Self {
            network: "clickbank".into(),
            delimiter: ',',
            decimal_comma: false,
            date_column: "Transaction Date".into(),
            date_format: default_date_format(),
            order_column: "Receipt".into(),
            sequence_column: None,
            receipt_rebills: true,
            type_column: "Transaction Type".into(),
            amount_column: "Account Amount".into(),
            currency_column: Some("Currency".into()),
            default_currency: usd(),
            compare: Compare::Payout,
            types: types(&[
                ("SALE", "SALE"),
                ("BILL", "SALE"),
                ("RFND", "REFUND"),
                ("CGBK", "CHARGEBACK"),
            ]),
        }
    }

    /// Digistore24's transaction export (semicolons, decimal commas).
    pub fn digistore24() -> Self {
        Self {
            network: "digistore24".into(),
            delimiter: ';',
            decimal_comma: true,
            date_column: "Date".into(),
            date_format: default_date_format(),
            order_column: "Order ID".into(),
            sequence_column: Some("Pay sequence no".into()),
            receipt_rebills: false,
            type_column: "Transaction type".into(),
            amount_column: "Affiliate commission".into(),
            currency_column: Some("Currency".into()),
            default_currency: "EUR".into(),
            compare: Compare::Payout,
            types: types(&[
                ("payment", "SALE"),
                ("refund", "REFUND"),
                ("chargeback", "CHARGEBACK"),
            ]),
        }
    }

    /// `clickbank`, `digistore24`, or a `[report.<name>]` table of `config`.
    pub fn named(name: &str, config: Option<&Path>) -> anyhow::Result<Self> {
        match name {
            "clickbank" => return Ok(Self::clickbank()),
            "digistore24" => return Ok(Self::digistore24()),
            _ => {}
        }
        let Some(path) = config else {
            bail!("unknown report shape {name:?}: use clickbank, digistore24, or a [report.{name}] table in --config")
        };
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            report: BTreeMap<String, Mapping>,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the recon configuration {}", path.display()))?;
        let mut file: File = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid recon configuration", path.display()))?;
        let known: Vec<String> = ["clickbank", "digistore24"]
            .into_iter()
            .map(String::from)
            .chain(file.report.keys().cloned())
            .collect();
        file.report.remove(name).with_context(|| {
            format!(
                "unknown report shape {name:?}: {} has no [report.{name}] table (known shapes: {})",
                path.display(),
                known.join(", ")
            )
        })
    }

    /// Digistore24 numbers the first payment 1, where other networks leave it unnumbered.
    pub fn sequence_key(network: &str, sequence: Option<i32>) -> Option<i32> {
        if network == "digistore24" {
            sequence.filter(|&s| s > 1)
        } else {
            sequence
        }
    }
}

/// A report line that could not be read: the line number (1 = the header) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
    /// Lines of types the comparison does not cover (cancellations, fees...), by type.
    pub skipped: BTreeMap<String, u64>,
    pub unreadable: Vec<Unreadable>,
}

fn parse_amount(text: &str, decimal_comma: bool) -> Option<Decimal> {
    let mut t: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '$' && *c != '€')
        .collect();
    if decimal_comma {
        t = t.replace('.', "").replace(',', ".");
    } else {
        t = t.replace(',', "");
    }
    t.parse::<Decimal>().ok().map(|d| d.abs())
}

fn parse_date(text: &str, format: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(t, format)
                .ok()
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(t, format)
                .ok()
                .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

/// Reads a CSV export; lines that cannot be read are reported, never dropped silently.
pub fn read(csv_text: &[u8], mapping: &Mapping) -> anyhow::Result<Report> {
    let delimiter = u8::try_from(mapping.delimiter).context("the delimiter must be ASCII")?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text);
    let headers = reader
        .headers()
        .context("the report has no header line")?
        .clone();
    let column = |name: &str| -> anyhow::Result<usize> {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
            .with_context(|| {
                format!(
                    "the report has no column {name:?} (it has: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
    };
    let date = column(&mapping.date_column)?;
    let order = column(&mapping.order_column)?;
    let kind = column(&mapping.type_column)?;
    let amount = column(&mapping.amount_column)?;
    let currency = mapping.currency_column.as_deref().map(column).transpose()?;
    let sequence = mapping.sequence_column.as_deref().map(column).transpose()?;
    let types: BTreeMap<String, LineKind> = mapping
        .types
        .iter()
        .map(|(k, v)| {
            LineKind::from_event_name(v)
                .map(|kind| (k.to_ascii_lowercase(), kind))
                .with_context(|| {
                    format!("type {k:?} maps to {v:?}: use SALE, REFUND or CHARGEBACK")
                })
        })
        .collect::<anyhow::Result<_>>()?;

    let mut report = Report::default();
    for (i, record) in reader.records().enumerate() {
        let line_no = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.unreadable.push(Unreadable {
                    line: line_no,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let type_text = get(kind);
        let Some(&line_kind) = types.get(&type_text.to_ascii_lowercase()) else {
            *report.skipped.entry(type_text.to_owned()).or_default() += 1;
            continue;
        };
        let bad = |reason: String| Unreadable {
            line: line_no,
            reason,
        };
        let Some(occurred_at) = parse_date(get(date), &mapping.date_format) else {
            report.unreadable.push(bad(format!(
                "{}: {:?} is not a date",
                mapping.date_column,
                get(date)
            )));
            continue;
        };
        let Some(value) = parse_amount(get(amount), mapping.decimal_comma) else {
            report.unreadable.push(bad(format!(
                "{}: {:?} is not an amount",
                mapping.amount_column,
                get(amount)
            )));
            continue;
        };
        let raw_order = get(order);
        if raw_order.is_empty() {
            report
                .unreadable
                .push(bad(format!("{} is empty", mapping.order_column)));
            continue;
        }
        let (order_id, mut seq) = if mapping.receipt_rebills {
            let (base, seq) = schemas::key::split_receipt(raw_order);
            (base.to_owned(), seq)
        } else {
            (raw_order.to_owned(), None)
        };
        if let Some(c) = sequence {
            let text = get(c);
            if !text.is_empty() {
                match text.parse::<i32>() {
                    Ok(n) => seq = Some(n),
                    Err(_) => {
                        report
                            .unreadable
                            .push(bad(format!("{text:?} is not a payment sequence")));
                        continue;
                    }
                }
            }
        }
        report.lines.push(Line {
            order_id,
            sequence: Mapping::sequence_key(&mapping.network, seq),
            kind: line_kind,
            amount: value,
            currency: currency
                .map(get)
                .filter(|c| !c.is_empty())
                .unwrap_or(&mapping.default_currency)
                .to_ascii_uppercase(),
            occurred_at,
            event_id: None,
            received_at: None,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clickbank_export_reads_rebills_and_skips_other_types() {
        let csv = "Transaction Date,Receipt,Transaction Type,Item,Account Amount,Currency\n\
                   2026-11-20T09:30:00-08:00,ABCD1234,SALE,keto-vsl,30.50,USD\n\
                   2026-11-21 10:00:00,ABCD1234-B002,BILL,keto-vsl,\"1,030.50\",USD\n\
                   2026-11-22 10:00:00,ABCD1234,RFND,keto-vsl,-30.50,USD\n\
                   2026-11-22 10:00:00,ABCD1234,CANCEL-REBILL,keto-vsl,0,USD\n\
                   yesterday,X,SALE,keto-vsl,1,USD\n";
        let r = read(csv.as_bytes(), &Mapping::clickbank()).unwrap();
        assert_eq!(r.lines.len(), 3);
        assert_eq!(
            r.lines[0].occurred_at.to_rfc3339(),
            "2026-11-20T17:30:00+00:00"
        );
        assert_eq!(
            (r.lines[1].order_id.as_str(), r.lines[1].sequence),
            ("ABCD1234", Some(2))
        );
        assert_eq!(r.lines[1].amount, "1030.50".parse().unwrap());
        assert_eq!(
            (r.lines[2].kind, r.lines[2].amount),
            (LineKind::Refund, "30.50".parse().unwrap())
        );
        assert_eq!(r.skipped["CANCEL-REBILL"], 1);
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].line, 6);
    }

    #[test]
    fn a_digistore24_export_reads_decimal_commas_and_first_payments() {
        let csv = "Date;Order ID;Transaction type;Pay sequence no;Affiliate commission;Currency\n\
                   2026-11-20 08:00:00;DS1;payment;1;1.029,50;EUR\n\
                   2026-11-20 08:00:00;DS1;payment;2;29,50;EUR\n";
        let r = read(csv.as_bytes(), &Mapping::digistore24()).unwrap();
        assert_eq!(r.lines[0].amount, "1029.50".parse().unwrap());
        assert_eq!((r.lines[0].sequence, r.lines[1].sequence), (None, Some(2)));
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = read(b"Date,Receipt\n", &Mapping::clickbank()).unwrap_err();
        assert!(err.to_string().contains("\"Transaction Date\""), "{err}");
    }

    #[test]
    fn the_shipped_recon_configuration_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/recon.toml"));
        let m = Mapping::named("s2s-partner", Some(path)).unwrap();
        let r = read(
            b"Date,Transaction ID,Status,Payout,Currency\n2026-11-20 10:00:00,TX1,Approved,12.50,USD\n",
            &m,
        )
        .unwrap();
        assert_eq!(
            (r.lines[0].kind, r.lines[0].order_id.as_str()),
            (LineKind::Sale, "TX1")
        );
    }

    #[test]
    fn a_generic_mapping_comes_from_the_configuration() {
        let dir = std::env::temp_dir().join(format!("recon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("recon.toml");
        std::fs::write(
            &path,
            "[report.maxbounty]\nnetwork = \"s2s\"\ndate_column = \"day\"\ndate_format = \"%d/%m/%Y\"\norder_column = \"txid\"\ntype_column = \"kind\"\namount_column = \"commission\"\n[report.maxbounty.types]\nconversion = \"SALE\"\nreversal = \"REFUND\"\n",
        )
        .unwrap();
        let m = Mapping::named("maxbounty", Some(&path)).unwrap();
        let r = read(
            b"day,txid,kind,commission\n20/11/2026,T1,Conversion,12.00\n",
            &m,
        )
        .unwrap();
        assert_eq!(
            r.lines[0].occurred_at.date_naive().to_string(),
            "2026-11-20"
        );
        assert_eq!(r.lines[0].kind, LineKind::Sale);
        let err = Mapping::named("nosuch", Some(&path))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("known shapes: clickbank, digistore24, maxbounty"),
            "{err}"
        );
        assert!(Mapping::named("nosuch", None).is_err());
    }
}
