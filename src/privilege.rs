//! Who may do what, and the one way pg_oas runs anything with raised privileges.
//!
//! Two rules (README, "Security model"):
//! - **Checks never run SQL.** A query resolves its operators and functions through the caller's
//!   `search_path`, where the caller may have put its own (`alice.=(name, name)` returning true).
//!   Role checks here call PostgreSQL's C functions directly.
//! - **Raised privileges run no user code.** What the caller may not do itself (read store
//!   secrets, write the catalog tables) runs in [`as_owner`]: as the extension's owner, with
//!   `search_path` pinned to `pg_catalog, pg_temp` (operators are never looked up in `pg_temp`)
//!   and as a security-restricted operation. Its queries name every table, function and operator
//!   with its schema as well.
//! - **What writes needs a transaction that may write.** Every entry point that writes objects,
//!   changes stores or moves objects to or from trash asks [`require_writable`] before it touches
//!   the store: on a hot standby, or in a read-only transaction, it refuses with 25006.

use std::ffi::CStr;

use oas_core::OasError;
use pgrx::pg_sys;

use crate::error::OrRaise;

/// The `search_path` every privileged query of pg_oas runs with.
pub const PINNED: &str = "pg_catalog, pg_temp";

/// Is the current user a superuser?
pub fn is_superuser() -> bool {
    // SAFETY: reads the current user's role from the syscache.
    unsafe { pg_sys::superuser() }
}

/// Does the current user have the privileges of `role` (`pg_has_role(role, 'USAGE')`)? False
/// for a role that does not exist.
pub fn has_privs_of(role: &CStr) -> bool {
    // SAFETY: plain catalog lookups by name and oid.
    unsafe {
        let oid = pg_sys::get_role_oid(role.as_ptr(), true);
        oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid)
    }
}

/// The current user's name, as `current_user` shows it.
pub fn current_user_name() -> String {
    // SAFETY: the name of an existing role (the current user), copied at once.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// Run `f` with `search_path` pinned to `pg_catalog, pg_temp`, as the current user.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    crate::guc::scoped(&[(c"search_path", PINNED)], f)
}

/// The role that owns the extension (it installed it; a superuser). Looked up once per backend
/// and installation of the extension (keyed by the extension's oid, which a re-install changes).
fn extension_owner() -> Result<pg_sys::Oid, OasError> {
    thread_local! {
        static OWNER: std::cell::Cell<(pg_sys::Oid, pg_sys::Oid)> =
            const { std::cell::Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
    }
    // SAFETY: an index lookup of pg_extension by name.
    let ext = unsafe { pg_sys::get_extension_oid(c"pg_oas".as_ptr(), true) };
    if ext == pg_sys::InvalidOid {
        return Err(OasError::invalid_argument(
            "pg_oas is not installed in this database",
        ));
    }
    let (cached_ext, cached_owner) = OWNER.get();
    if cached_ext == ext {
        return Ok(cached_owner);
    }
    let owner = pinned(|| {
        crate::spi::read_one::<pg_sys::Oid>(
            "SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.oid OPERATOR(pg_catalog.=) $1",
            &[ext.into()],
        )
        .or_raise()
    })
    .ok_or_else(|| OasError::invalid_argument("pg_oas is not installed in this database"))?;
    OWNER.set((ext, owner));
    Ok(owner)
}

/// Run `f` as the extension's owner, with `search_path` pinned and as a security-restricted
/// operation. `f` must run only queries pg_oas wrote, on pg_oas's own tables: nothing in it may
/// evaluate a user's function, operator, cast, policy or trigger. The caller's identity is
/// restored afterwards, also when `f` raises (and PostgreSQL restores it on abort regardless).
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner().or_raise();
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the identity saved below, on this backend's only thread.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    pinned(|| {
        let mut uid = pg_sys::Oid::INVALID;
        let mut ctx: i32 = 0;
        // SAFETY: the save/switch of the current user SECURITY DEFINER functions make.
        let _restore = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
            pg_sys::SetUserIdAndSecContext(
                owner,
                ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            Restore(uid, ctx)
        };
        f()
    })
}

/// Not on a hot standby: what only a primary does (writing, and the collector, whose horizon
/// is the primary's running transactions and whose claim on a location a standby shares).
pub fn require_primary(what: &str) -> Result<(), OasError> {
    // SAFETY: reads shared-memory state, as PostgreSQL's own checks do.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err(read_only(
            format!("cannot {what} on a hot standby"),
            "run it on the primary: a standby reads objects but never writes, moves or deletes them, and collects nothing (README, \"Replicas, standbys and the collector\")",
        ));
    }
    Ok(())
}

