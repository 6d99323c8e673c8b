//! Raising an [`OasError`] as a PostgreSQL error: one SQLSTATE per kind, the message, and a hint.
//!
//! | kind | SQLSTATE |
//! |---|---|
//! | invalid store spec, invalid argument or reference | 22023 invalid_parameter_value |
//! | NULL for a required argument | 22004 null_value_not_allowed |
//! | store not configured | 42704 undefined_object |
//! | store exists already | 42710 duplicate_object |
//! | no default store; catalog older than the library (collector) | 55000 object_not_in_prerequisite_state |
//! | not allowed (catalog), store refused the operation | 42501 insufficient_privilege |
//! | a write on a hot standby, in a read-only transaction or into a read-only store | 25006 read_only_sql_transaction |
//! | store rejected the credentials | 28000 invalid_authorization_specification |
//! | object missing | 58P01 undefined_file |
//! | size or hash mismatch | XX001 data_corrupted |
//! | store I/O failure | 58030 io_error |
//! | store full (no space left on its file system, quota reached) | 53100 disk_full |
//! | store request timed out | 58000 system_error |
//! | query cancelled while waiting | 57014 query_canceled |
//! | object larger than a bytea can be | 54000 program_limit_exceeded |
//! | store still referenced by rows | 2BP01 dependent_objects_still_exist |
//! | not supported (a ranged read or presigned URL of a zstd-compressed object) | 0A000 feature_not_supported |
//! | lock not had within `oas.lock_timeout` | 55P03 lock_not_available |
//! | a job's prerequisite missing (a table without a primary key) | 55000 object_not_in_prerequisite_state |
//! | a procedure that commits, called in a transaction block | 25001 active_sql_transaction |
//! | a query of pg_oas's own failed (SPI) | XX000 internal_error |

use oas_core::OasError;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgLogLevel;

pub fn sqlstate(e: &OasError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match e {
        OasError::InvalidSpec { .. } | OasError::InvalidArgument { .. } => {
            ERRCODE_INVALID_PARAMETER_VALUE
        }
        OasError::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
        OasError::StoreNotConfigured(_) => ERRCODE_UNDEFINED_OBJECT,
        OasError::StoreExists(_) => ERRCODE_DUPLICATE_OBJECT,
        OasError::NoDefaultStore | OasError::CatalogOutdated { .. } => {
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        }
        OasError::PermissionDenied { .. } | OasError::StoreForbidden { .. } => {
            ERRCODE_INSUFFICIENT_PRIVILEGE
        }
        OasError::ReadOnly { .. } => ERRCODE_READ_ONLY_SQL_TRANSACTION,
        OasError::Unauthenticated { .. } => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        OasError::ObjectMissing { .. } => ERRCODE_UNDEFINED_FILE,
        OasError::IntegrityMismatch { .. } => ERRCODE_DATA_CORRUPTED,
        OasError::Store { .. } => ERRCODE_IO_ERROR,
        OasError::StoreFull { .. } => ERRCODE_DISK_FULL,
        OasError::Timeout { .. } => ERRCODE_SYSTEM_ERROR,
        OasError::Cancelled => ERRCODE_QUERY_CANCELED,
        OasError::TooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        OasError::InUse { .. } => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        OasError::Unsupported { .. } => ERRCODE_FEATURE_NOT_SUPPORTED,
        OasError::LockTimeout { .. } => ERRCODE_LOCK_NOT_AVAILABLE,
        OasError::Prerequisite { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        OasError::TransactionBlock { .. } => ERRCODE_ACTIVE_SQL_TRANSACTION,
        OasError::Internal(_) => ERRCODE_INTERNAL_ERROR,
    }
}

/// Raise `e` as an ERROR. Does not return.
pub fn raise(e: OasError) -> ! {
    let mut report = ErrorReport::new(sqlstate(&e), e.to_string(), "pg_oas");
    if let Some(h) = e.hint() {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// `result.or_raise()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, OasError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// `spi_result.spi()?`: an SPI failure as [`OasError::Internal`], for helpers that return
/// `Result<_, OasError>`.
pub trait SpiOk<T> {
    fn spi(self) -> Result<T, OasError>;
}

impl<T> SpiOk<T> for Result<T, pgrx::spi::SpiError> {
    fn spi(self) -> Result<T, OasError> {
        self.map_err(|e| OasError::Internal(e.to_string()))
    }
}

/// An SPI failure is a bug or a broken catalog, not user input; raise it with context.
impl<T> OrRaise<T> for Result<T, pgrx::spi::SpiError> {
    fn or_raise(self) -> T {
        self.spi().or_raise()
    }
}

/// A required argument of a function that cannot be STRICT (it has optional arguments whose NULL
/// means "the default"): its value, or SQLSTATE 22004.
pub fn required<T>(value: Option<T>, name: &'static str) -> T {
    value.unwrap_or_else(|| raise(OasError::NullArgument(name)))
}
