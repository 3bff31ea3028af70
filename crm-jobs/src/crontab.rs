//! django-crontab's way: the jobs' lines in a user's crontab, managed without touching anyone
//! else's.
//!
//! Each line we write ends with a tag (`# crm-job:<code>`), the way django-crontab tags its own;
//! lines without our tag are the user's and are kept byte for byte, in place. Writing is done
//! through the real `crontab` program, which validates the whole table before installing it.

use std::io::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use std::process::{Command, Stdio};

/// The comment that marks a crontab line as written by `crm`, followed by the job's code.
pub const TAG: &str = "# crm-job:";

/// One job's line: when, what to run, and the job it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrontabEntry {
    /// The job's code (goes into the tag).
    pub code: String,
    /// A 5-field cron expression.
    pub schedule: String,
    /// The shell command cron runs (already quoted; see [`shell_quote`]).
    pub command: String,
}

impl CrontabEntry {
    /// The crontab line, without its newline.
    pub fn line(&self) -> String {
        format!("{} {} {TAG}{}", self.schedule, self.command, self.code)
    }
}

/// What [`merge`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The new crontab text.
    pub text: String,
    /// Codes whose line was added.
    pub added: Vec<String>,
    /// Codes whose existing line was replaced by a different one.
    pub updated: Vec<String>,
    /// Codes whose line was already exactly right.
    pub unchanged: Vec<String>,
}

/// The code in our tag, if `line` is one of ours.
pub fn our_code(line: &str) -> Option<&str> {
    let (_, code) = line.rsplit_once(TAG)?;
    let code = code.trim();
    (!code.is_empty() && !code.contains(char::is_whitespace)).then_some(code)
}

/// Our lines in `crontab`, in order.
pub fn our_lines(crontab: &str) -> Vec<&str> {
    crontab.lines().filter(|l| our_code(l).is_some()).collect()
}

/// Puts `entries` into `crontab`: a job's existing line is replaced in place, a missing one is
/// appended, and every line that is not ours stays as it was. Running it twice changes nothing.
pub fn merge(crontab: &str, entries: &[CrontabEntry]) -> MergeOutcome {
    let mut outcome = MergeOutcome::default();
    let mut lines: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for line in crontab.lines() {
        match our_code(line).and_then(|code| entries.iter().find(|e| e.code == code)) {
            Some(entry) if seen.contains(&entry.code.as_str()) => {
                // A duplicate of a line we already placed: drop it.
                continue;
            }
            Some(entry) => {
                seen.push(&entry.code);
                let wanted = entry.line();
                if line == wanted {
                    outcome.unchanged.push(entry.code.clone());
                } else {
                    outcome.updated.push(entry.code.clone());
                }
                lines.push(wanted);
            }
            None => lines.push(line.to_owned()),
        }
    }
    for entry in entries {
        if !seen.contains(&entry.code.as_str()) {
            outcome.added.push(entry.code.clone());
            lines.push(entry.line());
        }
    }
    outcome.text = join_lines(&lines);
    outcome
}

/// `crontab` without any of our lines; returns the new text and how many lines went.
pub fn remove_ours(crontab: &str) -> (String, usize) {
    let kept: Vec<String> = crontab
        .lines()
        .filter(|l| our_code(l).is_none())
        .map(str::to_owned)
        .collect();
    let removed = crontab.lines().count() - kept.len();
    (join_lines(&kept), removed)
}

fn join_lines(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// Quotes `word` for a POSIX shell (cron runs lines with `/bin/sh`), so a path or value can
/// never be read as more than one word or as shell syntax. `%` is escaped too: in a crontab
/// line an unescaped `%` ends the command.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''").replace('%', r"\%"))
    }
}

