//! Settings under the reserved `oas.` prefix. None of them holds a secret: settings are visible
//! in `pg_settings` and in logs, so credentials live only in `oas.store_secret`.

use std::ffi::{CStr, CString};
use std::time::Duration;

use oas_core::backend::ClientSettings;
use oas_core::ops::PartPlan;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

// Private: code reads a setting through its typed getter below, which clamps and converts.
static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
static FILE_FSYNC: GucSetting<bool> = GucSetting::<bool>::new(true);
static VERIFY_READS: GucSetting<bool> = GucSetting::<bool>::new(true);
static NPY_MERGE_GAP: GucSetting<i32> = GucSetting::<i32>::new(-1);
static GC_GRACE_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static GC_TRASH_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static UPLOADS_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(16);
static UPLOAD_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
static READS_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(8);
static UPLOAD_PART_SIZE: GucSetting<i32> = GucSetting::<i32>::new(PartPlan::DEFAULT.size as i32);
static UPLOAD_PARTS_IN_FLIGHT: GucSetting<i32> =
    GucSetting::<i32>::new(PartPlan::DEFAULT.in_flight as i32);

pub fn init() {
    GucRegistry::define_int_guc(
        c"oas.request_timeout",
        c"Longest time one object-store request may take.",
        c"A request that takes longer is abandoned and retried (see oas.max_retries). Covers the whole transfer, so allow for the largest object.",
        &REQUEST_TIMEOUT_MS,
        100,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"oas.connect_timeout",
        c"Longest time to establish a connection to an object store.",
        c"",
        &CONNECT_TIMEOUT_MS,
        100,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"oas.max_retries",
        c"How often a failed object-store request is retried.",
        c"Retries use exponential backoff and stop when oas.request_timeout has passed since the first attempt.",
        &MAX_RETRIES,
        0,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"oas.file_fsync",
        c"fsync objects written to file stores: puts and pending values before their transaction commits, uploads in parts before the call returns.",
        c"Off trades durability of new objects after a crash of the machine for speed.",
        &FILE_FSYNC,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"oas.verify_reads",
        c"Check the MD5 content hash of every hash-addressed object read.",
        c"The size is always checked.",
        &VERIFY_READS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"oas.npy_merge_gap",
        c"Ranges of an array slice at most this far apart are fetched as one request.",
        c"-1 (the default) lets the store's cost model choose the gap for each slice; 0 fetches exactly the bytes a slice needs; a larger value reads through gaps up to that size, trading bytes for fewer requests.",
        &NPY_MERGE_GAP,
        -1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"oas.gc_grace",
        c"How long an object must have been unreferenced before oas_gc() collects it.",
        c"Counted from the first real oas_gc() run that saw it unreferenced; objects are also kept while any transaction older than that is running.",
        &GC_GRACE_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"oas.gc_trash_retention",
        c"How long collected objects stay in the trash area, restorable, before they are purged.",
        c"",
        &GC_TRASH_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"oas.lock_timeout",
        c"Longest time a write waits for pg_oas's locks before it gives up (SQLSTATE 55P03).",
        c"New references wait while a collector moves objects that share their lock stripe (milliseconds at most). A longer wait means another session holds the locks; 0 waits forever.",
        &LOCK_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"oas.uploads_in_flight",
        c"Most uploads one statement keeps in flight at once.",
        c"A statement that stores many objects (INSERT ... SELECT oas_hash_put(...), multi-row VALUES, COPY of pending values) uploads them concurrently and waits for all before it ends. 1 uploads each object before the function returns.",
        &UPLOADS_IN_FLIGHT,
        1,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"oas.upload_memory",
        c"Most bytes of uploads in flight (and of objects oas_hash_get_many fetched ahead) one backend holds in memory.",
        c"A put waits while the uploads in flight hold this much; one larger object is uploaded alone. oas_hash_get_many fetches ahead within the same bound.",
        &UPLOAD_MEMORY_KB,
        1024,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"oas.reads_in_flight",
        c"Most objects oas_hash_get_many fetches at once, ahead of the row it returns.",
        c"Each fetched object is held in memory until its row is returned.",
        &READS_IN_FLIGHT,
        1,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"oas.upload_part_size",
        c"Size of each part of an upload in parts to a cloud store.",
        c"Hash-addressed values larger than one part go to S3, Azure and GCS in parts, and so do oas_upload_part's. Each part in flight holds a buffer of this size in the backend.",
        &UPLOAD_PART_SIZE,
        PartPlan::MIN_SIZE as i32,
        1 << 30,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"oas.upload_parts_in_flight",
        c"Parts of an upload in parts sent at the same time, at most.",
        c"Memory held by an upload is about (this + 1) times oas.upload_part_size.",
        &UPLOAD_PARTS_IN_FLIGHT,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Typos such as `SET oas.request_timout` become errors instead of silent placeholders.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"oas".as_ptr()) };
}