/// May this transaction write objects, change stores or collect? Not on a hot standby (the
/// primary's rows and collector records arrive by replay; an object written or moved here would
/// be one no row of the primary knows), and not in a read-only transaction
/// (`SET TRANSACTION READ ONLY`, `default_transaction_read_only`): its rows cannot reference what
/// it would write. Asked before any request to the store; `what` names the action.
pub fn require_writable(what: &str) -> Result<(), OasError> {
    require_primary(what)?;
    // SAFETY: reads the transaction's state, as PostgreSQL's own check does.
    if unsafe { pg_sys::XactReadOnly } {
        return Err(read_only(
            format!("cannot {what} in a read-only transaction"),
            "run it in a read-write transaction (SET TRANSACTION READ WRITE, or default_transaction_read_only = off)",
        ));
    }
    Ok(())
}

fn read_only(message: String, hint: &str) -> OasError {
    OasError::ReadOnly {
        message,
        hint: Some(hint.into()),
    }
}

fn denied(message: String, hint: &str) -> OasError {
    OasError::PermissionDenied {
        message,
        hint: Some(hint.into()),
    }
}

/// Is the current user one of `grantees` (role oids; 0 is PUBLIC), or has it the privileges of
/// one? A grant to a role dropped since matches nobody. The one home of the rule for
/// `oas.store_grant`.
pub fn holds_grant(grantees: &[i64]) -> bool {
    // SAFETY: membership lookups in the syscache; an oid no role has is simply not a member.
    let me = unsafe { pg_sys::GetUserId() };
    grantees
        .iter()
        .any(|&g| g == 0 || unsafe { pg_sys::has_privs_of_role(me, pg_sys::Oid::from(g as u32)) })
}

/// Superusers and members of `oas_admin` administer every store: they need no per-store grant.
pub fn is_store_admin() -> bool {
    has_privs_of(c"oas_admin")
}

/// Creating, changing and dropping stores is for superusers and members of `oas_admin`; a `file`
/// store reads and writes server files, so it also needs `pg_read_server_files` and
/// `pg_write_server_files` (superusers have both).
/// It also needs a transaction that may write ([`require_writable`]).
pub fn require_store_admin(action: &str, file_store: bool) -> Result<(), OasError> {
    require_writable(action)?;
    if !has_privs_of(c"oas_admin") {
        return Err(denied(
            format!("permission denied to {action}"),
            "only superusers and members of role oas_admin manage stores: GRANT oas_admin TO <role>",
        ));
    }
    if file_store
        && !(has_privs_of(c"pg_read_server_files") && has_privs_of(c"pg_write_server_files"))
    {
        return Err(denied(
            format!("permission denied to {action}: a file store reads and writes files on the database server"),
            "it also needs GRANT pg_read_server_files, pg_write_server_files TO <role>",
        ));
    }
    Ok(())
}

/// Collecting garbage moves and deletes objects of every table: superusers, or members of
/// `oas_admin` that also see every running transaction (`pg_read_all_stats`).
pub fn require_collector() -> Result<(), OasError> {
    if is_superuser() || (has_privs_of(c"oas_admin") && has_privs_of(c"pg_read_all_stats")) {
        return Ok(());
    }
    Err(denied(
        "permission denied to collect garbage".into(),
        "oas_gc needs a superuser, or a member of oas_admin and pg_read_all_stats (to see every running transaction) with SELECT on every tracked table",
    ))
}

/// Writing into schema `schema`'s section of a store (`_hash/{schema}/...`) needs USAGE on the
/// PostgreSQL schema of that name, as inserting into its tables does: otherwise any role could
/// plant bytes (an MD5 collision, say) where another schema's rows will find them.
/// Superusers may write any section.
pub fn require_schema_usage(schema: &str) -> Result<(), OasError> {
    if is_superuser() {
        return Ok(());
    }
    let c = std::ffi::CString::new(schema)
        .map_err(|_| OasError::invalid_argument("a schema name has no NUL byte"))?;
    // SAFETY: catalog lookups by name and oid.
    let ok = unsafe {
        let nsp = pg_sys::get_namespace_oid(c.as_ptr(), true);
        nsp != pg_sys::InvalidOid
            && pg_sys::pg_namespace_aclcheck(nsp, pg_sys::GetUserId(), pg_sys::ACL_USAGE as _)
                == pg_sys::AclResult::ACLCHECK_OK
    };
    if ok {
        return Ok(());
    }
    Err(denied(
        format!("permission denied to write objects for schema \"{schema}\""),
        "objects of a schema are written by roles with USAGE on the PostgreSQL schema of that name (which must exist in this database): GRANT USAGE ON SCHEMA ... TO <role>",
    ))
}

/// Writing objects at a table's paths needs INSERT or UPDATE on the table.
pub fn require_table_write(rel: pg_sys::Oid, label: &str) -> Result<(), OasError> {
    // SAFETY: an ACL check of an existing relation.
    let ok = unsafe {
        pg_sys::pg_class_aclcheck(
            rel,
            pg_sys::GetUserId(),
            (pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE) as _,
        ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if ok {
        return Ok(());
    }
    Err(denied(
        format!("permission denied to write objects for table {label}"),
        "uploads into a table's object paths need INSERT or UPDATE on the table",
    ))
}
