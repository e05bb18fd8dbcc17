//! A generic server-to-server postback: GET on a URL template whose macros are filled from
//! the ledger entry and URL-encoded.
//!
//! Macros: `schemas::template::ledger_macro`, the event's (`{click_id}`, `{event_id}`,
//! `{event_name}`, `{revenue}`, `{payout}`, `{currency}`, `{order_id}`, `{offer_id}`,
//! `{sub1}` ... `{sub5}`, ...) and the ledger's `{status}` (the conversion status after the
//! entry), `{signed_revenue}`, `{signed_payout}`, `{net_revenue}`.

use schemas::destinations::Destination;
use schemas::template::{fill, ledger_macro};
use schemas::OutboxRecord;

use super::{idempotency, BuildError, Credentials, DestinationKind, PreparedRequest};

pub struct S2s;

impl DestinationKind for S2s {
    fn build(
        &self,
        d: &Destination,
        record: &OutboxRecord,
        _credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError> {
        let url = fill(&d.url, |n| ledger_macro(&record.entry, n))
            .map_err(|e| BuildError(format!("bad template: {e}")))?;
        Ok(PreparedRequest {
            method: "GET",
            url,
            headers: vec![idempotency(record)],
            body: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{destination, record};
    use super::*;

    #[test]
    fn the_url_carries_the_entry_encoded_and_the_key_in_a_header() {
        let d = destination(
            "s2s",
            "https://t.example/pb?cid={click_id}&tx={event_id}&amt={revenue}&st={status}&s1={sub1}",
        );
        let r = S2s
            .build(&d, &record("d"), &Credentials::default())
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.url,
            "https://t.example/pb?cid=clk%5F01&tx=evt%2Dsale%2D1001&amt=49%2E99&st=SOLD&s1=adset%2D9"
        );
        assert_eq!(
            r.headers,
            [("Idempotency-Key".to_owned(), "evt-sale-1001".to_owned())]
        );
    }
}
