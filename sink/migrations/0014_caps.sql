-- Conversion caps (docs/PROCESSOR.md, "Conversion caps"). The processor flags a conversion
-- that came past one of its caps, and every later entry of it, OVER_CAP. Such a conversion
-- stays in the ledger, but nobody pays for it: it leaves the views' counts and money and is
-- counted apart.

-- credited_entries (0013) with over_cap appended: an entry of an over-cap conversion.
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
    toUInt8(l.event_name != 'CLICK' AND ifNull(a.too_fast, 0) = 1) AS too_fast,
    toUInt8(has(l.flags, 'OVER_CAP')) AS over_cap
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
LEFT JOIN (SELECT event_id, toUInt8(suspect) AS suspect FROM click_quality WHERE suspect) AS q ON l.event_id = q.event_id
WHERE NOT l.is_test;

-- daily_stats_native (0013) without over-cap entries in any count or amount; appended:
-- over_cap_conversions (SALE and LEAD entries over a cap) and over_cap_revenue (the signed
-- revenue of every over-cap entry, reversals included, in the row's currency).
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
    traffic_clean_clicks,
    over_cap_conversions,
    over_cap_revenue
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
            countIf(event_name = 'LEAD' AND NOT over_cap) AS leads,
            countIf(event_name = 'QUALIFIED_LEAD' AND NOT over_cap) AS leads_qualified,
            countIf(event_name = 'APPROVED_LEAD' AND NOT over_cap) AS leads_approved,
            countIf(event_name = 'REJECTED_LEAD' AND NOT over_cap) AS leads_rejected,
            countIf(event_name = 'SALE' AND NOT over_cap) AS sales,
            sumIf(signed_revenue, event_name = 'SALE' AND NOT over_cap) AS gross_revenue,
            countIf(event_name = 'REFUND' AND NOT over_cap) AS refunds,
            -sumIf(signed_revenue, event_name = 'REFUND' AND NOT over_cap) AS refund_amount,
            countIf(event_name = 'CHARGEBACK' AND NOT over_cap) AS chargebacks,
            -sumIf(signed_revenue, event_name = 'CHARGEBACK' AND NOT over_cap) AS chargeback_amount,
            sumIf(signed_revenue, NOT over_cap) AS net_revenue,
            sumIf(signed_payout, NOT over_cap) AS payout,
            countIf(own_currency != '' AND NOT over_cap) AS money_entries,
            countIf(event_name = 'CLICK' AND suspect = 1) AS suspect_clicks,
            countIf(event_name IN ('SALE', 'LEAD') AND too_fast = 1 AND NOT over_cap) AS too_fast_conversions,
            countIf(event_name IN ('SALE', 'LEAD') AND over_cap) AS over_cap_conversions,
            sumIf(signed_revenue, over_cap) AS over_cap_revenue
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

-- daily_stats (0013) with the two over-cap columns appended.
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
    suspect_clicks, suspect_click_rate, too_fast_conversions,
    over_cap_conversions, over_cap_revenue
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

-- payout_stats (0011) without over-cap entries: an over-cap conversion pays nothing.
CREATE OR REPLACE VIEW payout_stats AS
SELECT
    toDate(l.occurred_at) AS day,
    coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer_id,
    coalesce(l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, '') AS affiliate_id,
    ifNull(l.currency, '') AS currency,
    l.payout_source AS payout_source,
    l.network AS network,
    replaceRegexpOne(ifNull(l.payout_rule, ''), '^clawback of ', '') AS rule,
    countIf(l.signed_payout > 0) AS payouts,
    sumIf(l.signed_payout, l.signed_payout > 0) AS paid,
    countIf(l.signed_payout < 0) AS clawbacks,
    -sumIf(l.signed_payout, l.signed_payout < 0) AS clawed_back,
    sum(l.signed_payout) AS net_payout
FROM ledger AS l
LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
WHERE NOT l.is_test AND l.payout_source != 'NONE' AND NOT has(l.flags, 'OVER_CAP')
GROUP BY day, offer_id, affiliate_id, currency, payout_source, network, rule;
