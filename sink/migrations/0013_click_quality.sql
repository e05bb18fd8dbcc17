-- Traffic quality. Ingest flags a click BOT_USER_AGENT or DATACENTER_IP (the ledger's
-- flags). The flags that need every click of an IP, a sub-ID or an affiliate at once are
-- computed here, where all of them are whatever the partitioning, from the thresholds of the
-- sink's offers file ([quality], written at each start; 0 turns a check off):
--   FLOOD_IP         more than flood_ip_per_minute clicks of the click's IP hash in the 60
--                    seconds up to and including it
--   FLOOD_SUB_ID     the same for the click's affiliate and sub1
--   FLOOD_AFFILIATE  the same for the click's affiliate
--   DUPLICATE_CLICK  an earlier click with the same IP hash, user agent and offer at most
--                    duplicate_click_seconds before it
-- Times are the clicks' occurred_at. A flagged click stays in the ledger and in clicks, and
-- leaves EPC and conversion rate. A conversion sooner after its click than its offer's
-- min_conversion_seconds is too_fast.

CREATE TABLE IF NOT EXISTS quality_settings
(
    set_at DateTime64(3, 'UTC'),
    flood_ip_per_minute UInt32,
    flood_sub_id_per_minute UInt32,
    flood_affiliate_per_minute UInt32,
    duplicate_click_seconds UInt32
)
ENGINE = MergeTree
ORDER BY set_at;

-- The least seconds from click to conversion, per offer; offer_id '' is the default.
CREATE TABLE IF NOT EXISTS conversion_minimums
(
    set_at DateTime64(3, 'UTC'),
    offer_id String,
    min_seconds UInt32
)
ENGINE = MergeTree
ORDER BY (set_at, offer_id);

-- The latest start's thresholds, one row; windows_on says whether any view-side check is on.
CREATE OR REPLACE VIEW quality_thresholds AS
SELECT
    ifNull(any(flood_ip_per_minute), 0) AS flood_ip,
    ifNull(any(flood_sub_id_per_minute), 0) AS flood_sub_id,
    ifNull(any(flood_affiliate_per_minute), 0) AS flood_affiliate,
    ifNull(any(duplicate_click_seconds), 0) AS duplicate_seconds,
    toUInt8(flood_ip + flood_sub_id + flood_affiliate + duplicate_seconds > 0) AS windows_on
FROM quality_settings
WHERE set_at = (SELECT max(set_at) FROM quality_settings);

