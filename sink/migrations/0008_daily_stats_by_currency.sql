-- Amounts of different currencies are never added together. daily_stats keeps one row per
-- day and traffic (offer, affiliate, campaign, source) as long as that traffic's money is in
-- one currency, now named in `currency`; traffic whose money comes in several currencies gets
-- one row per currency for the money, and its clicks and leads on a row of its own with
-- currency '' (so that summing clicks over rows never counts one twice). Traffic without
-- any money has currency ''. `traffic_clicks` is the clicks of the row's day and traffic over
-- all its rows: epc and conversion_rate divide by it, so a currency row's EPC is that
-- currency's net revenue per click of its traffic. New columns come last: queries that name
-- their columns keep working.
CREATE OR REPLACE VIEW daily_stats AS
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
    traffic_clicks
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
            sum(signed_payout) AS payout
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

-- As 0004's, with the conversion's currency (its original's, else any of its entries'):
-- a conversion's amounts are in one currency.
CREATE OR REPLACE VIEW conversion_state AS
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
    max(recorded_at) AS last_recorded_at,
    ifNull(argMinIf(currency, recorded_at, event_name IN ('SALE', 'LEAD') AND currency IS NOT NULL), ifNull(any(currency), '')) AS currency
FROM ledger
WHERE event_name != 'CLICK'
GROUP BY conversion_key;
