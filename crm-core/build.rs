//! Lists the schema migrations from their directories (`migrations/sqlite`,
//! `migrations/postgres`), so a new migration is a new file and nothing else. Each file
//! `NNNN_description.sql` becomes one embedded migration, oldest first; see `src/database.rs`.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for backend in ["sqlite", "postgres"] {
        let dir = Path::new("migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a readable directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        let mut list = String::from("&[\n");
        let mut previous = 0;
        for path in &files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 name");
            let (version, description) = name
                .split_once('_')
                .unwrap_or_else(|| panic!("{name}.sql is not NNNN_description.sql"));
            let version: i64 = version
                .parse()
                .unwrap_or_else(|_| panic!("{name}.sql does not start with its version"));
            assert!(version > previous, "{name}.sql: version {version} twice");
            previous = version;
            let sql = std::fs::read_to_string(path).expect("a UTF-8 migration");
            let absolute = std::fs::canonicalize(path).expect("the file exists");
            writeln!(
                list,
                "    Embedded {{ version: {version}, description: {description:?}, \
                 sql: include_str!({absolute:?}), no_tx: {} }},",
                manages_its_own_transaction(&sql)
            )
            .expect("writing to a String");
        }
        list.push(']');
        std::fs::write(
            Path::new(&out).join(format!("{backend}_migrations.rs")),
            list,
        )
        .expect("OUT_DIR is writable");
    }
}

/// Whether the migration runs outside sqlx's transaction: sqlx's own marker (a first line
/// `-- no-transaction`), or a file that opens its own (`BEGIN …;` on a line of its own), as
/// SQLite's table rebuilds do (they must turn foreign keys off, which a transaction ignores).
fn manages_its_own_transaction(sql: &str) -> bool {
    sql.lines()
        .next()
        .is_some_and(|line| line.trim() == "-- no-transaction")
        || sql.lines().any(|line| {
            let line = line.trim().to_ascii_uppercase();
            line == "BEGIN;" || line.starts_with("BEGIN ") && line.ends_with(';')
        })
}