/// `oas.uploads_in_flight`: most uploads one statement keeps in flight (1: none behind).
pub fn uploads_in_flight() -> usize {
    UPLOADS_IN_FLIGHT.get().max(1) as usize
}

/// `oas.upload_memory` in bytes: most bytes the uploads in flight (and the objects
/// `oas_hash_get_many` fetched ahead) hold.
pub fn upload_memory() -> usize {
    UPLOAD_MEMORY_KB.get().max(1024) as usize * 1024
}

/// `oas.reads_in_flight`: most objects one `oas_hash_get_many` fetches at once.
pub fn reads_in_flight() -> usize {
    READS_IN_FLIGHT.get().max(1) as usize
}

/// `oas.request_timeout`: longest time one object-store request may take.
pub fn request_timeout() -> Duration {
    millis(REQUEST_TIMEOUT_MS.get().max(1))
}

/// `oas.connect_timeout`: longest time to connect to an object store.
pub fn connect_timeout() -> Duration {
    millis(CONNECT_TIMEOUT_MS.get().max(1))
}

/// `oas.max_retries`: how often a failed request is retried.
pub fn max_retries() -> usize {
    MAX_RETRIES.get().max(0) as usize
}

/// `oas.file_fsync`: fsync objects written to file stores (puts and pending values before their
/// transaction commits, see [`crate::durability`]; uploads in parts before the call returns).
pub fn file_fsync() -> bool {
    FILE_FSYNC.get()
}

/// `oas.verify_reads`: check the MD5 content hash of every hash-addressed object read.
pub fn verify_reads() -> bool {
    VERIFY_READS.get()
}

/// `oas.npy_merge_gap`: ranges of a slice at most this many bytes apart are fetched as one;
/// `None` (-1, the default): the store's cost model chooses.
pub fn npy_merge_gap() -> Option<u64> {
    u64::try_from(NPY_MERGE_GAP.get()).ok()
}

/// `oas.gc_grace` in seconds: how long an object stays unreferenced before it is collected.
pub fn gc_grace_s() -> f64 {
    f64::from(GC_GRACE_S.get().max(0))
}

/// `oas.gc_trash_retention` in seconds: how long collected objects stay in the trash.
pub fn gc_trash_retention_s() -> f64 {
    f64::from(GC_TRASH_RETENTION_S.get().max(0))
}

/// `oas.lock_timeout` in milliseconds (0: wait forever).
pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get().max(0)
}

/// `oas.upload_part_size` and `oas.upload_parts_in_flight`: how uploads in parts are cut and paced.
pub fn part_plan() -> PartPlan {
    PartPlan::new(
        usize::try_from(UPLOAD_PART_SIZE.get()).unwrap_or(0),
        usize::try_from(UPLOAD_PARTS_IN_FLIGHT.get()).unwrap_or(0),
    )
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The client settings now in force; part of a cached client's identity.
pub fn client_settings() -> ClientSettings {
    ClientSettings {
        request_timeout: request_timeout(),
        connect_timeout: connect_timeout(),
        max_retries: max_retries(),
        file_fsync: file_fsync(),
    }
}

/// A nesting level of settings, undone when dropped (or by the abort of the transaction).
struct Level(i32);

impl Drop for Level {
    fn drop(&mut self) {
        // SAFETY: closes the level `scoped` opened, on this backend's only thread.
        unsafe { pgrx::pg_sys::AtEOXact_GUC(true, self.0) };
    }
}

/// Run `f` with PostgreSQL settings changed for its duration only, as a function's `SET` clause
/// does: `scoped(&[(c"search_path", "pg_catalog, pg_temp")], || ...)`.
pub fn scoped<R>(settings: &[(&CStr, &str)], f: impl FnOnce() -> R) -> R {
    use pgrx::pg_sys;
    // SAFETY: the save/set sequence PostgreSQL runs for a function with a SET clause
    // (fmgr_security_definer); `Level` restores the values, and so does an abort.
    let _level = unsafe {
        let level = Level(pg_sys::NewGUCNestLevel());
        for (name, value) in settings {
            let value = CString::new(*value).expect("setting values have no NUL byte");
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        level
    };
    f()
}
