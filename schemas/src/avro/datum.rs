//! The Avro binary datum of a [`TrackingEvent`], written and read field by field in the
//! current schema's order, straight from and into the struct.
//!
//! apache-avro's generic path builds a `Value` tree per event and looks fields up by name; on
//! the hot paths (ingest, processor) that cost 8 times the JSON encoding of the same event.
//! The round-trip tests hold this writer byte-identical to apache-avro's for every sample and
//! for generated events, so the two cannot drift apart.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{from_twos_complement, money_mantissa, DecodeError, EncodeError, MONEY_SCALE};
use crate::event::{ConsentState, EventName, PayoutStatus, RefundStatus, TrackingEvent};
use crate::matching::{MatchKeys, PlatformIds};
use crate::money::Money;

pub(crate) fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(crate) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    bytes(out, s.as_bytes());
}

/// `["null", "string"]`
pub(crate) fn opt_string(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => long(out, 0),
        Some(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

pub(crate) fn opt_int(out: &mut Vec<u8>, n: Option<i32>) {
    match n {
        None => long(out, 0),
        Some(n) => {
            long(out, 1);
            long(out, i64::from(n));
        }
    }
}

pub(crate) fn timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    long(out, t.timestamp_millis());
}

pub(crate) fn opt_money(
    out: &mut Vec<u8>,
    field: &'static str,
    amount: Option<Decimal>,
) -> Result<(), EncodeError> {
    match amount {
        None => long(out, 0),
        Some(a) => {
            long(out, 1);
            bytes(out, &money_mantissa(field, a)?.to_be_bytes());
        }
    }
    Ok(())
}

pub(crate) fn opt_enum(out: &mut Vec<u8>, index: Option<u32>) {
    match index {
        None => long(out, 0),
        Some(i) => {
            long(out, 1);
            long(out, i64::from(i));
        }
    }
}

pub(crate) fn string_array(out: &mut Vec<u8>, items: &[String]) {
    if !items.is_empty() {
        long(out, items.len() as i64);
        for item in items {
            string(out, item);
        }
    }
    long(out, 0);
}

pub(crate) fn string_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    if !map.is_empty() {
        long(out, map.len() as i64);
        for (k, v) in map {
            string(out, k);
            string(out, v);
        }
    }
    long(out, 0);
}

/// Appends the datum of `e` (without the single-object header) to `out`, in the current
/// schema's shape.
pub fn write_event(e: &TrackingEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_event_body(e, out)?;
    string_array(out, &e.quality_flags);
    ad_matching(out, e);
    Ok(())
}

/// `match_keys` then `platform_ids` (contract v3): nullable records of nullable strings.
/// The ledger entry and the outbox append the same two fields.
pub(crate) fn ad_matching(out: &mut Vec<u8>, e: &TrackingEvent) {
    match &e.match_keys {
        None => long(out, 0),
        Some(k) => {
            long(out, 1);
            opt_string(out, &k.email_sha256);
            opt_string(out, &k.phone_sha256);
            opt_string(out, &k.phone_digits_sha256);
        }
    }
    match &e.platform_ids {
        None => long(out, 0),
        Some(p) => {
            long(out, 1);
            for value in [
                &p.gclid,
                &p.gbraid,
                &p.wbraid,
                &p.fbc,
                &p.fbp,
                &p.ttclid,
                &p.msclkid,
                &p.ga_client_id,
            ] {
                opt_string(out, value);
            }
        }
    }
}

/// The fields of contract v1, which the ledger entry embeds (and the content fingerprint
/// covers): v2 appended `quality_flags`, v3 `match_keys`.
pub fn write_event_body(e: &TrackingEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    string(out, &e.event_id);
    long(out, i64::from(e.event_name.index()));
    timestamp(out, e.occurred_at);
    opt_string(out, &e.occurred_at_original);
    opt_string(out, &e.source_timezone);
    timestamp(out, e.received_at);
    match e.settled_at {
        None => long(out, 0),
        Some(t) => {
            long(out, 1);
            timestamp(out, t);
        }
    }
    string(out, &e.network);
    opt_string(out, &e.order_id);
    opt_string(out, &e.transaction_id);
    opt_string(out, &e.parent_order_id);
    opt_int(out, e.rebill_sequence);
    opt_string(out, &e.lead_id);
    opt_string(out, &e.native_event_type);
    out.push(u8::from(e.status_only));
    for s in [
        &e.click_id,
        &e.affiliate_id,
        &e.campaign_id,
        &e.offer_id,
        &e.source,
        &e.placement,
        &e.utm_source,
        &e.utm_medium,
        &e.utm_campaign,
        &e.utm_term,
        &e.utm_content,
        &e.sub1,
        &e.sub2,
        &e.sub3,
        &e.sub4,
        &e.sub5,
    ] {
        opt_string(out, s);
    }
    opt_money(out, "revenue", e.revenue)?;
    opt_money(out, "payout", e.payout)?;
    opt_string(out, &e.currency);
    opt_enum(out, e.payout_status.map(|s| s.index()));
    opt_enum(out, e.refund_status.map(|s| s.index()));
    out.push(u8::from(e.is_test));
    long(out, i64::from(e.consent_state.index()));
    string_array(out, &e.data_minimization);
    opt_string(out, &e.ip_hash);
    opt_string(out, &e.email_hash);
    opt_string(out, &e.user_agent);
    string(out, &e.route);
    opt_int(out, e.delivery_attempt);
    string_map(out, &e.attributes);
    Ok(())
}