/// The one cron expression a crontab line needs for `schedule`, or why there is none.
///
/// An interval that cron cannot express (every 7 minutes does not divide an hour) and times of
/// day that no single line holds are refused. The schedule's zone is not looked at here: cron
/// knows only the zone it fires in, which [`cron_zone_mismatch`] compares.
pub fn crontab_expression(schedule: &crate::Schedule) -> Result<String, String> {
    let text = schedule.to_string();
    let spec = text.split(" in ").next().unwrap_or(&text);
    if let Some(rest) = spec.strip_prefix("every ") {
        let minutes: u32 = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("cannot read the schedule '{text}'"))?;
        return match minutes {
            1 => Ok("* * * * *".to_owned()),
            m if m < 60 && 60 % m == 0 => Ok(format!("*/{m} * * * *")),
            m => Err(format!("cron cannot run something every {m} minutes")),
        };
    }
    if let Some(rest) = spec.strip_prefix("at ") {
        let mut minutes = Vec::new();
        let mut hours = Vec::new();
        for time in rest.split(',') {
            let (h, m) = time
                .split_once(':')
                .ok_or_else(|| format!("cannot read the schedule '{text}'"))?;
            let (h, m) = (h.trim_start_matches('0'), m.trim_start_matches('0'));
            let (h, m) = (
                if h.is_empty() { "0" } else { h },
                if m.is_empty() { "0" } else { m },
            );
            if !hours.contains(&h) {
                hours.push(h);
            }
            if !minutes.contains(&m) {
                minutes.push(m);
            }
        }
        return match minutes.as_slice() {
            [m] => Ok(format!("{m} {} * * *", hours.join(","))),
            _ => Err(format!(
                "no single crontab line runs at {rest}: give the job a cron expression"
            )),
        };
    }
    Ok(spec.to_owned())
}

/// Whether two zones show the same wall-clock time at every instant of the year from `from`
/// (`Etc/UTC` and `UTC`, or `Europe/Berlin` and `Europe/Paris` in recent years): a crontab
/// line fires at the same instants in either, so they count as the same zone. Checked every
/// quarter of an hour, the finest step at which zones' offsets and transitions differ.
pub fn same_wall_clock(a: Tz, b: Tz, from: DateTime<Utc>) -> bool {
    if a == b {
        return true;
    }
    let step = chrono::Duration::minutes(15);
    let end = from + chrono::Duration::days(366);
    let mut at = from.naive_utc();
    while at < end.naive_utc() {
        if a.offset_from_utc_datetime(&at).fix() != b.offset_from_utc_datetime(&at).fix() {
            return false;
        }
        at += step;
    }
    true
}

/// The value of each `CRON_TZ=` assignment in force at our lines of `crontab`, as
/// `(code, zone name)`; `None` where no such assignment comes before the line.
///
/// cronie fires the lines after a `CRON_TZ=` line in that zone; Debian's cron ignores the
/// variable and fires every line in the machine's zone. `TZ=` lines only set the commands'
/// environment (`crm` does not read `TZ`), so they do not count.
pub fn cron_tz_at_our_lines(crontab: &str) -> Vec<(&str, Option<&str>)> {
    let mut in_force: Option<&str> = None;
    let mut found = Vec::new();
    for line in crontab.lines() {
        if let Some(code) = our_code(line) {
            found.push((code, in_force));
        } else if let Some(value) = assignment(line, "CRON_TZ") {
            in_force = (!value.is_empty()).then_some(value);
        }
    }
    found
}

/// The value of a crontab environment line `NAME = value` (quotes removed), if `line` is one.
fn assignment<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(name)?.trim_start();
    let value = rest.strip_prefix('=')?.trim();
    Some(
        ["\"", "'"]
            .iter()
            .find_map(|q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
            .unwrap_or(value),
    )
}

/// Why a job whose schedule is in `job_zone` must not get a crontab line, or `None` when cron
/// fires it at the hours the job means.
///
/// `machine_zone` is the zone the cron daemon runs in (see [`crate::machine_time_zone`]);
/// `cron_tz` is the `CRON_TZ=` in force at the line, if any (see [`cron_tz_at_our_lines`]).
/// Which of the two cron obeys depends on the cron (cronie reads `CRON_TZ`, Debian's cron does
/// not), so the job's zone must agree with both: refusing is better than a cleanup at 02:00 in
/// the log's zone that really ran at 11:00.
pub fn cron_zone_mismatch(
    job_zone: Tz,
    machine_zone: Tz,
    cron_tz: Option<&str>,
    now: DateTime<Utc>,
) -> Option<String> {
    if !same_wall_clock(job_zone, machine_zone, now) {
        return Some(format!(
            "the jobs' time zone is {}, but cron fires its lines in the machine's zone {} \
             (/etc/localtime): run `crm crontab add` with --time-zone {} (or that CRM_TIME_ZONE), \
             or set the machine's zone",
            job_zone.name(),
            machine_zone.name(),
            machine_zone.name()
        ));
    }
    let cron_tz = cron_tz?;
    match cron_tz.parse::<Tz>() {
        Ok(zone) if same_wall_clock(job_zone, zone, now) => None,
        _ => Some(format!(
            "the jobs' time zone is {}, but your crontab sets CRON_TZ={cron_tz} before the jobs' \
             lines (cronie fires them in that zone): remove that CRON_TZ line or make it {}",
            job_zone.name(),
            job_zone.name()
        )),
    }
}