-- Every click but test clicks, with its quality flags (ingest's, then the view's, in the
-- order above), its score (the flags' weights summed, at most 100: a ranking aid) and
-- whether it is suspect (any flag). The windows, which sort every click four times, are
-- computed only while a view-side check is on: with every threshold at 0 the second branch
-- reads the clicks alone.
CREATE OR REPLACE VIEW click_quality AS
WITH
    (SELECT flood_ip FROM quality_thresholds) AS flood_ip,
    (SELECT flood_sub_id FROM quality_thresholds) AS flood_sub_id,
    (SELECT flood_affiliate FROM quality_thresholds) AS flood_affiliate,
    (SELECT duplicate_seconds FROM quality_thresholds) AS duplicate_seconds
SELECT
    event_id,
    -- A CLICK always has one (the contract requires it).
    ifNull(click_id, '') AS click_id,
    occurred_at,
    toDate(occurred_at) AS day,
    offer_id,
    affiliate_id,
    campaign_id,
    source,
    placement,
    sub1,
    arrayConcat(
        arrayFilter(f -> f IN ('BOT_USER_AGENT', 'DATACENTER_IP'), flags),
        if(ifNull(flood_ip, 0) > 0 AND ip_hash IS NOT NULL AND ip_clicks > flood_ip, ['FLOOD_IP'], []),
        if(ifNull(flood_sub_id, 0) > 0 AND affiliate_id IS NOT NULL AND sub1 IS NOT NULL AND sub_id_clicks > flood_sub_id, ['FLOOD_SUB_ID'], []),
        if(ifNull(flood_affiliate, 0) > 0 AND affiliate_id IS NOT NULL AND affiliate_clicks > flood_affiliate, ['FLOOD_AFFILIATE'], []),
        if(ifNull(duplicate_seconds, 0) > 0 AND ip_hash IS NOT NULL AND same_before > 1
           AND ts - previous_ts <= toInt64(duplicate_seconds) * 1000, ['DUPLICATE_CLICK'], [])
    ) AS quality_flags,
    toUInt8(least(100, arraySum(arrayMap(f -> multiIf(
        f = 'BOT_USER_AGENT', 60,
        f = 'DATACENTER_IP', 40,
        f = 'FLOOD_IP', 40,
        f = 'FLOOD_SUB_ID', 30,
        f = 'DUPLICATE_CLICK', 30,
        f = 'FLOOD_AFFILIATE', 20,
        0), quality_flags)))) AS quality_score,
    length(quality_flags) > 0 AS suspect
FROM
(
    SELECT
        event_id, click_id, occurred_at, offer_id, affiliate_id, campaign_id, source, placement,
        sub1, flags, ip_hash,
        toUnixTimestamp64Milli(occurred_at) AS ts,
        count() OVER (PARTITION BY ip_hash ORDER BY ts RANGE BETWEEN 59999 PRECEDING AND CURRENT ROW) AS ip_clicks,
        count() OVER (PARTITION BY affiliate_id, sub1 ORDER BY ts RANGE BETWEEN 59999 PRECEDING AND CURRENT ROW) AS sub_id_clicks,
        count() OVER (PARTITION BY affiliate_id ORDER BY ts RANGE BETWEEN 59999 PRECEDING AND CURRENT ROW) AS affiliate_clicks,
        row_number() OVER same_click AS same_before,
        lagInFrame(ts) OVER (same_click ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous_ts
    FROM ledger
    WHERE event_name = 'CLICK' AND NOT is_test AND (SELECT windows_on FROM quality_thresholds) = 1
    WINDOW same_click AS (PARTITION BY ip_hash, user_agent, offer_id ORDER BY ts, event_id)
    UNION ALL
    SELECT
        event_id, click_id, occurred_at, offer_id, affiliate_id, campaign_id, source, placement,
        sub1, flags, ip_hash,
        toUnixTimestamp64Milli(occurred_at) AS ts,
        toUInt64(0) AS ip_clicks,
        toUInt64(0) AS sub_id_clicks,
        toUInt64(0) AS affiliate_clicks,
        toUInt64(0) AS same_before,
        toInt64(0) AS previous_ts
    FROM ledger
    WHERE event_name = 'CLICK' AND NOT is_test AND (SELECT windows_on FROM quality_thresholds) = 0
);

-- conversion_attribution (0010) with each conversion's min_conversion_seconds and too_fast
-- (its click found, and the conversion sooner after it than that) appended.
CREATE OR REPLACE VIEW conversion_attribution AS
WITH
    (SELECT max(set_at) FROM attribution_windows) AS windows_at,
    (SELECT any(window_days) FROM attribution_windows WHERE set_at = windows_at AND offer_id = '') AS default_window_days,
    (SELECT max(set_at) FROM conversion_minimums) AS minimums_at,
    (SELECT any(min_seconds) FROM conversion_minimums WHERE set_at = minimums_at AND offer_id = '') AS default_min_seconds
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
        'click') AS attribution,
    toUInt32(if(mn.found = 1, mn.min_seconds, ifNull(default_min_seconds, 0))) AS min_conversion_seconds,
    toUInt8(k.found = 1 AND min_conversion_seconds > 0
        AND dateDiff('millisecond', k.occurred_at, c.converted_at) < toInt64(min_conversion_seconds) * 1000) AS too_fast
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
) AS w ON ifNull(c.original_offer_id, ifNull(c.any_offer_id, '')) = w.offer_id
LEFT JOIN
(
    SELECT offer_id, min_seconds, toUInt8(1) AS found
    FROM conversion_minimums
    WHERE set_at = minimums_at AND offer_id != ''
) AS mn ON ifNull(c.original_offer_id, ifNull(c.any_offer_id, '')) = mn.offer_id;

-- credited_entries (0012) with suspect (a click that click_quality flags) and too_fast (an
-- entry of a too_fast conversion) appended.
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
    l.recorded_at AS recorded_at,
    toUInt8(l.event_name = 'CLICK' AND ifNull(q.suspect, 0) = 1) AS suspect,
    toUInt8(l.event_name != 'CLICK' AND ifNull(a.too_fast, 0) = 1) AS too_fast
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
LEFT JOIN (SELECT event_id, toUInt8(suspect) AS suspect FROM click_quality WHERE suspect) AS q ON l.event_id = q.event_id
WHERE NOT l.is_test;

