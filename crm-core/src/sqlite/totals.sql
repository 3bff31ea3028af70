-- The weekly report's figures, kept by migration 0011's triggers as rows change.
SELECT customers, orders, revenue_cents FROM crm_totals WHERE id = 1
