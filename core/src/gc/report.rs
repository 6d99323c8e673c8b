//! What a collector run reports for one store: one row of `oas_gc()` and the `report` of its
//! `oas.gc_run` record.

/// Errors kept per store and run: the first ones say what is wrong, the rest only repeat it.
pub const MAX_ERRORS: usize = 20;

/// One store's counts for one run (see `oas_gc()` in `README.md` for what each means).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub store: String,
    pub run_id: Option<i64>,
    pub referenced: i64,
    pub referenced_bytes: i64,
    pub stored: i64,
    pub stored_bytes: i64,
    pub orphaned: i64,
    pub orphaned_bytes: i64,
    pub waiting: i64,
    pub trashed: i64,
    pub trashed_bytes: i64,
    pub restored: i64,
    pub purged: i64,
    pub purged_bytes: i64,
    /// Staging files and abandoned uploads in parts removed (or, in a dry run, to remove).
    pub staging_removed: i64,
    /// Of those, uploads in parts aborted (see [`super::uploads`]).
    pub uploads_aborted: i64,
    pub skipped: i64,
    pub errors: Vec<String>,
    /// Nothing may be deleted in this store in this run.
    pub refuse: bool,
}

impl Report {
    /// An empty report for `store`.
    pub fn new(store: &str) -> Self {
        Report {
            store: store.to_string(),
            ..Report::default()
        }
    }

    /// Nothing is deleted in this store in this run, and `why` says so.
    pub fn refuse(&mut self, why: String) {
        self.refuse = true;
        self.errors.push(why);
    }

    /// Note an error that does not stop the run (a move or delete that failed), up to
    /// [`MAX_ERRORS`].
    pub fn note(&mut self, error: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        }
    }

    /// The counts as the JSON `oas.gc_run.report` keeps.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "referenced": self.referenced, "referenced_bytes": self.referenced_bytes,
            "stored": self.stored, "stored_bytes": self.stored_bytes,
            "orphaned": self.orphaned, "orphaned_bytes": self.orphaned_bytes, "waiting": self.waiting,
            "trashed": self.trashed, "trashed_bytes": self.trashed_bytes, "restored": self.restored,
            "purged": self.purged, "purged_bytes": self.purged_bytes,
            "staging_removed": self.staging_removed, "uploads_aborted": self.uploads_aborted,
            "skipped": self.skipped, "errors": self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_errors() {
        let mut r = Report::new("main");
        assert!(!r.refuse);
        for i in 0..30 {
            r.note(format!("e{i}"));
        }
        assert_eq!(r.errors.len(), MAX_ERRORS);
        r.refuse("listing failed".into());
        assert!(r.refuse);
        assert_eq!(r.errors.last().map(String::as_str), Some("listing failed"));
    }

    #[test]
    fn json_has_every_count_and_no_store() {
        let mut r = Report::new("main");
        r.trashed = 3;
        let j = r.to_json();
        assert_eq!(j["trashed"], 3);
        assert_eq!(j.as_object().unwrap().len(), 16);
        assert!(j.get("store").is_none());
    }
}
