-- Readiness (CrmStore::ping): the cheapest statement that needs a live connection.
SELECT 1
