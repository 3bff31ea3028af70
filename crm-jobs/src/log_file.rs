//! The jobs' log files: append-only, owner-only, one line per event, timestamped in the
//! configured time zone.
//!
//! The files are the jobs' user-visible output (the contract fixes their names and line formats
//! byte for byte), and some hold customers' e-mail addresses, so they are created mode 0600 and
//! never truncated. Each batch of lines goes to the OS in one `write` on a file opened with
//! `O_APPEND`, so concurrent writers (two runners, a cron script) never interleave inside a line.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::job::JobError;

/// `YYYY-MM-DD HH:MM:SS`, the prefix of every job's lines except the heartbeat's.
const EVENT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// `DD/MM/YYYY-HH:MM:SS`, the heartbeat's prefix (as the original's django-crontab job wrote it).
const HEARTBEAT_FORMAT: &str = "%d/%m/%Y-%H:%M:%S";

/// The contract's file names, one per job; the directory is configurable, the names are not.
pub mod file_names {
    /// `clean_inactive_customers`'s log.
    pub const CUSTOMER_CLEANUP: &str = "customer_cleanup_log.txt";
    /// `send_order_reminders`'s log (holds customers' e-mail addresses).
    pub const ORDER_REMINDERS: &str = "order_reminders_log.txt";
    /// `log_crm_heartbeat`'s log.
    pub const HEARTBEAT: &str = "crm_heartbeat_log.txt";
    /// `update_low_stock`'s log.
    pub const LOW_STOCK_UPDATES: &str = "low_stock_updates_log.txt";
    /// `generate_crm_report`'s log.
    pub const CRM_REPORT: &str = "crm_report_log.txt";
}

/// One job's log file: where it is and the zone its timestamps are written in.
///
/// Opening happens on every append (a run writes a handful of lines), so a file removed or
/// rotated between runs is simply created again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    path: PathBuf,
    time_zone: Tz,
}

impl LogFile {
    /// The file `name` in `dir`, timestamps in `time_zone`. Nothing is touched on disk until
    /// the first append.
    pub fn new(dir: &Path, name: &str, time_zone: Tz) -> Self {
        Self {
            path: dir.join(name),
            time_zone,
        }
    }

    /// Where the lines go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The zone timestamps are written in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// `at` as `YYYY-MM-DD HH:MM:SS` in this file's zone.
    pub fn event_timestamp(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone)
            .format(EVENT_FORMAT)
            .to_string()
    }

    /// `at` as `DD/MM/YYYY-HH:MM:SS` in this file's zone (the heartbeat's format).
    pub fn heartbeat_timestamp(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone)
            .format(HEARTBEAT_FORMAT)
            .to_string()
    }

    /// Appends `YYYY-MM-DD HH:MM:SS - <message>` for each message, all stamped `at`, in one
    /// write. Nothing is written for an empty list.
    pub fn append_events<S: AsRef<str>>(
        &self,
        at: DateTime<Utc>,
        messages: &[S],
    ) -> Result<(), JobError> {
        let stamp = self.event_timestamp(at);
        let lines: Vec<String> = messages
            .iter()
            .map(|m| format!("{stamp} - {}", m.as_ref()))
            .collect();
        self.append_lines(&lines)
    }

    /// Appends each line, `\n`-terminated, in one `write` to a file opened for appending and
    /// created owner-only (0600). A line break inside a line is replaced by a space so that one
    /// event stays one line whatever the data holds. An empty list writes nothing (and does not
    /// create the file).
    pub fn append_lines<S: AsRef<str>>(&self, lines: &[S]) -> Result<(), JobError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.open()?.append_lines(lines)
    }

    /// Opens the file for appending now, creating it owner-only (0600) if it is missing.
    ///
    /// A job that changes data opens its log *before* the change: an unwritable log directory
    /// (read-only, missing, not a directory) then fails the run with nothing changed, instead of
    /// deleting customers and failing to say so. What can still fail after the change (a full
    /// disk) is reported by [`JobError::after_work`] with what was done.
    pub fn open(&self) -> Result<OpenLogFile, JobError> {
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&self.path)
            .map_err(|source| JobError::LogFile {
                path: self.path.clone(),
                source,
            })?;
        #[cfg(unix)]
        tighten(&file);
        Ok(OpenLogFile {
            log: self.clone(),
            file,
            buffer: String::new(),
        })
    }
}

/// A job's log file, opened for appending by [`LogFile::open`]: the lines of one run.
#[derive(Debug)]
pub struct OpenLogFile {
    log: LogFile,
    file: std::fs::File,
    /// The lines of the batch being written, kept between batches so that a run of many
    /// batches allocates it once.
    buffer: String,
}

