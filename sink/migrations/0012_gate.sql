-- What `trackctl gate` reads besides the ledger.

-- Each `trackctl recon` run's result, so that the gate can read the latest mismatch of each
-- network: the report's range, the lines compared and how many of them differ.
CREATE TABLE IF NOT EXISTS recon_results
(
    run_at DateTime64(3, 'UTC'),
    network LowCardinality(String),
    shape LowCardinality(String),
    report String,
    from_day Date,
    to_day Date,
    compared_lines UInt64,
    mismatched_lines UInt64,
    mismatch_percent Float64,
    reversals_not_synced UInt64,
    refund_sync_lag_p50_hours Nullable(Float64),
    refund_sync_lag_max_hours Nullable(Float64)
)
ENGINE = MergeTree
ORDER BY (network, run_at);

-- credited_entries (0010) with each entry's three times appended, for the gate's queue and
-- refund-sync KPIs per offer and source.
CREATE OR REPLACE VIEW credited_entries AS
SELECT
    toDate(l.occurred_at) AS day,
    coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer_id,
    if(a.attribution = 'click',
       coalesce(a.click_affiliate_id, l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, ''),
       coalesce(l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, '')) AS affiliate_id,
    if(a.attribution = 'click',
       coalesce(a.click_campaign_id, l.campaign_id, a.original_campaign_id, a.any_campaign_id, ''),
       coalesce(l.campaign_id, a.original_campaign_id, a.any_campaign_id, '')) AS campaign_id,
    multiIf(
        l.event_name = 'CLICK', ifNull(l.source, ''),
        a.attribution = 'click', coalesce(a.click_source, l.source, a.original_source, a.any_source, ''),
        'unattributed') AS source,
    if(l.event_name = 'CLICK', '', a.attribution) AS attribution,
    l.event_name AS event_name,
    l.event_id AS event_id,
    l.conversion_key AS conversion_key,
    l.signed_revenue AS signed_revenue,
    l.signed_payout AS signed_payout,
    if(l.signed_revenue != 0 OR l.signed_payout != 0, ifNull(l.currency, ''), '') AS own_currency,
    l.occurred_at AS occurred_at,
    l.received_at AS received_at,
    l.recorded_at AS recorded_at
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
WHERE NOT l.is_test;