/// Why reading or installing the crontab failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrontabError {
    /// The `crontab` program could not be started (not installed?).
    #[error(
        "cannot run '{program}': {source} (is cron installed? On Debian: apt-get install cron)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `crontab` ran and refused.
    #[error("'{program}' failed: {stderr}")]
    Refused {
        /// The program.
        program: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The invoking user's crontab, through the real `crontab` program.
#[derive(Debug, Clone)]
pub struct SystemCrontab {
    program: PathBuf,
}

impl Default for SystemCrontab {
    fn default() -> Self {
        Self::new("crontab")
    }
}

impl SystemCrontab {
    /// Uses `program` (normally `crontab`, found on `PATH`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    fn name(&self) -> String {
        self.program.display().to_string()
    }

    /// The current crontab; empty when the user has none yet.
    pub fn read(&self) -> Result<String, CrontabError> {
        let output = Command::new(&self.program)
            .arg("-l")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| CrontabError::Spawn {
                program: self.name(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else if stderr.contains("no crontab for") {
            Ok(String::new())
        } else {
            Err(CrontabError::Refused {
                program: self.name(),
                stderr: stderr.trim().to_owned(),
            })
        }
    }

    /// Installs `text` as the whole crontab (`crontab -`). `crontab` checks it first and
    /// installs nothing when it is invalid.
    pub fn write(&self, text: &str) -> Result<(), CrontabError> {
        let mut child = Command::new(&self.program)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CrontabError::Spawn {
                program: self.name(),
                source,
            })?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(text.as_bytes()));
        let output = child
            .wait_with_output()
            .map_err(|source| CrontabError::Spawn {
                program: self.name(),
                source,
            })?;
        if let Some(Err(source)) = written {
            return Err(CrontabError::Spawn {
                program: self.name(),
                source,
            });
        }
        if output.status.success() {
            Ok(())
        } else {
            Err(CrontabError::Refused {
                program: self.name(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: &str, schedule: &str) -> CrontabEntry {
        CrontabEntry {
            code: code.into(),
            schedule: schedule.into(),
            command: format!("/usr/bin/crm jobs run {code}"),
        }
    }

    const FOREIGN: &str =
        "# my backups\nMAILTO=me@example.com\n30 3 * * * /usr/local/bin/backup --all\n";

    #[test]
    fn adding_keeps_foreign_lines_in_place_and_appends_ours() {
        let out = merge(FOREIGN, &[entry("a", "*/5 * * * *")]);
        assert_eq!(
            out.text,
            format!("{FOREIGN}*/5 * * * * /usr/bin/crm jobs run a # crm-job:a\n")
        );
        assert_eq!(out.added, vec!["a"]);
    }

    #[test]
    fn adding_twice_adds_nothing() {
        let once = merge(
            FOREIGN,
            &[entry("a", "*/5 * * * *"), entry("b", "0 8 * * *")],
        );
        let twice = merge(
            &once.text,
            &[entry("a", "*/5 * * * *"), entry("b", "0 8 * * *")],
        );
        assert_eq!(twice.text, once.text);
        assert!(twice.added.is_empty());
        assert_eq!(twice.unchanged, vec!["a", "b"]);
    }

    #[test]
    fn a_changed_schedule_replaces_our_line_where_it_stands() {
        let once = merge(FOREIGN, &[entry("a", "*/5 * * * *")]).text;
        let user_edited = format!("{once}15 * * * * /bin/true\n");
        let out = merge(&user_edited, &[entry("a", "*/10 * * * *")]);
        assert_eq!(out.updated, vec!["a"]);
        assert_eq!(
            out.text,
            format!(
                "{FOREIGN}*/10 * * * * /usr/bin/crm jobs run a # crm-job:a\n15 * * * * /bin/true\n"
            )
        );
    }

    #[test]
    fn removing_takes_only_our_lines() {
        let ours = merge(FOREIGN, &[entry("a", "*/5 * * * *")]).text;
        let (text, removed) = remove_ours(&ours);
        assert_eq!(text, FOREIGN);
        assert_eq!(removed, 1);
        assert_eq!(remove_ours(FOREIGN), (FOREIGN.to_owned(), 0));
    }

    #[test]
    fn a_line_merely_mentioning_crm_is_not_ours() {
        assert_eq!(our_code("0 1 * * * /usr/bin/crm jobs run a"), None);
        assert_eq!(our_code("0 1 * * * x # crm-job:"), None);
        assert_eq!(our_code("0 1 * * * x # crm-job:a"), Some("a"));
    }

    #[test]
    fn schedules_become_the_crontab_expression_cron_runs() {
        let expr = |s: &str| crontab_expression(&s.parse::<crate::Schedule>().unwrap());
        assert_eq!(expr("0 2 * * 0").unwrap(), "0 2 * * 0");
        assert_eq!(expr("every 5 minutes").unwrap(), "*/5 * * * *");
        assert_eq!(expr("every 1 minute").unwrap(), "* * * * *");
        assert_eq!(expr("at 08:00,17:00").unwrap(), "0 8,17 * * *");
        assert!(expr("every 7 minutes").is_err());
        assert!(expr("at 08:00,17:30").is_err());
        assert_eq!(expr("0 2 * * 0 in Europe/London").unwrap(), "0 2 * * 0");
    }

    fn december_2026() -> DateTime<Utc> {
        "2026-12-04T17:00:00Z".parse().unwrap()
    }

    #[test]
    fn zones_with_the_same_offsets_all_year_count_as_one() {
        use chrono_tz::{America, Asia, Etc, Europe, UTC};
        let now = december_2026();
        assert!(same_wall_clock(UTC, Etc::UTC, now));
        assert!(same_wall_clock(Europe::Paris, Europe::Berlin, now));
        assert!(!same_wall_clock(UTC, Asia::Tokyo, now));
        // Same offset in winter, not in summer.
        assert!(!same_wall_clock(UTC, Europe::London, now));
        assert!(same_wall_clock(Europe::London, Europe::Lisbon, now));
        // Same standard offset, daylight saving from different days.
        assert!(!same_wall_clock(Europe::Athens, Asia::Jerusalem, now));
        assert!(!same_wall_clock(America::New_York, Etc::GMTPlus5, now));
    }

    #[test]
    fn a_job_zone_cron_does_not_fire_in_is_refused_with_both_zones_named() {
        use chrono_tz::{Asia, Etc, UTC};
        let now = december_2026();
        assert_eq!(cron_zone_mismatch(UTC, Etc::UTC, None, now), None);
        let reason = cron_zone_mismatch(Asia::Tokyo, UTC, None, now).unwrap();
        assert!(
            reason.contains("Asia/Tokyo") && reason.contains("UTC"),
            "{reason}"
        );
        // cronie would fire in Tokyo, Debian's cron in UTC: refused either way.
        assert!(cron_zone_mismatch(Asia::Tokyo, UTC, Some("Asia/Tokyo"), now).is_some());
        let reason = cron_zone_mismatch(UTC, UTC, Some("Asia/Tokyo"), now).unwrap();
        assert!(reason.contains("CRON_TZ=Asia/Tokyo"), "{reason}");
        assert!(cron_zone_mismatch(UTC, UTC, Some("Mars/Olympus"), now).is_some());
        assert_eq!(cron_zone_mismatch(UTC, UTC, Some("Etc/UTC"), now), None);
    }

    #[test]
    fn the_cron_tz_in_force_at_each_of_our_lines_is_found() {
        let text = "CRON_TZ=Asia/Tokyo\n0 1 * * * x # crm-job:a\nCRON_TZ = \"UTC\"\n\
                    0 2 * * * y # crm-job:b\nCRON_TZ=\n0 3 * * * z # crm-job:c\n\
                    TZ=Asia/Tokyo\n# CRON_TZ=Asia/Tokyo\n0 4 * * * w # crm-job:d\n";
        assert_eq!(
            cron_tz_at_our_lines(text),
            vec![
                ("a", Some("Asia/Tokyo")),
                ("b", Some("UTC")),
                ("c", None),
                ("d", None)
            ]
        );
    }

    #[test]
    fn shell_quoting_keeps_hostile_text_one_inert_word() {
        assert_eq!(shell_quote("/usr/bin/crm"), "/usr/bin/crm");
        assert_eq!(shell_quote("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("50%"), r"'50\%'");
        assert_eq!(shell_quote(""), "''");
    }
}
