-- The CRM's tables on SQLite. SQLite has no exact decimal type, so money is stored as an
-- INTEGER number of cents (sums stay exact); timestamps are INTEGER microseconds since the
-- Unix epoch, in UTC (compared and indexed as numbers).

CREATE TABLE customers (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email          TEXT    NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone          TEXT,
    created_at_us  INTEGER NOT NULL
);
-- E-mail is unique whatever its letter case (e-mails are ASCII, which lower() covers).
CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));
-- The cleanup job looks for customers older than a year.
CREATE INDEX customers_created_at_idx ON customers (created_at_us);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    price_cents  INTEGER NOT NULL CHECK (price_cents > 0),
    stock        INTEGER NOT NULL CHECK (stock >= 0)
);
-- The restock job looks for low stock.
CREATE INDEX products_stock_idx ON products (stock);

CREATE TABLE orders (
    id                  INTEGER PRIMARY KEY,
    customer_id         INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    total_amount_cents  INTEGER NOT NULL CHECK (total_amount_cents >= 0),
    order_date_us       INTEGER NOT NULL
);
-- Reminders scan a date range; cleanup asks "any recent order of this customer?".
CREATE INDEX orders_order_date_idx ON orders (order_date_us);
CREATE INDEX orders_customer_date_idx ON orders (customer_id, order_date_us);

CREATE TABLE order_products (
    order_id    INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id  INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    PRIMARY KEY (order_id, product_id)
) WITHOUT ROWID;
CREATE INDEX order_products_product_idx ON order_products (product_id);
