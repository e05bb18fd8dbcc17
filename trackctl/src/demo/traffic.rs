//! The demo's traffic: what a day of an affiliate team looks like, as HTTP requests to
//! ingest, with the totals the ledger must end up with.
//!
//! Deterministic for a seed: the same seed gives the same offers, amounts, duplicates and
//! reversals, so a test can compare the ledger with [`Expected`] exactly. Only the click IDs
//! (minted by ingest) and the IDs' run prefix differ between runs.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;

use ingest::adapters::{clickbank, digistore24};
use schemas::destinations::Destinations;
use schemas::EventName;

/// The secrets ingest was started with (the same environment variables as ingest reads).
#[derive(Debug, Clone)]
pub struct Secrets {
    pub api_key: String,
    pub clickbank_secret_key: String,
    pub digistore24_passphrase: String,
    pub buygoods_token: String,
    /// `name:token` of one S2S source.
    pub s2s_source: String,
}

impl Secrets {
    fn s2s(&self) -> (&str, &str) {
        self.s2s_source
            .split_once(':')
            .unwrap_or(("tracker-a", &self.s2s_source))
    }
}

/// Offers of `config/offers.toml` and how their conversions reach us.
pub const KETO: &str = "keto-vsl";
pub const COURSE: &str = "crypto-course";
pub const SOLAR: &str = "solar-leads";

/// One HTTP request to ingest and the status it must get.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, e.g. `/v1/postbacks/s2s?token=...`.
    pub path: String,
    pub content_type: Option<&'static str>,
    pub bearer: Option<String>,
    pub body: String,
    pub expect_status: u16,
    /// What it stands for, for the summary: `click`, `clickbank`, `duplicate`, `malformed`...
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// What the ledger must hold once the traffic has settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Unique events by contract name (CLICK, LEAD, SALE, REFUND...).
    pub events: BTreeMap<String, u64>,
    /// Repeats of an event already counted (network retries, a re-sent batch).
    pub duplicates: u64,
    /// Refused requests, each kept in quarantine, by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Sales minus refunds and chargebacks, by offer.
    pub net_revenue: BTreeMap<String, Decimal>,
    /// Postbacks the processor routes, by destination of `config/destinations.toml`.
    pub postbacks: BTreeMap<String, u64>,
}

impl Expected {
    pub fn ledger_entries(&self) -> u64 {
        self.events.values().sum()
    }

    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// One unique event of `offer`, and its postbacks by the processor's own routing (the
    /// demo sends no test events).
    fn count(&mut self, name: &str, offer: &str, routes: &Destinations) {
        *self.events.entry(name.to_owned()).or_default() += 1;
        let event: EventName = name.parse().expect("the demo sends contract event names");
        for destination in routes.routes_for(event, Some(offer), false) {
            *self.postbacks.entry(destination.to_owned()).or_default() += 1;
        }
    }

    fn revenue(&mut self, offer: &str, amount: Decimal) {
        *self.net_revenue.entry(offer.to_owned()).or_default() += amount;
    }
}

/// How much traffic: `scale` 1 is 200 clicks and 45 conversions.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    pub scale: usize,
    pub seed: u64,
}

/// The phases, sent in order; requests within a phase may be sent concurrently.
#[derive(Debug, Default)]
pub struct Plan {
    /// Refunds and lead decisions that the network sends before the original.
    pub early: Vec<Request>,
    /// Leads and sales.
    pub conversions: Vec<Request>,
    /// Lead decisions, refunds, chargebacks and network retries.
    pub follow_ups: Vec<Request>,
    /// Malformed and badly signed requests.
    pub refused: Vec<Request>,
    pub expected: Expected,
}

impl Plan {
    pub fn requests(&self) -> usize {
        self.early.len() + self.conversions.len() + self.follow_ups.len() + self.refused.len()
    }
}

/// The clicks to send before anything else: (offer, query). Ingest mints their IDs.
pub fn clicks(volume: Volume) -> Vec<(&'static str, String)> {
    let mut rng = StdRng::seed_from_u64(volume.seed);
    let mut out = Vec::new();
    for (offer, n) in [(KETO, 120), (COURSE, 50), (SOLAR, 30)] {
        for i in 0..n * volume.scale {
            let affiliate = AFFILIATES[rng.random_range(0..3)];
            let source = ["facebook", "native", "search"][i % 3];
            out.push((
                offer,
                format!(
                    "aff_id={affiliate}&source={source}&sub1=adset-{}&utm_campaign=demo",
                    i % 7
                ),
            ));
        }
    }
    out
}

const AFFILIATES: [&str; 3] = ["aff12", "aff31", "aff47"];
const PRICES: [&str; 5] = ["39.00", "49.00", "69.00", "97.00", "147.00"];

