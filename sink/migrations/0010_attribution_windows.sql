-- Attribution windows. A conversion is credited to the click whose ID it carries only when
-- it happened within its offer's window after that click (the sink's offers file:
-- attribution_window_days per offer, [attribution] window_days by default). A conversion
-- outside its window, or without a click in the ledger, stays in the ledger with its money,
-- and is credited to the source 'unattributed'.

-- The windows of the sink's offers file, written at each start; offer_id '' is the default.
-- The views read the latest start's rows.
CREATE TABLE IF NOT EXISTS attribution_windows
(
    set_at DateTime64(3, 'UTC'),
    offer_id String,
    window_days UInt32
)
ENGINE = MergeTree
ORDER BY (set_at, offer_id);

-- Each conversion's attribution: its original's offer, affiliate, campaign and source (any of
-- its entries' where the original has none), the click it names (the click ID on its earliest
-- recorded entry that has one) and that click's attribution and time (the click ID's first
-- record), the conversion's time (its earliest SALE or LEAD, else its earliest entry), its
-- offer's window, and the verdict: 'click' (credited to the click), 'outside_window' (the
-- click is older than the window), 'no_click' (no click ID, or one the ledger never saw).
-- A click recorded after the conversion (clocks disagree) is within the window.
CREATE OR REPLACE VIEW conversion_attribution AS
WITH
    (SELECT max(set_at) FROM attribution_windows) AS windows_at,
    (SELECT any(window_days) FROM attribution_windows WHERE set_at = windows_at AND offer_id = '') AS default_window_days
SELECT
    c.conversion_key AS conversion_key,
    c.original_offer_id AS original_offer_id,
    c.original_affiliate_id AS original_affiliate_id,
    c.original_campaign_id AS original_campaign_id,
    c.original_source AS original_source,
    c.any_offer_id AS any_offer_id,
    c.any_affiliate_id AS any_affiliate_id,
    c.any_campaign_id AS any_campaign_id,
    c.any_source AS any_source,
    c.click_id AS click_id,
    k.affiliate_id AS click_affiliate_id,
    k.campaign_id AS click_campaign_id,
    k.source AS click_source,
    if(k.found = 1, k.occurred_at, NULL) AS click_occurred_at,
    c.converted_at AS converted_at,
    if(w.found = 1, w.window_days, default_window_days) AS window_days,
    multiIf(
        k.found = 0, 'no_click',
        dateDiff('millisecond', k.occurred_at, c.converted_at) > toInt64(window_days) * 86400000, 'outside_window',
        'click') AS attribution