impl OpenLogFile {
    /// Where the lines go.
    pub fn path(&self) -> &Path {
        &self.log.path
    }

    /// As [`LogFile::append_events`], to the open file.
    pub fn append_events<S: AsRef<str>>(
        &mut self,
        at: DateTime<Utc>,
        messages: &[S],
    ) -> Result<(), JobError> {
        self.append_event_messages(at, messages.iter().map(|m| -> &str { m.as_ref() }))
    }

    /// Appends `YYYY-MM-DD HH:MM:SS - <message>` for each message, all stamped `at`, in one
    /// write, formatting each message straight into the batch (no string per line): for a job
    /// that writes its lines a page at a time, however many pages. A line break inside a
    /// message is replaced by a space, as [`LogFile::append_lines`] does.
    pub fn append_event_messages<I>(
        &mut self,
        at: DateTime<Utc>,
        messages: I,
    ) -> Result<(), JobError>
    where
        I: IntoIterator,
        I::Item: std::fmt::Display,
    {
        use std::fmt::Write as _;
        let stamp = self.log.event_timestamp(at);
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        for message in messages {
            let start = buffer.len();
            // Writing to a String cannot fail.
            let _ = write!(buffer, "{stamp} - {message}");
            if buffer[start..].contains(['\n', '\r']) {
                let line = buffer.split_off(start);
                push_one_line(&mut buffer, &line);
            }
            buffer.push('\n');
        }
        let written = self.write_batch(buffer.as_bytes());
        self.buffer = buffer;
        written
    }

    /// As [`LogFile::append_lines`], to the open file (which exists already, so an empty list
    /// writes nothing more).
    pub fn append_lines<S: AsRef<str>>(&mut self, lines: &[S]) -> Result<(), JobError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        for line in lines {
            push_one_line(&mut buffer, line.as_ref());
            buffer.push('\n');
        }
        let written = self.write_batch(buffer.as_bytes());
        self.buffer = buffer;
        written
    }

    /// Writes a batch of whole lines in one `write`: with O_APPEND the kernel places it at the
    /// end as a unit, so a reader or another writer never sees half a line. A short write
    /// (disk full) is continued, and still an error if it cannot be. Nothing is written for an
    /// empty batch.
    fn write_batch(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let mut written = 0;
        while written < bytes.len() {
            let error = match self.file.write(&bytes[written..]) {
                Ok(0) => std::io::Error::from(std::io::ErrorKind::WriteZero),
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.take_back(written);
            return Err(JobError::LogFile {
                path: self.log.path.clone(),
                source: error,
            });
        }
        Ok(())
    }

    /// Removes the `written` bytes of a batch that could not be finished (a full disk took
    /// part of it) from the end of the file, so no half line is left for the next run's line to
    /// be glued to. Best effort: a line another process appended in between is at the end too.
    fn take_back(&mut self, written: usize) {
        if written == 0 {
            return;
        }
        if let Ok(len) = self.file.metadata().map(|m| m.len())
            && let Some(before) = len.checked_sub(written as u64)
        {
            let _ = self.file.set_len(before);
        }
    }
}

/// Appends `line` to `buffer` with each line break turned into a space, so that one event
/// stays one line whatever the data holds.
fn push_one_line(buffer: &mut String, line: &str) {
    buffer.extend(line.chars().map(|c| match c {
        '\n' | '\r' => ' ',
        c => c,
    }));
}