/// Reads a datum written with the current schema, field by field, the mirror of the
/// writer. Any malformed input is an error, never a panic.
pub struct Reader<'a> {
    buf: &'a [u8],
    field: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            field: "<root>",
        }
    }

    /// What is left after the datum.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn at(&mut self, field: &'static str) -> &mut Self {
        self.field = field;
        self
    }

    pub fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError::Field {
            field: self.field.to_owned(),
            reason: reason.into(),
        })
    }

    pub fn long(&mut self) -> Result<i64, DecodeError> {
        let mut z: u64 = 0;
        for (i, b) in self.buf.iter().enumerate().take(10) {
            z |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        self.fail("truncated or overlong varint")
    }

    pub fn int(&mut self) -> Result<i32, DecodeError> {
        let n = self.long()?;
        i32::try_from(n).or_else(|_| self.fail(format!("{n} does not fit an int")))
    }

    pub fn boolean(&mut self) -> Result<bool, DecodeError> {
        match self.buf.split_first() {
            Some((0, rest)) => {
                self.buf = rest;
                Ok(false)
            }
            Some((1, rest)) => {
                self.buf = rest;
                Ok(true)
            }
            Some((b, _)) => self.fail(format!("boolean byte {b}")),
            None => self.fail("truncated"),
        }
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.long()?;
        let len = usize::try_from(len).or_else(|_| self.fail(format!("length {len}")))?;
        if len > self.buf.len() {
            return self.fail("truncated");
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => self.fail(e.to_string()),
        }
    }

    /// The branch of a `["null", T]` union: whether a value follows.
    pub fn present(&mut self) -> Result<bool, DecodeError> {
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            n => self.fail(format!("union branch {n}")),
        }
    }

    /// The `match_keys` and `platform_ids` fields (see [`ad_matching`]) into `event`.
    pub fn read_ad_matching(&mut self, event: &mut TrackingEvent) -> Result<(), DecodeError> {
        event.match_keys = if self.at("match_keys").present()? {
            Some(MatchKeys {
                email_sha256: self.at("match_keys.email_sha256").opt_string()?,
                phone_sha256: self.at("match_keys.phone_sha256").opt_string()?,
                phone_digits_sha256: self.at("match_keys.phone_digits_sha256").opt_string()?,
            })
        } else {
            None
        };
        event.platform_ids = if self.at("platform_ids").present()? {
            let mut ids = PlatformIds::default();
            for name in PlatformIds::FIELDS {
                self.at("platform_ids");
                *ids.slot(name).expect("a known field") = self.opt_string()?;
            }
            Some(ids)
        } else {
            None
        };
        Ok(())
    }

    pub fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        if self.present()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_int(&mut self) -> Result<Option<i32>, DecodeError> {
        if self.present()? {
            self.int().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn timestamp(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let ms = self.long()?;
        DateTime::from_timestamp_millis(ms)
            .map_or_else(|| self.fail(format!("{ms} ms is out of range")), Ok)
    }

    pub fn money(&mut self) -> Result<Decimal, DecodeError> {
        let b = self.bytes()?;
        let Some(mantissa) = from_twos_complement(b) else {
            return self.fail("decimal of 0 or more than 16 bytes");
        };
        Decimal::try_from_i128_with_scale(mantissa, MONEY_SCALE)
            .map(|d| d.normalize())
            .or_else(|e| self.fail(e.to_string()))
    }

    /// A money field as the ledger's `Money`, refused outside `decimal(18, 6)`.
    pub fn exact_money(&mut self) -> Result<Money, DecodeError> {
        let b = self.bytes()?;
        let Some(mantissa) = from_twos_complement(b) else {
            return self.fail("decimal of 0 or more than 16 bytes");
        };
        match i64::try_from(mantissa).map(Money::from_micros) {
            Ok(Ok(m)) => Ok(m),
            _ => self.fail(format!("{mantissa} millionths is outside decimal(18, 6)")),
        }
    }

    pub fn opt_money(&mut self) -> Result<Option<Decimal>, DecodeError> {
        if self.present()? {
            self.money().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn symbol<T: Copy>(&mut self, all: &[T]) -> Result<T, DecodeError> {
        let i = self.long()?;
        match usize::try_from(i).ok().and_then(|i| all.get(i)) {
            Some(v) => Ok(*v),
            None => self.fail(format!("enum index {i}")),
        }
    }

    pub fn opt_symbol<T: Copy>(&mut self, all: &[T]) -> Result<Option<T>, DecodeError> {
        if self.present()? {
            self.symbol(all).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The item count of the next array or map block; 0 ends it.
    fn block(&mut self) -> Result<usize, DecodeError> {
        let n = self.long()?;
        if n < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
        }
        let n = n.unsigned_abs();
        if n > self.buf.len() as u64 {
            return self.fail(format!("block of {n} items in {} bytes", self.buf.len()));
        }
        Ok(n as usize)
    }

    pub fn string_array(&mut self) -> Result<Vec<String>, DecodeError> {
        let mut items = Vec::new();
        loop {
            let n = self.block()?;
            if n == 0 {
                return Ok(items);
            }
            for _ in 0..n {
                items.push(self.string()?);
            }
        }
    }

    pub fn string_map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let mut map = BTreeMap::new();
        loop {
            let n = self.block()?;
            if n == 0 {
                return Ok(map);
            }
            for _ in 0..n {
                let k = self.string()?;
                map.insert(k, self.string()?);
            }
        }
    }
}

/// Reads the datum of an event written with the current schema.
/// Reads a datum of the current schema.
pub fn read_event(r: &mut Reader<'_>) -> Result<TrackingEvent, DecodeError> {
    let mut event = read_event_body(r)?;
    event.quality_flags = r.at("quality_flags").string_array()?;
    r.read_ad_matching(&mut event)?;
    Ok(event)
}

/// Reads the fields of contract v1 (the event a ledger entry embeds).
pub fn read_event_body(r: &mut Reader<'_>) -> Result<TrackingEvent, DecodeError> {
    let event_id = r.at("event_id").string()?;
    let event_name = r.at("event_name").symbol(EventName::ALL)?;
    let occurred_at = r.at("occurred_at").timestamp()?;
    let occurred_at_original = r.at("occurred_at_original").opt_string()?;
    let source_timezone = r.at("source_timezone").opt_string()?;
    let received_at = r.at("received_at").timestamp()?;
    let settled_at = if r.at("settled_at").present()? {
        Some(r.timestamp()?)
    } else {
        None
    };
    let network = r.at("network").string()?;
    let order_id = r.at("order_id").opt_string()?;
    let transaction_id = r.at("transaction_id").opt_string()?;
    let parent_order_id = r.at("parent_order_id").opt_string()?;
    let rebill_sequence = r.at("rebill_sequence").opt_int()?;
    let lead_id = r.at("lead_id").opt_string()?;
    let native_event_type = r.at("native_event_type").opt_string()?;
    let status_only = r.at("status_only").boolean()?;
    let mut attribution: [Option<String>; 16] = Default::default();
    for (slot, field) in attribution.iter_mut().zip(ATTRIBUTION_FIELDS) {
        *slot = r.at(field).opt_string()?;
    }
    let [click_id, affiliate_id, campaign_id, offer_id, source, placement, utm_source, utm_medium, utm_campaign, utm_term, utm_content, sub1, sub2, sub3, sub4, sub5] =
        attribution;
    Ok(TrackingEvent {
        event_id,
        event_name,
        occurred_at,
        occurred_at_original,
        source_timezone,
        received_at,
        settled_at,
        network,
        order_id,
        transaction_id,
        parent_order_id,
        rebill_sequence,
        lead_id,
        native_event_type,
        status_only,
        click_id,
        affiliate_id,
        campaign_id,
        offer_id,
        source,
        placement,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_term,
        utm_content,
        sub1,
        sub2,
        sub3,
        sub4,
        sub5,
        revenue: r.at("revenue").opt_money()?,
        payout: r.at("payout").opt_money()?,
        currency: r.at("currency").opt_string()?,
        payout_status: r.at("payout_status").opt_symbol(PayoutStatus::ALL)?,
        refund_status: r.at("refund_status").opt_symbol(RefundStatus::ALL)?,
        is_test: r.at("is_test").boolean()?,
        consent_state: r.at("consent_state").symbol(ConsentState::ALL)?,
        data_minimization: r.at("data_minimization").string_array()?,
        ip_hash: r.at("ip_hash").opt_string()?,
        email_hash: r.at("email_hash").opt_string()?,
        user_agent: r.at("user_agent").opt_string()?,
        route: r.at("route").string()?,
        delivery_attempt: r.at("delivery_attempt").opt_int()?,
        attributes: r.at("attributes").string_map()?,
        quality_flags: Vec::new(),
        match_keys: None,
        platform_ids: None,
    })
}

const ATTRIBUTION_FIELDS: [&str; 16] = [
    "click_id",
    "affiliate_id",
    "campaign_id",
    "offer_id",
    "source",
    "placement",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_match_the_spec() {
        let enc = |n| {
            let mut v = Vec::new();
            long(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-64), [0x7F]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(i64::MIN).len(), 10);
    }
}
