//! BuyGoods postbacks: form-urlencoded (GET or POST). BuyGoods documents no signature, so the
//! postback URL carries a secret `token` configured per account.

use chrono::{DateTime, NaiveDateTime, Utc};
use schemas::{postback_event_id, EventName, TrackingEvent};

use super::{
    amount, check_secret, field, form_fields, one_event, required, set_subtags, ApiError, Outcome,
    PostbackAdapter, PostbackRequest,
};

pub const NETWORK: &str = "buygoods";
pub const ROUTE: &str = "/v1/postbacks/buygoods";

pub struct BuyGoods {
    token: String,
}

impl BuyGoods {
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
        }
    }
}

fn map_action(action: &str) -> Result<(EventName, bool), ApiError> {
    Ok(match action {
        "neworder" | "rebill" => (EventName::Sale, false),
        "refund" => (EventName::Refund, false),
        "chargeback" => (EventName::Chargeback, false),
        "cancel" | "canceledfromrebill" => (EventName::Canceled, false),
        "failedrebill" => (EventName::Sale, true),
        other => {
            return Err(ApiError::invalid(
                "action_type",
                format!("unknown action {other:?}"),
            ))
        }
    })
}

/// `rr_createdate` is GMT, as `YYYY-MM-DD HH:MM:SS`.
fn parse_gmt(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl PostbackAdapter for BuyGoods {
    fn network(&self) -> &'static str {
        NETWORK
    }

    fn credentials(&self) -> &'static [&'static str] {
        &["token"]
    }

    fn parse(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError> {
        let f = form_fields(req)?;
        // A replay was authenticated by the operator's API key; its token was redacted.
        if req.replay.is_none() {
            check_secret("token", field(&f, "token"), &self.token)?;
        }
        let order_id = required(&f, "order_id")?;
        let action = required(&f, "action_type")?.to_ascii_lowercase();
        let (name, status_only) = map_action(&action)?;
        let created = field(&f, "rr_createdate");
        let occurred_at = match created {
            Some(t) => parse_gmt(t).ok_or_else(|| {
                ApiError::invalid("rr_createdate", format!("{t:?} is not YYYY-MM-DD HH:MM:SS"))
            })?,
            None => req.received_at,
        };

        // One order can have several rebills, refunds or chargebacks (partial refunds), and
        // BuyGoods gives them the order's ID: the transaction's own time, which a retry
        // repeats, tells them apart. Without rr_createdate they share the order's ID.
        let sequence = matches!(action.as_str(), "rebill" | "refund" | "chargeback")
            .then(|| created.map(|_| occurred_at.timestamp_millis().to_string()))
            .flatten();
        let event_id =
            postback_event_id(NETWORK, order_id, &action, sequence.as_deref()).to_string();
        let mut e =
            TrackingEvent::new(event_id, name, occurred_at, req.received_at, NETWORK, ROUTE);
        e.occurred_at_original = created.map(str::to_owned);
        e.source_timezone = created.map(|_| "GMT".to_owned());
        e.order_id = Some(order_id.to_owned());
        e.transaction_id = Some(order_id.to_owned());
        e.parent_order_id = field(&f, "order_id_global")
            .filter(|g| *g != order_id)
            .map(str::to_owned);
        e.native_event_type = Some(action);
        e.status_only = status_only;
        e.is_test =
            field(&f, "is_test").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        e.revenue = amount("total_amount_charged", field(&f, "total_amount_charged"))?;
        e.payout = amount("aff_commission", field(&f, "aff_commission"))?;
        e.currency = Some(field(&f, "currency").unwrap_or("USD").to_ascii_uppercase());
        e.affiliate_id = field(&f, "aff_id").map(str::to_owned);
        e.offer_id = field(&f, "product_id").map(str::to_owned);
        e.click_id = field(&f, "click_id").map(str::to_owned);
        set_subtags(
            &mut e,
            &f,
            ["subid", "subid2", "subid3", "subid4", "subid5"],
        );
        one_event(e, field(&f, "email"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Outcome, ApiError> {
        BuyGoods::new("bg-token-123").parse(&PostbackRequest {
            method: "GET",
            query,
            content_type: None,
            body: b"",
            received_at: Utc::now(),
            replay: None,
        })
    }

    fn event(query: &str) -> TrackingEvent {
        match parse(query).unwrap() {
            Outcome::Events(mut e) => e.remove(0).0,
            Outcome::Nothing => panic!(),
        }
    }

    #[test]
    fn rebills_and_partial_refunds_of_one_order_stay_apart_and_their_retries_do_not() {
        let q = |action: &str, at: &str| {
            format!("token=bg-token-123&order_id=BG7&action_type={action}&total_amount_charged=10&currency=USD&rr_createdate={at}")
        };
        let ids: Vec<String> = [
            q("rebill", "2026-09-20+09:30:00"),
            q("rebill", "2026-10-20+09:30:00"),
            q("refund", "2026-11-21+10:00:00"),
            q("refund", "2026-11-23+10:00:00"),
        ]
        .iter()
        .map(|query| event(query).event_id)
        .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 4, "{ids:?}");
        assert_eq!(event(&q("refund", "2026-11-21+10:00:00")).event_id, ids[2]);
        // 2026-11-21 10:00:00 GMT in epoch milliseconds.
        assert_eq!(
            ids[2],
            postback_event_id("buygoods", "BG7", "refund", Some("1795255200000")).to_string()
        );
        // A new order keeps the ID it always had.
        assert_eq!(
            event(&q("neworder", "2026-11-20+09:30:00")).event_id,
            postback_event_id("buygoods", "BG7", "neworder", None).to_string()
        );
    }

    #[test]
    fn an_upsell_links_its_front_end_order() {
        let e = event("token=bg-token-123&order_id=BG2&order_id_global=BG1&action_type=neworder&aff_commission=12.5&total_amount_charged=39&currency=usd&subid=a&subid5=e&rr_createdate=2026-11-20+09:30:00");
        assert_eq!(e.event_name, EventName::Sale);
        assert_eq!(e.parent_order_id.as_deref(), Some("BG1"));
        assert_eq!(e.currency.as_deref(), Some("USD"));
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-20T09:30:00+00:00");
        assert_eq!(
            (e.sub1.as_deref(), e.sub5.as_deref()),
            (Some("a"), Some("e"))
        );
    }

    #[test]
    fn actions_map_as_documented() {
        for (action, name, status_only) in [
            ("rebill", EventName::Sale, false),
            ("refund", EventName::Refund, false),
            ("chargeback", EventName::Chargeback, false),
            ("cancel", EventName::Canceled, false),
            ("canceledfromrebill", EventName::Canceled, false),
            ("failedrebill", EventName::Sale, true),
        ] {
            let e = event(&format!(
                "token=bg-token-123&order_id=BG1&action_type={action}"
            ));
            assert_eq!(
                (e.event_name, e.status_only),
                (name, status_only),
                "{action}"
            );
        }
    }

    #[test]
    fn token_and_fields_are_checked() {
        assert_eq!(
            parse("order_id=1&action_type=refund")
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        assert_eq!(
            parse("token=nope&order_id=1&action_type=refund")
                .unwrap_err()
                .reason,
            "bad_token"
        );
        assert_eq!(
            parse("token=bg-token-123&action_type=refund")
                .unwrap_err()
                .errors[0]
                .field,
            "order_id"
        );
        assert_eq!(
            parse("token=bg-token-123&order_id=1&action_type=refund&rr_createdate=today")
                .unwrap_err()
                .errors[0]
                .field,
            "rr_createdate"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_queries_never_panic(q in "[ -~]{0,200}") {
            let _ = parse(&q);
            let _ = parse(&format!("token=bg-token-123&{q}"));
        }
    }
}
