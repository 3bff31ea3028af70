-- The CRM's tables on PostgreSQL. Money is NUMERIC (exact); timestamps are TIMESTAMPTZ.

CREATE TABLE customers (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email       TEXT        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- E-mail is unique whatever its letter case.
CREATE UNIQUE INDEX customers_email_lower_key ON customers (lower(email));
-- The cleanup job looks for customers older than a year.
CREATE INDEX customers_created_at_idx ON customers (created_at);

CREATE TABLE products (
    id     BIGSERIAL PRIMARY KEY,
    name   TEXT          NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    price  NUMERIC(12, 2) NOT NULL CHECK (price > 0),
    stock  INTEGER       NOT NULL CHECK (stock >= 0)
);
-- The restock job looks for low stock.
CREATE INDEX products_stock_idx ON products (stock);

CREATE TABLE orders (
    id            BIGSERIAL PRIMARY KEY,
    customer_id   BIGINT         NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    total_amount  NUMERIC(16, 2) NOT NULL CHECK (total_amount >= 0),
    order_date    TIMESTAMPTZ    NOT NULL
);
-- Reminders scan a date range; cleanup asks "any recent order of this customer?".
CREATE INDEX orders_order_date_idx ON orders (order_date);
CREATE INDEX orders_customer_date_idx ON orders (customer_id, order_date);

CREATE TABLE order_products (
    order_id    BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id  BIGINT NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_products_product_idx ON order_products (product_id);
