//! What differs between the SQL backends, once: how an instant, an amount of money, a flag and
//! a list of ids are stored and bound, case-insensitive matching, and how a writing
//! transaction starts. The stores (`store_sql.rs`, `ledger/sql.rs`, `overrides/sql.rs`) write
//! each operation once over these names and compile it for each backend, with `use
//! crate::dialect::sqlite::*` or `use crate::dialect::postgres::*` in scope.

/// SQLite: money is INTEGER cents and instants INTEGER microseconds since the epoch (UTC), so
/// sums are exact and comparisons are on numbers; flags are 0 or 1; lists of ids are bound as
/// one JSON array expanded by `json_each`; a writing transaction takes the write lock up front.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use chrono::{DateTime, Utc};
    use sqlx::Row as _;
    use sqlx::sqlite::{SqlitePool, SqliteRow};

    use crate::domain::Money;
    use crate::error::Result;
    use crate::sql::{cents_ceil, cents_floor, contains_pattern, from_cents, from_micros};

    pub(crate) type Db = sqlx::Sqlite;
    pub(crate) type Pool = SqlitePool;
    pub(crate) type Row = SqliteRow;

    /// How a script names its first parameter.
    pub(crate) const FIRST_PARAM: &str = "?1";

    /// The text of statement `NAME`: the file `sqlite/NAME.sql` beside the store's source file
    /// (`include_str!` resolves from where the store expands its body).
    macro_rules! statement {
        ($name:literal) => {
            include_str!(concat!("sqlite/", $name, ".sql"))
        };
    }
    pub(crate) use statement;

    pub(crate) fn at(instant: DateTime<Utc>) -> i64 {
        crate::sql::to_micros(instant)
    }
    pub(crate) fn read_at(row: &Row, column: &str) -> Result<DateTime<Utc>> {
        from_micros(row.try_get(column)?)
    }
    pub(crate) fn read_opt_at(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)?
            .map(from_micros)
            .transpose()
    }
    pub(crate) fn flag(on: bool) -> i64 {
        i64::from(on)
    }
    pub(crate) fn read_flag(row: &Row, column: &str) -> Result<bool> {
        Ok(row.try_get::<i64, _>(column)? != 0)
    }
    pub(crate) fn cash(money: Money) -> i64 {
        crate::sql::to_cents(money)
    }
    /// A `>=` bound with more than two places, in whole cents (`2.505` is `251`).
    pub(crate) fn cash_ceil(money: Money) -> i64 {
        cents_ceil(money)
    }
    pub(crate) fn cash_floor(money: Money) -> i64 {
        cents_floor(money)
    }
    pub(crate) fn read_cash(row: &Row, column: &str) -> Result<Money> {
        Ok(from_cents(row.try_get(column)?))
    }
    pub(crate) fn ids(ids: &[i64]) -> String {
        crate::sql::json_ids(ids)
    }

    pub(crate) fn push_icontains(qb: &mut sqlx::QueryBuilder<Db>, column: &str, text: &str) {
        // SQLite's LIKE ignores the case of ASCII letters; lower() on both sides says so.
        qb.push(format_args!("lower({column}) LIKE lower("))
            .push_bind(contains_pattern(text))
            .push(") ESCAPE '\\'");
    }

    /// BEGIN IMMEDIATE takes the write lock up front: a concurrent writer waits on the busy
    /// timeout instead of failing when a read transaction tries to upgrade.
    pub(crate) async fn begin_write(pool: &Pool) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// PostgreSQL: money is NUMERIC (bound as exact decimals), instants TIMESTAMPTZ, flags
/// BOOLEAN; lists of ids are bound as one array (`= ANY($1)`).
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use chrono::{DateTime, Utc};
    use sqlx::Row as _;
    use sqlx::postgres::{PgPool, PgRow};

    use crate::domain::Money;
    use crate::error::Result;
    use crate::sql::contains_pattern;

    pub(crate) type Db = sqlx::Postgres;
    pub(crate) type Pool = PgPool;
    pub(crate) type Row = PgRow;

    /// How a script names its first parameter.
    pub(crate) const FIRST_PARAM: &str = "$1";

    /// The text of statement `NAME`: the file `postgres/NAME.sql` beside the store's source
    /// file (`include_str!` resolves from where the store expands its body).
    macro_rules! statement {
        ($name:literal) => {
            include_str!(concat!("postgres/", $name, ".sql"))
        };
    }
    pub(crate) use statement;

    pub(crate) fn at(instant: DateTime<Utc>) -> DateTime<Utc> {
        instant
    }
    pub(crate) fn read_at(row: &Row, column: &str) -> Result<DateTime<Utc>> {
        Ok(row.try_get(column)?)
    }
    pub(crate) fn read_opt_at(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(row.try_get(column)?)
    }
    pub(crate) fn flag(on: bool) -> bool {
        on
    }
    pub(crate) fn read_flag(row: &Row, column: &str) -> Result<bool> {
        Ok(row.try_get(column)?)
    }
    pub(crate) fn cash(money: Money) -> Money {
        money
    }
    /// NUMERIC compares exactly: a bound with more places needs no rounding.
    pub(crate) fn cash_ceil(money: Money) -> Money {
        money
    }
    pub(crate) fn cash_floor(money: Money) -> Money {
        money
    }
    /// Money as stored, shown with exactly two places.
    pub(crate) fn read_cash(row: &Row, column: &str) -> Result<Money> {
        let mut value: Money = row.try_get(column)?;
        value.rescale(2);
        Ok(value)
    }
    pub(crate) fn ids(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }

    pub(crate) fn push_icontains(qb: &mut sqlx::QueryBuilder<Db>, column: &str, text: &str) {
        qb.push(format_args!("{column} ILIKE "))
            .push_bind(contains_pattern(text))
            .push(" ESCAPE '\\'");
    }

    /// READ COMMITTED; the statements take the row locks they need (`FOR KEY SHARE`,
    /// `FOR UPDATE`).
    pub(crate) async fn begin_write(pool: &Pool) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(pool.begin().await?)
    }
}
