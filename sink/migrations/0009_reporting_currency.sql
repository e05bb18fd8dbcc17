-- Amounts in one reporting currency, beside their own. `fx_rates` holds exchange rates, filled
-- by `trackctl fx import` from a CSV file or the ECB's euro reference-rate XML: `rate` is how
-- many units of `quote` one unit of `base` buys on `day`. Importing a day and pair again
-- replaces its rate (views read the latest import, so the result never waits for a merge).
CREATE TABLE IF NOT EXISTS fx_rates
(
    day Date,
    base LowCardinality(String),
    quote LowCardinality(String),
    rate Decimal(18, 10),
    source LowCardinality(String),
    imported_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (base, quote, day);

-- The sink's --reporting-currency and --fx-max-rate-age-days, written at each start; the
-- views read the latest row.
CREATE TABLE IF NOT EXISTS reporting_settings
(
    set_at DateTime64(3, 'UTC'),
    currency LowCardinality(String),
    max_rate_age_days UInt16
)
ENGINE = MergeTree
ORDER BY set_at;

-- For each day with rates and each currency they convert into the reporting currency, the
-- numerator and denominator that convert an amount: amount * numerator / denominator, in
-- decimals, never floats. A direct rate (currency -> reporting) wins over an inverse one
-- (reporting -> currency), and both over a cross rate through a base that quotes both on that
-- day (the ECB's euro); between cross rates, the base that sorts first.
CREATE OR REPLACE VIEW fx_reporting_rates AS
WITH
    (SELECT argMax(currency, set_at) FROM reporting_settings) AS rc,
    latest AS
    (
        SELECT day, base, quote, argMax(rate, imported_at) AS rate, argMax(source, imported_at) AS source
        FROM fx_rates
        GROUP BY day, base, quote
    )
SELECT
    day,
    currency,
    argMin(numerator, (priority, via)) AS numerator,
    argMin(denominator, (priority, via)) AS denominator,
    argMin(source, (priority, via)) AS source
FROM
(
    SELECT day, base AS currency, rate AS numerator, toDecimal64(1, 10) AS denominator, source, 1 AS priority, base AS via
    FROM latest
    WHERE quote = rc
    UNION ALL
    SELECT day, quote AS currency, toDecimal64(1, 10) AS numerator, rate AS denominator, source, 2 AS priority, base AS via
    FROM latest
    WHERE base = rc
    UNION ALL
    SELECT c.day AS day, c.quote AS currency, r.rate AS numerator, c.rate AS denominator, c.source AS source, 3 AS priority, c.base AS via
    FROM latest AS c
    INNER JOIN latest AS r ON c.day = r.day AND c.base = r.base
    WHERE r.quote = rc
)
WHERE currency != rc
GROUP BY day, currency;

-- daily_stats as 0008 defined it, and the count of its entries with money, under a name of
-- its own so that daily_stats can add the converted columns over it.
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
            FROM
            (
                SELECT
                    toDate(l.occurred_at) AS day,
                    coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer_id,
                    coalesce(a.click_affiliate_id, l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, '') AS affiliate_id,
                    coalesce(a.click_campaign_id, l.campaign_id, a.original_campaign_id, a.any_campaign_id, '') AS campaign_id,
                    coalesce(a.click_source, l.source, a.original_source, a.any_source, '') AS source,
                    l.event_name AS event_name,
                    l.signed_revenue AS signed_revenue,
                    l.signed_payout AS signed_payout,
                    if(l.signed_revenue != 0 OR l.signed_payout != 0, ifNull(l.currency, ''), '') AS own_currency
                FROM ledger AS l
                LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
                WHERE NOT l.is_test
            )
            WINDOW traffic AS (PARTITION BY day, offer_id, affiliate_id, campaign_id, source)
        )
        GROUP BY day, offer_id, affiliate_id, campaign_id, source, currency
    )
);

-- daily_stats with the reporting currency. Each row's money is converted at the rate of the
-- row's day, or, where that day has none (the ECB publishes none on weekends and TARGET
-- holidays), at the latest earlier rate no more than max_rate_age_days old, whose day is in
-- fx_rate_day. Without such a rate the *_rc columns are NULL and missing_rate counts the
-- row's entries with money: a missing rate is never a silent 1. A row already in the
-- reporting currency, or without money, converts at 1.
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
    if(epc IS NULL, NULL, net_revenue_rc / traffic_clicks) AS epc_rc,
    if(convertible, 0, money_entries) AS missing_rate,
    if(rated, fx_day, NULL) AS fx_rate_day
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

