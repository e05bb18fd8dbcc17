-- Analyst views. All read the ledger as loaded: plain aggregates, no FINAL, exact.

-- The attribution of each conversion, from its original (first SALE or LEAD) or, for a
-- conversion whose original has not arrived, from whatever its entries carry. Reversals
-- are reported under the offer, affiliate, campaign and source of the sale they reverse.
CREATE VIEW IF NOT EXISTS conversion_attribution AS
SELECT
    conversion_key,
    argMinIf(offer_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_offer_id,
    argMinIf(affiliate_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_affiliate_id,
    argMinIf(campaign_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_campaign_id,
    argMinIf(source, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_source,
    any(offer_id) AS any_offer_id,
    any(affiliate_id) AS any_affiliate_id,
    any(campaign_id) AS any_campaign_id,
    any(source) AS any_source
FROM ledger
WHERE event_name != 'CLICK'
GROUP BY conversion_key;

-- Daily KPIs by offer, affiliate, campaign and source; test events excluded. The day is
-- the UTC day the event occurred: a refund counts on the day it happened.
CREATE VIEW IF NOT EXISTS daily_stats AS
SELECT
    toDate(l.occurred_at) AS day,
    coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer_id,
    coalesce(l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, '') AS affiliate_id,
    coalesce(l.campaign_id, a.original_campaign_id, a.any_campaign_id, '') AS campaign_id,
    coalesce(l.source, a.original_source, a.any_source, '') AS source,
    countIf(l.event_name = 'CLICK') AS clicks,
    countIf(l.event_name = 'LEAD') AS leads,
    countIf(l.event_name = 'QUALIFIED_LEAD') AS leads_qualified,
    countIf(l.event_name = 'APPROVED_LEAD') AS leads_approved,
    countIf(l.event_name = 'REJECTED_LEAD') AS leads_rejected,
    countIf(l.event_name = 'SALE') AS sales,
    sumIf(l.signed_revenue, l.event_name = 'SALE') AS gross_revenue,
    countIf(l.event_name = 'REFUND') AS refunds,
    -sumIf(l.signed_revenue, l.event_name = 'REFUND') AS refund_amount,
    countIf(l.event_name = 'CHARGEBACK') AS chargebacks,
    -sumIf(l.signed_revenue, l.event_name = 'CHARGEBACK') AS chargeback_amount,
    sum(l.signed_revenue) AS net_revenue,
    sum(l.signed_payout) AS payout,
    if(clicks = 0, NULL, net_revenue / clicks) AS epc,
    if(clicks = 0, NULL, sales / clicks) AS conversion_rate,
    if(sales = 0, NULL, refunds / sales) AS refund_rate,
    if(sales = 0, NULL, chargebacks / sales) AS chargeback_rate
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
WHERE NOT l.is_test
GROUP BY day, offer_id, affiliate_id, campaign_id, source;

-- One row per conversion (sale or lead) with its current state: the original, the sum of
-- its reversals, its net amounts and the status after its latest entry.
CREATE VIEW IF NOT EXISTS conversion_state AS
SELECT
    conversion_key,
    anyIf(event_id, event_name IN ('SALE', 'LEAD') AND link_status = 'NONE') AS original_event_id,
    argMaxIf(offer_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS offer_id,
    max(is_test) AS is_test,
    countIf(event_name = 'SALE') AS sales,
    sumIf(signed_revenue, event_name = 'SALE') AS gross_revenue,
    -sumIf(signed_revenue, event_name IN ('REFUND', 'CHARGEBACK', 'CANCELED')) AS reversed_revenue,
    countIf(event_name IN ('REFUND', 'CHARGEBACK', 'CANCELED')) AS reversals,
    sum(signed_revenue) AS net_revenue,
    sum(signed_payout) AS net_payout,
    argMax(conversion_status, (recorded_at, kafka_partition, kafka_offset)) AS status,
    min(occurred_at) AS first_occurred_at,
    max(recorded_at) AS last_recorded_at
FROM ledger
WHERE event_name != 'CLICK'
GROUP BY conversion_key;

-- Reversals and lead statuses recorded before their original and never adopted by one,
-- with the processor's ORPHANED report when it made one.
CREATE VIEW IF NOT EXISTS orphaned_reversals AS
SELECT
    l.event_id,
    l.event_name,
    l.conversion_key,
    l.signed_revenue,
    l.occurred_at,
    l.received_at,
    l.is_test,
    r.recorded_at AS reported_at
FROM ledger AS l
LEFT JOIN (SELECT event_id, min(recorded_at) AS recorded_at FROM receipts WHERE kind = 'ORPHANED' GROUP BY event_id) AS r
    ON l.event_id = r.event_id
WHERE l.link_status = 'AWAITING_ORIGINAL'
  AND l.event_id NOT IN (SELECT arrayJoin(adopted_event_ids) FROM ledger WHERE notEmpty(adopted_event_ids));

-- Same event_id, different content: never merged, listed here for review.
CREATE VIEW IF NOT EXISTS conflicts AS
SELECT
    r.event_id,
    r.event_name,
    r.conversion_key,
    r.occurrence,
    r.route,
    r.received_at,
    r.first_received_at,
    r.content_fingerprint,
    r.first_fingerprint,
    r.is_test
FROM receipts AS r
WHERE r.kind = 'CONFLICT';
