-- Indexes that serve every sort of the three lists, so a keyset page (issue 14) seeks to its
-- position instead of scanning and sorting. Each ends with the id, the lists' tie-breaker.
-- Text sorts ignore letter case and compare code points, so the text indexes are on
-- lower(…) COLLATE "C", as the lists sort. The single-column indexes of 0001 on creation
-- time, stock and order date are replaced by these (which serve their queries too).
CREATE INDEX IF NOT EXISTS customers_name_keyset_idx ON customers ((lower(name) COLLATE "C"), id);
CREATE INDEX IF NOT EXISTS customers_email_keyset_idx ON customers ((lower(email) COLLATE "C"), id);
CREATE INDEX IF NOT EXISTS customers_created_at_keyset_idx ON customers (created_at, id);
DROP INDEX IF EXISTS customers_created_at_idx;
CREATE INDEX IF NOT EXISTS products_name_keyset_idx ON products ((lower(name) COLLATE "C"), id);
CREATE INDEX IF NOT EXISTS products_price_keyset_idx ON products (price, id);
CREATE INDEX IF NOT EXISTS products_stock_keyset_idx ON products (stock, id);
DROP INDEX IF EXISTS products_stock_idx;
CREATE INDEX IF NOT EXISTS orders_order_date_keyset_idx ON orders (order_date, id);
DROP INDEX IF EXISTS orders_order_date_idx;
CREATE INDEX IF NOT EXISTS orders_total_amount_keyset_idx ON orders (total_amount, id);