CREATE OR REPLACE VIEW cohort_stats_native AS
SELECT
    s.sale_day AS sale_day,
    s.network AS network,
    s.offer_id AS offer_id,
    r.currency AS currency,
    countIf(r.event_name = 'SALE') AS sales,
    sumIf(r.signed_revenue, r.event_name = 'SALE') AS gross_revenue,
    countIf(r.event_name = 'REFUND') AS refunds,
    -sumIf(r.signed_revenue, r.event_name = 'REFUND') AS refund_amount,
    countIf(r.event_name = 'CHARGEBACK') AS chargebacks,
    -sumIf(r.signed_revenue, r.event_name = 'CHARGEBACK') AS chargeback_amount,
    sum(r.signed_revenue) AS net_revenue,
    sum(r.signed_payout) AS net_payout,
    if(sales = 0, NULL, refunds / sales) AS refund_rate,
    if(sales = 0, NULL, chargebacks / sales) AS chargeback_rate,
    countIf(r.signed_revenue != 0 OR r.signed_payout != 0) AS money_entries
FROM
(
    SELECT
        l.event_name AS event_name,
        l.signed_revenue AS signed_revenue,
        l.signed_payout AS signed_payout,
        ifNull(l.currency, '') AS currency,
        if(l.event_name = 'SALE', l.event_id, ifNull(l.linked_event_id, a.sale_id)) AS cohort_sale_id
    FROM ledger AS l
    LEFT JOIN
    (
        SELECT arrayJoin(adopted_event_ids) AS reversal_id, any(event_id) AS sale_id
        FROM ledger
        WHERE event_name = 'SALE' AND notEmpty(adopted_event_ids)
        GROUP BY reversal_id
    ) AS a ON l.event_id = a.reversal_id
    WHERE NOT l.is_test AND l.event_name IN ('SALE', 'REFUND', 'CHARGEBACK')
) AS r
INNER JOIN
(
    SELECT event_id, toDate(occurred_at) AS sale_day, network, ifNull(offer_id, '') AS offer_id
    FROM ledger
    WHERE event_name = 'SALE' AND NOT is_test
) AS s ON r.cohort_sale_id = s.event_id
GROUP BY sale_day, network, offer_id, currency;

-- cohort_stats (0007) with the reporting currency, converted at the rate of the sale day by
-- the rules of daily_stats above: a cohort's refunds convert at its sale day's rate too.
CREATE OR REPLACE VIEW cohort_stats AS
WITH
    (SELECT argMax(currency, set_at) FROM reporting_settings) AS rc,
    (SELECT argMax(max_rate_age_days, set_at) FROM reporting_settings) AS max_age
SELECT
    sale_day, network, offer_id, currency,
    sales, gross_revenue, refunds, refund_amount, chargebacks, chargeback_amount,
    net_revenue, net_payout, refund_rate, chargeback_rate,
    rc AS reporting_currency,
    if(convertible, CAST(round(toDecimal256(gross_revenue, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS gross_revenue_rc,
    if(convertible, CAST(round(toDecimal256(refund_amount, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS refund_amount_rc,
    if(convertible, CAST(round(toDecimal256(chargeback_amount, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS chargeback_amount_rc,
    if(convertible, CAST(round(toDecimal256(net_revenue, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS net_revenue_rc,
    if(convertible, CAST(round(toDecimal256(net_payout, 18) * numerator / denominator, 6) AS Decimal(38, 6)), NULL) AS net_payout_rc,
    if(convertible, 0, money_entries) AS missing_rate,
    if(rated, fx_day, NULL) AS fx_rate_day
FROM
(
    SELECT
        s.*,
        fx.day AS fx_day,
        s.currency != '' AND s.currency != rc AS needs_rate,
        needs_rate AND ifNull(fx.denominator, 0) != 0 AND ifNull(dateDiff('day', fx.day, s.sale_day) <= max_age, false) AS rated,
        NOT needs_rate OR rated AS convertible,
        if(rated, fx.numerator, toDecimal64(1, 10)) AS numerator,
        if(rated, fx.denominator, toDecimal64(1, 10)) AS denominator
    FROM cohort_stats_native AS s
    ASOF LEFT JOIN fx_reporting_rates AS fx ON fx.currency = s.currency AND fx.day <= s.sale_day
);