struct Sale {
    offer: &'static str,
    network: &'static str,
    order: String,
    click_id: String,
    revenue: Decimal,
    payout: Decimal,
    affiliate: &'static str,
    email: String,
}

/// The conversions for clicks that ingest answered, by offer: `click_ids[offer]`.
pub fn plan(
    volume: Volume,
    run: &str,
    click_ids: &BTreeMap<String, Vec<String>>,
    secrets: &Secrets,
    routes: &Destinations,
    now: DateTime<Utc>,
) -> Plan {
    let mut rng = StdRng::seed_from_u64(volume.seed.wrapping_add(1));
    let mut plan = Plan::default();
    for (offer, ids) in click_ids {
        for _ in ids {
            plan.expected.count("CLICK", offer, routes);
        }
    }
    let click = |offer: &str, i: usize| -> String {
        let ids = &click_ids[offer];
        ids[(i * 7) % ids.len()].clone()
    };

    let mut sales = Vec::new();
    let networks: [(&'static str, &'static str, usize); 4] = [
        (KETO, "clickbank", 12),
        (KETO, "buygoods", 8),
        (COURSE, "digistore24", 6),
        (COURSE, "s2s", 4),
    ];
    for (offer, network, n) in networks {
        for i in 0..n * volume.scale {
            let revenue: Decimal = PRICES[rng.random_range(0..PRICES.len())].parse().unwrap();
            sales.push(Sale {
                offer,
                network,
                order: format!("{}-{network}-{i}", run.to_uppercase()),
                click_id: click(offer, i),
                revenue,
                payout: (revenue / Decimal::from(2)).round_dp(2),
                affiliate: AFFILIATES[i % 3],
                email: format!("buyer{i}.{network}@{run}.example"),
            });
        }
    }

    for (i, sale) in sales.iter().enumerate() {
        let sale_request = sale_postback(sale, "SALE", secrets, now, i);
        plan.expected.count("SALE", sale.offer, routes);
        plan.expected.revenue(sale.offer, sale.revenue);
        // Every 4th sale, the network retries the same postback.
        if i % 4 == 1 {
            let mut retry = sale_request.clone();
            retry.kind = "duplicate";
            plan.follow_ups.push(retry);
            plan.expected.duplicates += 1;
        }
        plan.conversions.push(sale_request);

        let reversal = if i % 6 == 0 {
            Some("REFUND")
        } else if i % 10 == 3 {
            Some("CHARGEBACK")
        } else {
            None
        };
        if let Some(name) = reversal {
            plan.expected.count(name, sale.offer, routes);
            plan.expected.revenue(sale.offer, -sale.revenue);
            let request = sale_postback(sale, name, secrets, now, i);
            // Some refunds arrive before the sale they reverse.
            if i % 12 == 0 {
                plan.early.push(request);
            } else {
                plan.follow_ups.push(request);
            }
        }
    }

    for i in 0..15 * volume.scale {
        let lead_id = format!("{run}-lead-{i}");
        let affiliate = AFFILIATES[i % 3];
        let event = |name: &str, suffix: &str| {
            let mut e = json!({
                "event_id": format!("{lead_id}-{suffix}"),
                "event_name": name,
                "lead_id": lead_id,
                "offer_id": SOLAR,
                "affiliate_id": affiliate,
                "click_id": click(SOLAR, i),
                "occurred_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            });
            if name == "LEAD" {
                e["email"] = json!(format!("lead{i}@{run}.example"));
            }
            if name == "APPROVED_LEAD" {
                e["payout"] = json!("12.50");
                e["currency"] = json!("USD");
            }
            e
        };
        let lead = json!({"events": [event("LEAD", "lead")]}).to_string();
        plan.expected.count("LEAD", SOLAR, routes);
        plan.conversions
            .push(events_request(&lead, secrets, "lead"));
        // A producer that retried its batch after a timeout.
        if i % 5 == 2 {
            plan.follow_ups
                .push(events_request(&lead, secrets, "duplicate"));
            plan.expected.duplicates += 1;
        }
        let decision = match i % 3 {
            0 => Some("APPROVED_LEAD"),
            1 => Some("REJECTED_LEAD"),
            _ => None,
        };
        if i % 4 == 3 {
            plan.expected.count("QUALIFIED_LEAD", SOLAR, routes);
            let body = json!({"events": [event("QUALIFIED_LEAD", "qualified")]}).to_string();
            plan.follow_ups
                .push(events_request(&body, secrets, "lead_status"));
        }
        if let Some(name) = decision {
            plan.expected.count(name, SOLAR, routes);
            let body = json!({"events": [event(name, "decision")]}).to_string();
            let request = events_request(&body, secrets, "lead_status");
            // The advertiser's CRM sometimes reports a decision before the lead arrives.
            if i % 7 == 0 {
                plan.early.push(request);
            } else {
                plan.follow_ups.push(request);
            }
        }
    }

    refused(&mut plan, run, secrets, now);
    plan
}

fn events_request(body: &str, secrets: &Secrets, kind: &'static str) -> Request {
    Request {
        method: Method::Post,
        path: "/v1/events".into(),
        content_type: Some("application/json"),
        bearer: Some(secrets.api_key.clone()),
        body: body.to_owned(),
        expect_status: 200,
        kind,
    }
}

fn form(fields: &BTreeMap<String, String>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The network's own postback for `name` (SALE, REFUND or CHARGEBACK) of `sale`.
fn sale_postback(
    sale: &Sale,
    name: &str,
    secrets: &Secrets,
    now: DateTime<Utc>,
    i: usize,
) -> Request {
    let revenue = sale.revenue.to_string();
    let payout = sale.payout.to_string();
    let post = |path: &str, content_type, body: String| Request {
        method: Method::Post,
        path: path.to_owned(),
        content_type: Some(content_type),
        bearer: None,
        body,
        expect_status: 200,
        kind: sale.network,
    };
    let get = |path: String| Request {
        method: Method::Get,
        path,
        content_type: None,
        bearer: None,
        body: String::new(),
        expect_status: 200,
        kind: sale.network,
    };
    match sale.network {
        "clickbank" => {
            let tx = match name {
                "SALE" => "SALE",
                "REFUND" => "RFND",
                _ => "CGBK",
            };
            let notice = json!({
                "transactionTime": now.to_rfc3339_opts(SecondsFormat::Secs, false),
                "receipt": sale.order, "transactionType": tx, "vendor": "ketovsl",
                "affiliate": sale.affiliate, "role": "VENDOR",
                "totalAccountAmount": payout, "totalOrderAmount": revenue, "currency": "USD",
                "attemptCount": 1, "version": 8.0, "clickId": sale.click_id,
                "lineItems": [{"itemNo": sale.offer}], "trackingCodes": ["demo"],
                "customer": {"billing": {"email": sale.email}},
            });
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
            iv[8] = tx.len() as u8;
            let body = clickbank::encrypt_notification(
                &secrets.clickbank_secret_key,
                notice.to_string().as_bytes(),
                iv,
            );
            post(clickbank::ROUTE, "application/json", body)
        }
        "digistore24" => {
            let event = match name {
                "SALE" => "on_payment",
                "REFUND" => "on_refund",
                _ => "on_chargeback",
            };
            let mut fields: BTreeMap<String, String> = [
                ("event", event),
                ("order_id", &sale.order),
                ("transaction_id", &format!("{}-{event}", sale.order)),
                ("amount_brutto", &revenue),
                ("amount_affiliate", &payout),
                ("currency", "USD"),
                ("affiliate_name", sale.affiliate),
                ("cid", &sale.click_id),
                ("product_id", sale.offer),
                ("email", &sale.email),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let signature = digistore24::sign(&fields, &secrets.digistore24_passphrase);
            fields.insert("sha_sign".into(), signature);
            post(
                digistore24::ROUTE,
                "application/x-www-form-urlencoded",
                form(&fields),
            )
        }
        "buygoods" => {
            let action = match name {
                "SALE" => "neworder",
                "REFUND" => "refund",
                _ => "chargeback",
            };
            let created = now.format("%Y-%m-%d %H:%M:%S").to_string();
            get(format!(
                "/v1/postbacks/buygoods?{}",
                query(&[
                    ("token", &secrets.buygoods_token),
                    ("order_id", &sale.order),
                    ("action_type", action),
                    ("aff_commission", &payout),
                    ("total_amount_charged", &revenue),
                    ("currency", "USD"),
                    ("product_id", sale.offer),
                    ("aff_id", sale.affiliate),
                    ("click_id", &sale.click_id),
                    ("email", &sale.email),
                    ("rr_createdate", &created),
                ])
            ))
        }
        _ => {
            let (_, token) = secrets.s2s();
            get(format!(
                "/v1/postbacks/s2s?{}",
                query(&[
                    ("token", token),
                    ("click_id", &sale.click_id),
                    ("event", name),
                    ("txid", &sale.order),
                    ("amount", &revenue),
                    ("payout", &payout),
                    ("currency", "USD"),
                    ("offer_id", sale.offer),
                    ("affiliate_id", sale.affiliate),
                ])
            ))
        }
    }
}

/// Requests ingest must refuse, and keep in quarantine: one per kind of mistake.
fn refused(plan: &mut Plan, run: &str, secrets: &Secrets, now: DateTime<Utc>) {
    let mut refuse = |mut r: Request, status: u16, reason: &str| {
        r.expect_status = status;
        r.kind = "refused";
        plan.refused.push(r);
        *plan
            .expected
            .quarantined
            .entry(reason.to_owned())
            .or_default() += 1;
    };
    refuse(
        events_request("{\"events\": [{\"event_id\": ", secrets, "refused"),
        400,
        "malformed_json",
    );
    let bad_currency = json!({"event_id": format!("{run}-bad-1"), "event_name": "SALE",
        "order_id": format!("{run}-bad-order"), "revenue": "10.00", "currency": "DOLLARS"});
    refuse(
        events_request(&bad_currency.to_string(), secrets, "refused"),
        400,
        "validation",
    );
    let wrong_key = Secrets {
        clickbank_secret_key: "NOTTHEREALSECRETKEY".into(),
        digistore24_passphrase: "not-the-passphrase".into(),
        buygoods_token: "not-the-token".into(),
        ..secrets.clone()
    };
    let forged = Sale {
        offer: KETO,
        network: "clickbank",
        order: format!("{}-FORGED", run.to_uppercase()),
        click_id: "none".into(),
        revenue: Decimal::from(500),
        payout: Decimal::from(250),
        affiliate: "aff99",
        email: format!("forger@{run}.example"),
    };
    refuse(
        sale_postback(&forged, "SALE", &wrong_key, now, 0),
        401,
        "decryption_failed",
    );
    let forged = Sale {
        network: "digistore24",
        ..forged
    };
    refuse(
        sale_postback(&forged, "SALE", &wrong_key, now, 0),
        401,
        "bad_signature",
    );
    let forged = Sale {
        network: "buygoods",
        ..forged
    };
    refuse(
        sale_postback(&forged, "SALE", &wrong_key, now, 0),
        401,
        "bad_token",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            api_key: "k".repeat(12),
            clickbank_secret_key: "SECRETKEY".into(),
            digistore24_passphrase: "pass".into(),
            buygoods_token: "tok".into(),
            s2s_source: "tracker-a:tok".into(),
        }
    }

    fn routes() -> Destinations {
        let file = "[[destination]]\nname = \"t\"\nkind = \"webhook\"\nurl = \"http://x/\"\nevents = [\"SALE\", \"REFUND\"]\noffers = [\"keto-vsl\"]\n";
        Destinations::parse(file).unwrap()
    }

    fn click_ids() -> BTreeMap<String, Vec<String>> {
        clicks(Volume { scale: 1, seed: 7 })
            .iter()
            .enumerate()
            .fold(BTreeMap::new(), |mut m, (i, (offer, _))| {
                m.entry(offer.to_string())
                    .or_insert_with(Vec::new)
                    .push(format!("clk{i}"));
                m
            })
    }

    #[test]
    fn the_totals_follow_from_the_requests() {
        let volume = Volume { scale: 1, seed: 7 };
        let plan = plan(
            volume,
            "r1",
            &click_ids(),
            &secrets(),
            &routes(),
            Utc::now(),
        );
        let e = &plan.expected;
        assert_eq!(e.events["CLICK"], 200);
        assert_eq!(e.events["SALE"], 30);
        assert_eq!(e.events["LEAD"], 15);
        // Every request but the duplicates and the refused makes one ledger entry, plus the
        // clicks, which are sent separately.
        let entries = plan.requests() as u64 - e.duplicates - e.quarantined_total() + 200;
        assert_eq!(e.ledger_entries(), entries);
        assert_eq!(e.quarantined_total(), plan.refused.len() as u64);
        assert!(!plan.early.is_empty(), "some reversals arrive first");
        // The route takes keto-vsl's sales and refunds: its 20 sales (ClickBank, BuyGoods:
        // indices 0..20) and the refunds of every sixth (0, 6, 12, 18); not chargebacks.
        assert_eq!(e.postbacks["t"], 24);
    }

    #[test]
    fn the_same_seed_plans_the_same_amounts() {
        let a = plan(
            Volume { scale: 1, seed: 3 },
            "r",
            &click_ids(),
            &secrets(),
            &routes(),
            Utc::now(),
        );
        let b = plan(
            Volume { scale: 1, seed: 3 },
            "r",
            &click_ids(),
            &secrets(),
            &routes(),
            Utc::now(),
        );
        assert_eq!(a.expected, b.expected);
        let c = plan(
            Volume { scale: 1, seed: 4 },
            "r",
            &click_ids(),
            &secrets(),
            &routes(),
            Utc::now(),
        );
        assert_ne!(a.expected.net_revenue, c.expected.net_revenue);
    }
}
