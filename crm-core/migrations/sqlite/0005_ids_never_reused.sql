-- Customers and orders never reuse an id (AUTOINCREMENT), as in Django's SQLite tables and
-- in PostgreSQL. Without it SQLite hands the largest id again once its row is deleted: after
-- the cleanup deleted the newest customer, the next one got its id, so a client's ID of the
-- deleted customer named someone else (an order for it went to that stranger). SQLite cannot
-- add AUTOINCREMENT to a table, so both tables are rebuilt, with foreign keys off (dropping the
-- old table would otherwise cascade), in one transaction (this migration runs outside sqlx's).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE customers_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email          TEXT    NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone          TEXT,
    created_at_us  INTEGER NOT NULL
);
INSERT INTO customers_new (id, name, email, phone, created_at_us)
SELECT id, name, email, phone, created_at_us FROM customers;
DROP TABLE customers;
ALTER TABLE customers_new RENAME TO customers;
CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));
CREATE INDEX customers_created_at_idx ON customers (created_at_us);
CREATE TABLE orders_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id         INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    total_amount_cents  INTEGER NOT NULL CHECK (total_amount_cents >= 0),
    order_date_us       INTEGER NOT NULL
);
INSERT INTO orders_new (id, customer_id, total_amount_cents, order_date_us)
SELECT id, customer_id, total_amount_cents, order_date_us FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
CREATE INDEX orders_order_date_idx ON orders (order_date_us);
CREATE INDEX orders_customer_date_idx ON orders (customer_id, order_date_us);
COMMIT;
PRAGMA foreign_keys = ON;