-- daily_stats_native (0010) over clean clicks: EPC and conversion rate divide by the
-- traffic's clicks that are not suspect. Appended: suspect_clicks, suspect_click_rate
-- (of clicks), too_fast_conversions (SALE and LEAD entries of too_fast conversions) and
-- traffic_clean_clicks.
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
    -- Suspect clicks (click_quality) count in clicks, never in EPC or conversion rate.
    if((currency = '' AND currencies > 0) OR traffic_clean_clicks = 0, NULL, net_revenue / traffic_clean_clicks) AS epc,
    if((currency = '' AND currencies > 0) OR traffic_clean_clicks = 0, NULL, sales / traffic_clean_clicks) AS conversion_rate,
    if(sales = 0, NULL, refunds / sales) AS refund_rate,
    if(sales = 0, NULL, chargebacks / sales) AS chargeback_rate,
    currency,
    traffic_clicks,
    money_entries,
    suspect_clicks,
    if(clicks = 0, NULL, suspect_clicks / clicks) AS suspect_click_rate,
    too_fast_conversions,
    traffic_clean_clicks
FROM
(
    SELECT
        *,
        sum(clicks) OVER (PARTITION BY day, offer_id, affiliate_id, campaign_id, source) AS traffic_clicks,
        sum(clicks - suspect_clicks) OVER (PARTITION BY day, offer_id, affiliate_id, campaign_id, source) AS traffic_clean_clicks
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
            countIf(own_currency != '') AS money_entries,
            countIf(event_name = 'CLICK' AND suspect = 1) AS suspect_clicks,
            countIf(event_name IN ('SALE', 'LEAD') AND too_fast = 1) AS too_fast_conversions
        FROM
        (
            SELECT
                *,
                -- The currencies of the traffic's money, over all of its rows: money keeps
                -- its own currency, the rest goes with the traffic's one currency, or to ''
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

-- daily_stats (0009), its EPC in the reporting currency over clean clicks too, with the
-- quality columns appended.
CREATE OR REPLACE VIEW daily_stats AS
WITH
    (SELECT argMax(currency, set_at) FROM reporting_settings) AS rc,
    (SELECT argMax(max_rate_age_days, set_at) FROM reporting_settings) AS max_age
SELECT
    day, offer_id, affiliate_id, campaign_id, source,
    clicks, leads, leads_qualified, leads_approved, leads_rejected,
    sales, gross_revenue, refunds, refund_amount, chargebacks, chargeback_amount,
    net_revenue, payout, epc, conversion_rate, refund_rate, chargeback_rate,
    currency, traffic_clicks,
    rc AS reporting_currency,
    if(convertible, CAST(round(toDecimal256(gross_revenue, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS gross_revenue_rc,
    if(convertible, CAST(round(toDecimal256(refund_amount, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS refund_amount_rc,
    if(convertible, CAST(round(toDecimal256(chargeback_amount, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS chargeback_amount_rc,
    if(convertible, CAST(round(toDecimal256(net_revenue, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS net_revenue_rc,
    if(convertible, CAST(round(toDecimal256(payout, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS payout_rc,
    if(epc IS NULL, NULL, net_revenue_rc / traffic_clean_clicks) AS epc_rc,
    if(convertible, 0, money_entries) AS missing_rate,
    if(rated, fx_day, NULL) AS fx_rate_day,
    suspect_clicks, suspect_click_rate, too_fast_conversions
FROM
(
    SELECT
        s.*,
        fx.day AS fx_day,
        s.currency != '' AND s.currency != rc AS needs_rate,
        needs_rate AND ifNull(fx.denominator, 0) != 0 AND ifNull(dateDiff('day', fx.day, s.day) <= max_age, false) AS rated,
        NOT needs_rate OR rated AS convertible,
        if(rated, fx.numerator, toDecimal64(1, 10)) AS numerator,
        if(rated, fx.denominator, toDecimal64(1, 10)) AS denominator
    FROM daily_stats_native AS s
    ASOF LEFT JOIN fx_reporting_rates AS fx ON fx.currency = s.currency AND fx.day <= s.day
);
