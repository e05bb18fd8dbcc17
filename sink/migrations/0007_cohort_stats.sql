-- Net revenue by the day of the sale ("cohort"): every sale counts on the UTC day it
-- happened, and each refund and chargeback on the day of the sale it reverses, however late
-- it arrives. A reversal reverses the sale the processor linked it to (`linked_event_id`), or,
-- if it came before its sale, the sale that adopted it. A rebill is a sale of its own day.
-- Reversals without a sale (orphaned_reversals) are not in any cohort. Amounts are never
-- added across currencies: the currency is part of the key. Test events excluded.
CREATE VIEW IF NOT EXISTS cohort_stats AS
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
    if(sales = 0, NULL, chargebacks / sales) AS chargeback_rate
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
