-- Where each entry's payout came from (ledger_entry v2): EVENT (the event's own payout: the
-- network's commission, or the producer's), RULE (a payout rule of the offers file, or the
-- clawback of what one paid), NONE. Rows loaded before this migration read as EVENT when
-- their event carried a payout, as v1 records decode.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS payout_source LowCardinality(String) DEFAULT if(payout IS NULL, 'NONE', 'EVENT') AFTER net_payout;

-- The rule that set the payout when payout_source is RULE, e.g. 'offer keto, affiliate a7:
-- cpa 30 USD' or 'clawback of offer keto: revshare 40%'.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS payout_rule Nullable(String) AFTER payout_source;

-- Payouts by day (of the entry), offer, affiliate (the conversion's own: the payee, not its
-- click's), currency, and where they came from: the network (payout_source EVENT, with its
-- `network`) or a rule (payout_source RULE, `rule` names it; a clawback counts under the rule
-- it claws back). paid is what entries added, clawed_back what reversals took back, net_payout
-- the difference. Entries without a payout of either kind are left out; test events too.
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
WHERE NOT l.is_test AND l.payout_source != 'NONE'
GROUP BY day, offer_id, affiliate_id, currency, payout_source, network, rule;
