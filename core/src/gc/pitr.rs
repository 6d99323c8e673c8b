//! Point-in-time recovery and the trash: a base backup plus WAL replay can bring back rows that
//! referenced objects the collector has purged since. Trash retention must cover the window a
//! backup can be restored into; this is the rule `oas_gc()` warns by.

/// With WAL archiving on and no base backup in sight, trash retention below this (seconds) is
/// taken to be shorter than the backup window: 7 days, the default `oas.gc_trash_retention`.
pub const PITR_RETENTION_FLOOR_S: f64 = 7.0 * 86_400.0;

/// What the server shows of its backups: whether WAL is archived (`archive_mode` on or always),
/// and the age in seconds of the oldest base backup it still has a history file of.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackupWindow {
    pub archiving: bool,
    pub oldest_backup_age_s: Option<f64>,
}

/// The warning for a trash retention of `retention_s` seconds, if it is too short for a
/// point-in-time recovery: shorter than the age of the oldest base backup seen, or (archiving on)
/// under [`PITR_RETENTION_FLOOR_S`].
pub fn pitr_warning(retention_s: f64, window: BackupWindow) -> Option<String> {
    if let Some(age) = window.oldest_backup_age_s {
        if retention_s < age {
            return Some(format!(
                "trash retention ({}) is shorter than the age of the oldest base backup this server \
                 shows ({}): a point-in-time recovery from it can bring back rows whose objects \
                 have been purged",
                human(retention_s),
                human(age)
            ));
        }
    }
    if window.archiving && retention_s < PITR_RETENTION_FLOOR_S {
        return Some(format!(
            "WAL is archived, and trash retention ({}) is under {}: a point-in-time recovery to a \
             moment older than that can bring back rows whose objects have been purged",
            human(retention_s),
            human(PITR_RETENTION_FLOOR_S)
        ));
    }
    None
}

/// Seconds as the largest whole unit that fits (`7 days`, `36 hours`, `90 s`).
fn human(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 2 * 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;

    #[test]
    fn a_backup_older_than_retention_warns() {
        let w = BackupWindow {
            archiving: false,
            oldest_backup_age_s: Some(10.0 * DAY),
        };
        let msg = pitr_warning(7.0 * DAY, w).unwrap();
        assert!(
            msg.contains("(7 days)") && msg.contains("(10 days)"),
            "{msg}"
        );
        assert_eq!(pitr_warning(10.0 * DAY, w), None);
        assert_eq!(pitr_warning(30.0 * DAY, w), None);
    }

    #[test]
    fn archiving_needs_the_floor() {
        let w = BackupWindow {
            archiving: true,
            oldest_backup_age_s: None,
        };
        assert!(pitr_warning(PITR_RETENTION_FLOOR_S - 1.0, w).is_some());
        assert!(pitr_warning(0.0, w).unwrap().contains("WAL is archived"));
        assert_eq!(pitr_warning(PITR_RETENTION_FLOOR_S, w), None);
        // A young backup does not lift the floor; an old one is named first.
        let young = BackupWindow {
            oldest_backup_age_s: Some(60.0),
            ..w
        };
        assert!(pitr_warning(DAY, young)
            .unwrap()
            .contains("WAL is archived"));
        let old = BackupWindow {
            oldest_backup_age_s: Some(20.0 * DAY),
            ..w
        };
        assert!(pitr_warning(DAY, old)
            .unwrap()
            .contains("oldest base backup"));
    }

    #[test]
    fn nothing_seen_nothing_said() {
        assert_eq!(pitr_warning(0.0, BackupWindow::default()), None);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(90.0), "90 s");
        assert_eq!(human(3.0 * 3_600.0), "3 hours");
        assert_eq!(human(36.0 * 3_600.0), "36 hours");
        assert_eq!(human(7.0 * DAY), "7 days");
        assert_eq!(human(300.0), "5 min");
    }
}
