//! `{macro}` templates filled from an event, each value URL-encoded: the click redirect's
//! landing URLs (ingest) and the S2S postback URLs (forwarder) share the rule.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::event::TrackingEvent;
use crate::ledger::LedgerEntry;

/// The macros of a postback URL: the event's, and the ledger's `{status}` (the conversion
/// status after the entry), `{signed_revenue}`, `{signed_payout}`, `{net_revenue}`.
pub fn ledger_macro<'e>(entry: &'e LedgerEntry, name: &str) -> Option<Cow<'e, str>> {
    match name {
        "status" => Some(Cow::Borrowed(entry.conversion_status.as_str())),
        "signed_revenue" => Some(entry.signed_revenue.to_string().into()),
        "signed_payout" => Some(entry.signed_payout.to_string().into()),
        "net_revenue" => Some(entry.net_revenue.to_string().into()),
        _ => event_macro(&entry.event, name),
    }
}

/// A `{name}` in a template that nothing fills.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown macro {{{0}}}")]
pub struct UnknownMacro(pub String);

/// The attribution and identity fields of an event, by macro name; `None` when the name is
/// not an event macro, `Some("")` when the event lacks the value.
pub fn event_macro<'e>(e: &'e TrackingEvent, name: &str) -> Option<Cow<'e, str>> {
    let field = match name {
        "event_id" => return Some(Cow::Borrowed(&e.event_id)),
        "event_name" => return Some(Cow::Borrowed(e.event_name.as_str())),
        "network" => return Some(Cow::Borrowed(&e.network)),
        "revenue" => {
            return Some(
                e.revenue
                    .map_or(Cow::Borrowed(""), |d| d.to_string().into()),
            )
        }
        "payout" => return Some(e.payout.map_or(Cow::Borrowed(""), |d| d.to_string().into())),
        "click_id" => &e.click_id,
        "order_id" => &e.order_id,
        "lead_id" => &e.lead_id,
        "transaction_id" => &e.transaction_id,
        "currency" => &e.currency,
        "offer_id" => &e.offer_id,
        "affiliate_id" => &e.affiliate_id,
        "campaign_id" => &e.campaign_id,
        "source" => &e.source,
        "placement" => &e.placement,
        "utm_source" => &e.utm_source,
        "utm_medium" => &e.utm_medium,
        "utm_campaign" => &e.utm_campaign,
        "utm_term" => &e.utm_term,
        "utm_content" => &e.utm_content,
        "sub1" => &e.sub1,
        "sub2" => &e.sub2,
        "sub3" => &e.sub3,
        "sub4" => &e.sub4,
        "sub5" => &e.sub5,
        _ => return None,
    };
    Some(Cow::Borrowed(field.as_deref().unwrap_or("")))
}

/// Fills every `{name}` of `template` with `lookup(name)`, URL-encoded, in one pass. Text
/// outside braces is kept as is; a `{` without a closing `}` is kept literally.
pub fn fill<'a>(
    template: &str,
    lookup: impl Fn(&str) -> Option<Cow<'a, str>>,
) -> Result<String, UnknownMacro> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = &after[..close];
        let value = lookup(name).ok_or_else(|| UnknownMacro(name.to_owned()))?;
        out.extend(utf8_percent_encode(&value, NON_ALPHANUMERIC));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a URL template before it is used: `http://` or `https://`, and no macro in the
/// scheme or the host part, so that an event's values can only ever change the path and the
/// query string, never where the request goes (or where a visitor is sent).
pub fn check_url_template(template: &str) -> Result<(), String> {
    let rest = template
        .strip_prefix("https://")
        .or_else(|| template.strip_prefix("http://"))
        .ok_or("url must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("url has no host".into());
    }
    if authority.contains(['{', '}']) {
        return Err(format!(
            "url {template:?} has a macro in its host part: macros may fill only the path and query"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn event_macros_are_filled_and_encoded() {
        let mut sale = samples::sale();
        sale.sub1 = Some("a b&c".into());
        let url = fill(
            "https://t.example/pb?cid={click_id}&tx={event_id}&amt={revenue}&s1={sub1}&s5={sub5}",
            |n| event_macro(&sale, n),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://t.example/pb?cid=clk%5F01&tx=evt%2Dsale%2D1001&amt=49%2E99&s1=a%20b%26c&s5="
        );
    }

    #[test]
    fn macros_may_not_choose_the_scheme_or_host() {
        assert!(check_url_template("https://t.example/pb/{sub1}?cid={click_id}#{sub2}").is_ok());
        assert!(check_url_template("http://127.0.0.1:8090/pb").is_ok());
        for bad in [
            "https://{sub1}/pb",
            "https://t.example{sub1}/pb",
            "https://{sub1}.t.example/pb",
            "https://user:{sub1}@t.example/",
            "https://t.example:{sub2}/",
            "{sub1}://t.example/",
            "ftp://t.example/",
            "javascript:alert(1)",
            "https:///path",
        ] {
            assert!(check_url_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_macros_are_errors_and_lone_braces_stay() {
        let click = samples::click();
        assert_eq!(
            fill("x={nope}", |n| event_macro(&click, n)),
            Err(UnknownMacro("nope".into()))
        );
        assert_eq!(fill("a{b", |n| event_macro(&click, n)).unwrap(), "a{b");
    }
}
