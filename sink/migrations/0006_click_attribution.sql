-- Conversions are credited to the traffic that brought them: a sale or lead whose click is
-- in the ledger takes that click's affiliate, campaign and source, which is what a media
-- buyer's EPC by source needs (network postbacks name the network, or nothing, as source).
-- Without its click, a conversion keeps the attribution it carries itself. The offer stays
-- the conversion's: revenue belongs to the offer that paid it.
CREATE OR REPLACE VIEW conversion_attribution AS
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
    k.source AS click_source
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
        argMinIf(click_id, recorded_at, ifNull(click_id, '') != '') AS click_id
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
        argMin(source, recorded_at) AS source
    FROM ledger
    WHERE event_name = 'CLICK' AND ifNull(click_id, '') != ''
    GROUP BY click_id
) AS k ON c.click_id = k.click_id;

-- As 0004's, with conversions under their click's affiliate, campaign and source. Clicks
-- and conversions of the same traffic now share a row, so epc and conversion_rate are
-- per traffic source.
CREATE OR REPLACE VIEW daily_stats AS
SELECT
    toDate(l.occurred_at) AS day,
    coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer_id,
    coalesce(a.click_affiliate_id, l.affiliate_id, a.original_affiliate_id, a.any_affiliate_id, '') AS affiliate_id,
    coalesce(a.click_campaign_id, l.campaign_id, a.original_campaign_id, a.any_campaign_id, '') AS campaign_id,
    coalesce(a.click_source, l.source, a.original_source, a.any_source, '') AS source,
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
