-- Indexes that serve every sort of the three lists, so a keyset page (issue 14) seeks to its
-- position instead of scanning and sorting. A SQLite index ends with the rowid (the id), which
-- is the lists' tie-breaker, so each one orders by its key and then the id. Text sorts ignore
-- letter case, so the name indexes are on lower(name) as the lists sort. Already served: e-mail
-- (customers_email_lower_key), creation time, stock and order date (0001, rebuilt by 0005).
CREATE INDEX IF NOT EXISTS customers_name_lower_idx ON customers (lower(name));
CREATE INDEX IF NOT EXISTS products_name_lower_idx ON products (lower(name));
CREATE INDEX IF NOT EXISTS products_price_idx ON products (price_cents);
CREATE INDEX IF NOT EXISTS orders_total_amount_idx ON orders (total_amount_cents);
