//! In-process tests (`cargo pgrx test`). Each runs in a transaction that is rolled back, so
//! commit/abort behaviour is tested from outside clients in `tests/client/` and `tests/regress/` instead.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn content_hash_matches_datajoint() {
        assert_eq!(
            Spi::get_one::<String>("SELECT oas.oas_content_hash('hello'::bytea)")
                .unwrap()
                .unwrap(),
            "lvauakv4jmvhnolrtwiraf6fsi"
        );
    }

    #[pg_test]
    fn file_store_round_trip_and_dedup() {
        let dir = std::env::temp_dir().join(format!("oas_pgtest_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = format!(r#"{{"protocol": "file", "location": "{}"}}"#, dir.display());
        Spi::run(&format!("SELECT oas.oas_store_create('t', '{spec}', true)")).unwrap();
        let r = Spi::get_one::<pgrx::JsonB>("SELECT oas.oas_hash_put('hello'::bytea, NULL, 'lab')")
            .unwrap()
            .unwrap();
        assert_eq!(r.0["path"], "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi");
        assert_eq!(r.0["store"], "t");
        assert_eq!(r.0["size"], 5);
        // Still inside one statement (this test's), the upload may be in flight; a read waits
        // for it (`write_behind`).
        let back = Spi::get_one_with_args::<Vec<u8>>("SELECT oas.oas_hash_get($1)", &[r.into()])
            .unwrap()
            .unwrap();
        assert_eq!(back, b"hello");
        assert_eq!(
            std::fs::read(dir.join("_hash/lab/lvauakv4jmvhnolrtwiraf6fsi")).unwrap(),
            b"hello"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[pg_test(error = "store \"nope\" is not configured")]
    fn unknown_store_is_a_clear_error() {
        Spi::run("SELECT oas.oas_hash_put('x'::bytea, 'nope')").unwrap();
    }

    // Refused before the store is even looked up (privilege::require_writable).
    #[pg_test(error = "cannot write objects in a read-only transaction")]
    fn read_only_transaction_writes_no_object() {
        Spi::run("SET TRANSACTION READ ONLY").unwrap();
        Spi::run("SELECT oas.oas_hash_put('x'::bytea, 'nope')").unwrap();
    }

    #[pg_test(error = "invalid store spec: unknown key(s) for protocol \"file\": project_name")]
    fn unknown_spec_key_is_rejected() {
        Spi::run(r#"SELECT oas.oas_store_create('x', '{"protocol": "file", "location": "/tmp", "project_name": "p"}')"#).unwrap();
    }
}
