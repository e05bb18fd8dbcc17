//! The generic tracker postback: `GET ?click_id=…&event=SALE&txid=…&amount=…&currency=…&token=…`,
//! authenticated by a token per source. Other parameters are ignored.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use schemas::{postback_event_id, EventName, RawPii, TrackingEvent};

use super::{
    amount, check_secret, field, form_fields, required, validated, ApiError, Outcome,
    PostbackAdapter, PostbackRequest,
};

pub const NETWORK: &str = "s2s";
pub const ROUTE: &str = "/v1/postbacks/s2s";

pub struct S2s {
    /// (source name, token)
    sources: Vec<(String, String)>,
}

impl S2s {
    /// `entries` are `name:token`.
    pub fn new(entries: &[String]) -> Self {
        let sources = entries
            .iter()
            .filter_map(|e| e.split_once(':'))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect();
        Self { sources }
    }

    /// The source whose token was presented. Every token is compared, so the time taken
    /// does not say which one matched.
    fn source(&self, token: Option<&str>) -> Result<&str, ApiError> {
        let mut found = Err(ApiError::unauthenticated(
            "missing_token",
            "token",
            "required",
        ));
        for (name, expected) in &self.sources {
            let checked = check_secret("token", token, expected).map(|()| name.as_str());
            if found.is_err() {
                found = checked;
            }
        }
        found
    }

    /// The source a request authenticates as: its token's, or on the replay route the one
    /// the operator names.
    fn authenticate(
        &self,
        req: &PostbackRequest<'_>,
        f: &BTreeMap<String, String>,
    ) -> Result<&str, ApiError> {
        match req.replay {
            Some(replay) => self.replayed_source(replay.source),
            None => self.source(field(f, "token")),
        }
    }

    /// On the replay route: the source named by the operator, which must be configured.
    fn replayed_source(&self, name: Option<&str>) -> Result<&str, ApiError> {
        let name = name.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_source",
                super::REPLAY_SOURCE_HEADER,
                "an S2S replay names the source its token authenticated as",
            )
        })?;
        self.sources
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, _)| n.as_str())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_source",
                    super::REPLAY_SOURCE_HEADER,
                    format!("no S2S source {name:?} is configured"),
                )
            })
    }
}

impl PostbackAdapter for S2s {
    fn network(&self) -> &'static str {
        NETWORK
    }

    fn credentials(&self) -> &'static [&'static str] {
        &["token"]
    }

    fn parse(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError> {
        let f = form_fields(req)?;
        parse_from(self.authenticate(req, &f)?, &f, req)
    }

    fn source_of(&self, req: &PostbackRequest<'_>) -> Option<String> {
        let f = form_fields(req).ok()?;
        self.authenticate(req, &f).ok().map(str::to_owned)
    }
}

