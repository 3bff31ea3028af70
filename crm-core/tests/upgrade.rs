//! A database migrated by crm 0.1 opens and migrates with this code: the migrations now listed
//! by `build.rs` from their directories must keep each applied migration's version,
//! description and checksum (sqlx refuses a database whose applied migration changed), and
//! SQLite's 0005 must still run outside sqlx's transaction.
//!
//! The old database is rebuilt as crm 0.1 left it: the schema its migrations made and its
//! `_sqlx_migrations` rows, with the checksums read from a database that crm 0.1's hand-listed
//! migrations created (`crm migrate`, then `SELECT hex(checksum) FROM _sqlx_migrations`).

use crm_core::testing::TestDb;
use crm_core::{CrmStore, Database, NewCustomer};
use sqlx::Connection;

/// `(version, description, checksum)` of each migration crm 0.1 applied on SQLite.
const SQLITE_0_1: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "crm",
        include_str!("../migrations/sqlite/0001_crm.sql"),
        "27F5D932EF815CF6DE5E54363639A79FB3022B6F4695C9DA2F7177066950D58FAE9188AA82EDD63A2E4B1AACFBE1498A",
    ),
    (
        2,
        "job_runs",
        include_str!("../migrations/sqlite/0002_job_runs.sql"),
        "DC3FF823B225E700AD41AD29133FF63DAC4F630AAADC374C42373C6CC6D098498D35FE5C183E9C5AADA33E172D240517",
    ),
    (
        3,
        "job_incidents",
        include_str!("../migrations/sqlite/0003_job_incidents.sql"),
        "5490658C36AC53DF5C73925814F2D72EC3B4A0192E360EDD5424B51B299000A6A38A408D90BAA6DC6A57DAD398F6E9FE",
    ),
    (
        4,
        "job_overrides",
        include_str!("../migrations/sqlite/0004_job_overrides.sql"),
        "00433D3D39B2FAC1C222C296D477AA86E27E55B95CEE2FE4C58997CD1FF76781697341251296A6D994634B6A4FCC758B",
    ),
    (
        5,
        "ids_never_reused",
        include_str!("../migrations/sqlite/0005_ids_never_reused.sql"),
        "3D9B672222AEBA4AE067B787CF7617D4BA45599B981717B1F9EC135244CB273753E7E9B356350C84E45FA768675B2D0E",
    ),
];

/// The same for PostgreSQL.
const POSTGRES_0_1: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "crm",
        include_str!("../migrations/postgres/0001_crm.sql"),
        "EA0B33E81076BCA66827963247767CB0881FB671224B9C6AE0991E05D5465542B70998413AC110F58189807DCB3D4BCF",
    ),
    (
        2,
        "job_runs",
        include_str!("../migrations/postgres/0002_job_runs.sql"),
        "465A8996E37F8F1041483A1A7860F62D0223698C75622A8A51159AA7F71BB2B13762D737F84C7C1E2BE9D9EDBBF110F1",
    ),
    (
        3,
        "job_incidents",
        include_str!("../migrations/postgres/0003_job_incidents.sql"),
        "C9E3B1B37B37EA8875FDA4B2C9F40D45AA8DC4072D3650ACCFBC56B1000F2FF62207F800F4D36491CBFC2475DB114B34",
    ),
    (
        4,
        "job_overrides",
        include_str!("../migrations/postgres/0004_job_overrides.sql"),
        "25C7DBF6EA0CC012FEE50C45BFA9E85559713D6F2F277403144C806E7C0FE93497F64ABB519F7D45A578B36325FDAAA0",
    ),
];

/// The bookkeeping table as sqlx created it in crm 0.1 (`sqlite3 .schema _sqlx_migrations`).
const SQLITE_LEDGER: &str = "CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY, description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)";
const POSTGRES_LEDGER: &str = "CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY, description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// What a user of crm 0.1 would see: their customer still there, and new ones get new ids.
async fn opens_and_keeps_its_data(url: &str) {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("a crm 0.1 database must open: {e}"));
    db.migrate().await.expect("migrating again is a no-op");
    let kept = db.customers_by_ids(&[1]).await.unwrap();
    assert_eq!(kept.len(), 1, "the crm 0.1 customer is gone");
    assert_eq!(kept[0].email, "old@example.com");
    assert_eq!(
        db.totals().await.unwrap().customers,
        1,
        "the totals count it"
    );
    let new = db
        .create_customer(&NewCustomer::new("New", "new@example.com", None).unwrap())
        .await
        .unwrap();
    assert!(new.id > 1);
    assert_eq!(db.totals().await.unwrap().customers, 2);
    db.close().await;
}

#[async_std::test]
async fn a_sqlite_database_migrated_by_crm_0_1_opens_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::raw_sql(SQLITE_LEDGER)
        .execute(&mut conn)
        .await
        .unwrap();
    for (version, description, sql, checksum) in SQLITE_0_1 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?, ?, TRUE, ?, 1)",
        )
        .bind(version)
        .bind(description)
        .bind(unhex(checksum))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, created_at_us) \
         VALUES (1, 'Old', 'old@example.com', NULL, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    opens_and_keeps_its_data(&url).await;
}

#[async_std::test]
async fn a_postgres_database_migrated_by_crm_0_1_opens_and_migrates() {
    // A fresh database of the test server, emptied of the schema TestDb's connect made.
    let t = TestDb::postgres().await;
    let mut conn = sqlx::PgConnection::connect(t.url()).await.unwrap();
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(POSTGRES_LEDGER)
        .execute(&mut conn)
        .await
        .unwrap();
    for (version, description, sql, checksum) in POSTGRES_0_1 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ($1, $2, TRUE, $3, 1)",
        )
        .bind(version)
        .bind(description)
        .bind(unhex(checksum))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, created_at) \
         VALUES (1, 'Old', 'old@example.com', NULL, now())",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // crm 0.1 took ids from the sequence; the explicit id above did not move it.
    sqlx::query("SELECT setval('customers_id_seq', 1)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    t.database().close().await;
    opens_and_keeps_its_data(t.url()).await;
}
