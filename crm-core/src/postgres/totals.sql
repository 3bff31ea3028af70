-- The weekly report's figures: the sum of the changes migration 0013's triggers recorded, and
-- how many rows of them there are (past a few, the reader folds them: fold_totals.sql).
SELECT coalesce(sum(customers), 0)::BIGINT AS customers,
       coalesce(sum(orders), 0)::BIGINT AS orders,
       coalesce(sum(revenue), 0) AS revenue,
       count(*) AS deltas
FROM crm_totals_delta
