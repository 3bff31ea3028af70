-- The totals' rows of changes folded into one (migration 0013). A row another transaction
-- adds meanwhile is left for the next fold; of two folds at once, each sums the rows it
-- deleted, and a row one deleted the other skips, so none is counted twice or lost.
WITH folded AS (
    DELETE FROM crm_totals_delta RETURNING customers, orders, revenue
)
INSERT INTO crm_totals_delta (customers, orders, revenue)
SELECT coalesce(sum(customers), 0), coalesce(sum(orders), 0), coalesce(sum(revenue), 0)
FROM folded