/// The event of an authenticated S2S postback from `source`.
fn parse_from(
    source: &str,
    f: &BTreeMap<String, String>,
    req: &PostbackRequest<'_>,
) -> Result<Outcome, ApiError> {
    let click_id = required(f, "click_id")?;
    let event_text = required(f, "event")?;
    let name: EventName = event_text.to_ascii_uppercase().parse().map_err(|_| {
        ApiError::invalid(
            "event",
            format!("{event_text:?} is not one of the nine event names"),
        )
    })?;
    let txid = required(f, "txid")?;
    // `txid` names the conversion (refunds carry their sale's); `seq` tells apart the
    // transactions of one txid and event, a rebill or a partial refund, and a retry repeats it.
    let seq = field(f, "seq");
    if let Some(s) = seq {
        if s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(ApiError::invalid(
                "seq",
                "must be 1-64 characters of letters, digits and - _ . :",
            ));
        }
    }

    let event_id =
        postback_event_id(&format!("{NETWORK}_{source}"), txid, name.as_str(), seq).to_string();
    let mut e = TrackingEvent::new(
        event_id,
        name,
        req.received_at,
        req.received_at,
        NETWORK,
        ROUTE,
    );
    e.click_id = Some(click_id.to_owned());
    e.order_id = Some(txid.to_owned());
    e.transaction_id = Some(txid.to_owned());
    e.native_event_type = Some(event_text.to_owned());
    e.rebill_sequence = seq
        .filter(|_| name == EventName::Sale)
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|n| *n >= 1);
    e.source = Some(source.to_owned());
    e.revenue = amount("amount", field(f, "amount"))?;
    e.payout = amount("payout", field(f, "payout"))?;
    e.currency = field(f, "currency").map(str::to_ascii_uppercase);
    e.offer_id = field(f, "offer_id").map(str::to_owned);
    e.affiliate_id = field(f, "affiliate_id").map(str::to_owned);
    Ok(Outcome::Events(vec![(validated(e)?, RawPii::default())]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn parse(query: &str) -> Result<Outcome, ApiError> {
        S2s::new(&[
            "tracker-a:tok-aaaaaaaa".into(),
            "tracker-b:tok-bbbbbbbb".into(),
        ])
        .parse(&PostbackRequest {
            method: "GET",
            query,
            content_type: None,
            body: b"",
            received_at: Utc::now(),
            replay: None,
        })
    }

    #[test]
    fn a_sale_from_a_known_source() {
        let Outcome::Events(events) = parse(
            "click_id=c1&event=sale&txid=T1&amount=10.5&currency=usd&token=tok-bbbbbbbb&unknown=x",
        )
        .unwrap() else {
            panic!()
        };
        let e = &events[0].0;
        assert_eq!(e.event_name, EventName::Sale);
        assert_eq!(e.source.as_deref(), Some("tracker-b"));
        assert_eq!(e.revenue.unwrap().to_string(), "10.5");
        assert_eq!(e.currency.as_deref(), Some("USD"));
    }

    #[test]
    fn seq_tells_apart_rebills_and_partial_refunds_of_one_txid() {
        let id = |q: &str| match parse(&format!(
            "click_id=c1&txid=T1&currency=USD&token=tok-aaaaaaaa&{q}"
        ))
        .unwrap()
        {
            Outcome::Events(events) => events[0].0.clone(),
            Outcome::Nothing => panic!(),
        };
        let first = id("event=REFUND&amount=5&seq=r1");
        let second = id("event=REFUND&amount=3&seq=r2");
        assert_ne!(first.event_id, second.event_id);
        assert_eq!(first.event_id, id("event=REFUND&amount=5&seq=r1").event_id);
        assert_eq!(first.order_id.as_deref(), Some("T1"));
        let rebill = id("event=SALE&amount=9&seq=2");
        assert_eq!(rebill.rebill_sequence, Some(2));
        // Without seq, the ID it always had.
        assert_eq!(
            id("event=SALE&amount=9").event_id,
            postback_event_id("s2s_tracker-a", "T1", "SALE", None).to_string()
        );
        assert_ne!(rebill.event_id, id("event=SALE&amount=9").event_id);
        let bad = parse("click_id=c1&txid=T1&event=SALE&seq=a%7Cb&token=tok-aaaaaaaa").unwrap_err();
        assert_eq!(bad.errors[0].field, "seq");
    }

    #[test]
    fn rejections_name_the_field() {
        assert_eq!(
            parse("click_id=c1&event=SALE&txid=T1")
                .unwrap_err()
                .status
                .as_u16(),
            401
        );
        assert_eq!(
            parse("click_id=c1&event=SALE&txid=T1&token=tok-cccccccc")
                .unwrap_err()
                .reason,
            "bad_token"
        );
        assert_eq!(
            parse("click_id=c1&event=BUY&txid=T1&token=tok-aaaaaaaa")
                .unwrap_err()
                .errors[0]
                .field,
            "event"
        );
        assert_eq!(
            parse("event=SALE&txid=T1&token=tok-aaaaaaaa")
                .unwrap_err()
                .errors[0]
                .field,
            "click_id"
        );
        assert_eq!(
            parse("click_id=c1&event=SALE&txid=T1&amount=5&token=tok-aaaaaaaa")
                .unwrap_err()
                .errors[0]
                .field,
            "currency"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_queries_never_panic(q in "[ -~]{0,200}") {
            let _ = parse(&q);
            if let Ok(Outcome::Events(events)) = parse(&format!("token=tok-aaaaaaaa&{q}")) {
                for (e, _) in events {
                    proptest::prop_assert!(schemas::validate(&e).is_ok());
                }
            }
        }
    }
}
