//! `oas_gc()` warns when trash retention is shorter than the window a point-in-time recovery can
//! restore into (the rule is `oas_core::gc::pitr_warning`).
//!
//! What PostgreSQL 15 shows of backups: `archive_mode`, and the backup history files
//! (`*.backup`) in `pg_wal`, which `pg_backup_stop()` (so also `pg_basebackup`) writes on this
//! server and which name the backup's start time. With archiving on, the newest stays there until
//! the next backup removes the archived ones; with archiving off it is removed at once. So the
//! oldest backup seen is a lower bound: older backups, backups taken elsewhere (a standby,
//! file-system snapshots, tools with their own catalog) and any backup of a server that does not
//! archive are not seen. `pg_stat_archiver` and `pg_control_checkpoint()` name no backup.

use oas_core::gc::{pitr_warning, BackupWindow};
use oas_core::OasError;
use pgrx::prelude::*;

use crate::error::SpiOk;
use crate::privilege::as_owner;

/// Warn when `retention_s` of trash is too short for a point-in-time recovery.
pub(super) fn warn_if_short(retention_s: f64) -> Result<(), OasError> {
    // Reading pg_wal needs the server's own rights; the query is pg_oas's, on no user table.
    let (archiving, age) = as_owner(|| {
        Spi::get_two::<bool, f64>(
            "SELECT pg_catalog.current_setting('archive_mode') OPERATOR(pg_catalog.<>) 'off',
                    (SELECT extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(coalesce(
                         -- START TIME, written in log_timezone; the file's time (the stop) otherwise.
                         pg_catalog.timezone(pg_catalog.current_setting('log_timezone'), pg_catalog.substring(
                             pg_catalog.pg_read_file('pg_wal/' OPERATOR(pg_catalog.||) w.name, 0, 8192, true),
                             'START TIME: ([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})')::timestamp),
                         w.modification)))::float8
                     FROM pg_catalog.pg_ls_waldir() w
                     WHERE w.name OPERATOR(pg_catalog.~) '^[0-9A-F]{24}[.][0-9A-F]{8}[.]backup$')",
        )
        .spi()
    })?;
    let window = BackupWindow {
        archiving: archiving.unwrap_or(false),
        oldest_backup_age_s: age,
    };
    if let Some(message) = pitr_warning(retention_s, window) {
        pgrx::warning!(
            "oas_gc: {message}; raise oas.gc_trash_retention to cover the oldest backup you may restore (README: Backup and restore)"
        );
    }
    Ok(())
}