/// Makes an existing log file owner-only (0600) if it is readable or writable by others: a
/// file created earlier by another tool, or by a `touch` under umask 022, would otherwise keep
/// exposing the customers' e-mail addresses the reminders log holds. Only the file's owner
/// can change its mode; when that fails (someone else's file) the lines are still written,
/// and the failure is logged once per append.
#[cfg(unix)]
fn tighten(file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(metadata) = file.metadata() else {
        return;
    };
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0
        && let Err(error) = file.set_permissions(std::fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(%error, mode = format!("{:o}", mode & 0o777), "a job log file is readable by others and could not be made owner-only");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn event_timestamps_are_zero_padded_in_the_configured_zone() {
        let log = LogFile::new(Path::new("/tmp"), "x.txt", chrono_tz::America::New_York);
        // 07:05:09 UTC on 3 Feb is 02:05:09 in New York (EST, UTC-5).
        assert_eq!(
            log.event_timestamp(at(2026, 2, 3, 7, 5, 9)),
            "2026-02-03 02:05:09"
        );
    }

    #[test]
    fn heartbeat_timestamps_put_the_day_first() {
        let log = LogFile::new(Path::new("/tmp"), "x.txt", chrono_tz::Europe::Paris);
        // Summer time: UTC+2.
        assert_eq!(
            log.heartbeat_timestamp(at(2026, 7, 4, 22, 30, 0)),
            "05/07/2026-00:30:00"
        );
    }

    #[test]
    fn lines_are_appended_and_earlier_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        log.append_events(at(2026, 1, 1, 0, 0, 0), &["first"])
            .unwrap();
        log.append_events(at(2026, 1, 1, 0, 0, 1), &["second", "third"])
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            "2026-01-01 00:00:00 - first\n\
             2026-01-01 00:00:01 - second\n\
             2026-01-01 00:00:01 - third\n"
        );
    }

    #[test]
    fn a_line_break_in_the_data_cannot_forge_a_second_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        log.append_lines(&["evil\n2026-01-01 00:00:00 - Deleted 999 inactive customers"])
            .unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn events_formatted_into_the_batch_are_the_same_lines_as_event_strings() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        let mut open = log.open().unwrap();
        let at = at(2026, 1, 1, 8, 0, 0);
        open.append_event_messages(at, (1..=2).map(|n| format!("Reminder: order {n}")))
            .unwrap();
        open.append_event_messages(at, ["evil\r\n2026-01-01 00:00:00 - forged"])
            .unwrap();
        open.append_event_messages(at, std::iter::empty::<&str>())
            .unwrap();
        open.append_events(at, &["Reminder: order 3"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            "2026-01-01 08:00:00 - Reminder: order 1\n\
             2026-01-01 08:00:00 - Reminder: order 2\n\
             2026-01-01 08:00:00 - evil  2026-01-01 00:00:00 - forged\n\
             2026-01-01 08:00:00 - Reminder: order 3\n"
        );
    }

    #[test]
    fn an_empty_batch_does_not_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        log.append_lines::<&str>(&[]).unwrap();
        assert!(!log.path().exists());
    }

    #[test]
    fn concurrent_writers_never_interleave_inside_a_line() {
        const WRITERS: usize = 8;
        const LINES: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        let barrier = std::sync::Barrier::new(WRITERS);
        std::thread::scope(|s| {
            for writer in 0..WRITERS {
                let (log, barrier) = (&log, &barrier);
                s.spawn(move || {
                    // Long lines, so a split write would show.
                    let line = format!("{writer}").repeat(2000);
                    barrier.wait();
                    for _ in 0..LINES {
                        log.append_lines(&[&line]).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), WRITERS * LINES);
        for line in lines {
            let first = line.chars().next().unwrap();
            assert!(
                line.len() == 2000 && line.chars().all(|c| c == first),
                "a line was interleaved"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        log.append_lines(&["x"]).unwrap();
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_readable_by_others_is_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        std::fs::write(log.path(), "old line\n").unwrap();
        std::fs::set_permissions(log.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        log.append_lines(&["x"]).unwrap();
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            "old line\nx\n"
        );
    }

    #[test]
    fn a_missing_directory_is_a_log_file_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(&dir.path().join("missing"), "a.txt", Tz::UTC);
        let err = log.append_lines(&["x"]).unwrap_err();
        match &err {
            JobError::LogFile { path, .. } => assert_eq!(path, log.path()),
            other => panic!("expected a LogFile error, got {other:?}"),
        }
        assert!(err.to_string().contains("missing/a.txt"), "{err}");
    }

    #[test]
    fn a_log_opened_before_the_work_takes_the_lines_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::new(dir.path(), "a.txt", Tz::UTC);
        let mut open = log.open().unwrap();
        assert!(log.path().exists());
        open.append_events(at(2026, 1, 1, 0, 0, 0), &["done"])
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            "2026-01-01 00:00:00 - done\n"
        );
    }

    #[test]
    fn a_log_failure_after_the_work_says_what_was_done() {
        let err = JobError::LogFile {
            path: PathBuf::from("/logs/customer_cleanup_log.txt"),
            source: std::io::Error::from_raw_os_error(28),
        }
        .after_work("Deleted 3 inactive customers");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "Deleted 3 inactive customers, but cannot write log file \
                 /logs/customer_cleanup_log.txt: "
            ),
            "{text}"
        );
        // Any other error is left as it is.
        let other = JobError::Other("x".into()).after_work("done");
        assert_eq!(other.to_string(), "x");
    }
}