FROM
(
    SELECT
        conversion_key,
        argMinIf(offer_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_offer_id,
        argMinIf(affiliate_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_affiliate_id,
        argMinIf(campaign_id, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_campaign_id,
        argMinIf(source, recorded_at, event_name IN ('SALE', 'LEAD')) AS original_source,
        any(offer_id) AS any_offer_id,
        any(affiliate_id) AS any_affiliate_id,
        any(campaign_id) AS any_campaign_id,
        any(source) AS any_source,
        argMinIf(click_id, recorded_at, ifNull(click_id, '') != '') AS click_id,
        if(countIf(event_name IN ('SALE', 'LEAD')) > 0, minIf(occurred_at, event_name IN ('SALE', 'LEAD')), min(occurred_at)) AS converted_at
    FROM ledger
    WHERE event_name != 'CLICK'
    GROUP BY conversion_key
) AS c
LEFT JOIN
(
    SELECT
        click_id,
        argMin(affiliate_id, recorded_at) AS affiliate_id,
        argMin(campaign_id, recorded_at) AS campaign_id,
        argMin(source, recorded_at) AS source,
        argMin(occurred_at, recorded_at) AS occurred_at,
        toUInt8(1) AS found
    FROM ledger
    WHERE event_name = 'CLICK' AND ifNull(click_id, '') != ''
    GROUP BY click_id
) AS k ON c.click_id = k.click_id
LEFT JOIN
(
    SELECT offer_id, window_days, toUInt8(1) AS found
    FROM attribution_windows
    WHERE set_at = windows_at AND offer_id != ''
) AS w ON ifNull(c.original_offer_id, ifNull(c.any_offer_id, '')) = w.offer_id;

-- Every ledger entry but test events, with the day, offer and traffic it counts under: a click
-- under its own; a conversion's entry (its reversals and statuses too) under its offer, and
-- under its click's affiliate, campaign and source when the conversion is credited to the
-- click; otherwise under its own affiliate and campaign, and the source 'unattributed'. The
-- offer is always the conversion's: revenue belongs to the offer that paid it. own_currency
-- is the entry's currency when it carries money.
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
    if(l.signed_revenue != 0 OR l.signed_payout != 0, ifNull(l.currency, ''), '') AS own_currency
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
WHERE NOT l.is_test;

-- daily_stats_native (0009) over credited_entries.
CREATE OR REPLACE VIEW daily_stats_native AS
SELECT
    day,
    offer_id,
    affiliate_id,
    campaign_id,
    source,
    clicks,
    leads,
    leads_qualified,
    leads_approved,
    leads_rejected,
    sales,
    gross_revenue,
    refunds,
    refund_amount,
    chargebacks,
    chargeback_amount,
    net_revenue,
    payout,
    -- The clicks-and-leads row of several-currency traffic has no money of its own.
    if((currency = '' AND currencies > 0) OR traffic_clicks = 0, NULL, net_revenue / traffic_clicks) AS epc,
    if((currency = '' AND currencies > 0) OR traffic_clicks = 0, NULL, sales / traffic_clicks) AS conversion_rate,
    if(sales = 0, NULL, refunds / sales) AS refund_rate,
    if(sales = 0, NULL, chargebacks / sales) AS chargeback_rate,
    currency,
    traffic_clicks,
    money_entries
FROM
(
    SELECT
        *,
        sum(clicks) OVER (PARTITION BY day, offer_id, affiliate_id, campaign_id, source) AS traffic_clicks
    FROM
    (
        SELECT
            day,
            offer_id,
            affiliate_id,
            campaign_id,
            source,
            row_currency AS currency,
            any(traffic_currencies) AS currencies,
            countIf(event_name = 'CLICK') AS clicks,
            countIf(event_name = 'LEAD') AS leads,
            countIf(event_name = 'QUALIFIED_LEAD') AS leads_qualified,
            countIf(event_name = 'APPROVED_LEAD') AS leads_approved,
            countIf(event_name = 'REJECTED_LEAD') AS leads_rejected,
            countIf(event_name = 'SALE') AS sales,
            sumIf(signed_revenue, event_name = 'SALE') AS gross_revenue,
            countIf(event_name = 'REFUND') AS refunds,
            -sumIf(signed_revenue, event_name = 'REFUND') AS refund_amount,
            countIf(event_name = 'CHARGEBACK') AS chargebacks,
            -sumIf(signed_revenue, event_name = 'CHARGEBACK') AS chargeback_amount,
            sum(signed_revenue) AS net_revenue,
            sum(signed_payout) AS payout,
            countIf(own_currency != '') AS money_entries
        FROM
        (
            SELECT
                *,
                -- The currencies of the traffic's money, over all of its rows: money keeps
                -- its own currency; the rest goes with the traffic's one currency, or to ''
                -- when the traffic has none or several.
                uniqExactIf(own_currency, own_currency != '') OVER traffic AS traffic_currencies,
                anyIf(own_currency, own_currency != '') OVER traffic AS traffic_currency,
                if(own_currency != '', own_currency, if(traffic_currencies = 1, traffic_currency, '')) AS row_currency
            FROM credited_entries
            WINDOW traffic AS (PARTITION BY day, offer_id, affiliate_id, campaign_id, source)
        )
        GROUP BY day, offer_id, affiliate_id, campaign_id, source, currency
    )
);
