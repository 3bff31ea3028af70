//! django-crontab's way: the jobs' lines in a user's crontab, managed without touching anyone
//! else's.
//!
//! Each line we write ends with a tag (`# crm-job:<code>`), the way django-crontab tags its own;
//! lines without our tag are the user's and are kept byte for byte, in place. Writing is done
//! through the real `crontab` program, which validates the whole table before installing it.

use std::io::Write as _;
use std::path::PathBuf;
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
/// cron knows only the machine's local time, so a schedule in another zone is refused rather
/// than run at the wrong hour; so is an interval that cron cannot express (every 7 minutes
/// does not divide an hour) and times of day that no single line holds.
pub fn crontab_expression(
    schedule: &crate::Schedule,
    local_zone: chrono_tz::Tz,
) -> Result<String, String> {
    if schedule.time_zone() != local_zone {
        return Err(format!(
            "its schedule is in {}, but cron runs in the machine's zone {}",
            schedule.time_zone().name(),
            local_zone.name()
        ));
    }
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
        let utc = chrono_tz::UTC;
        let expr = |s: &str| {
            crontab_expression(
                &s.parse::<crate::Schedule>().unwrap().in_time_zone(utc),
                utc,
            )
        };
        assert_eq!(expr("0 2 * * 0").unwrap(), "0 2 * * 0");
        assert_eq!(expr("every 5 minutes").unwrap(), "*/5 * * * *");
        assert_eq!(expr("every 1 minute").unwrap(), "* * * * *");
        assert_eq!(expr("at 08:00,17:00").unwrap(), "0 8,17 * * *");
        assert!(expr("every 7 minutes").is_err());
        assert!(expr("at 08:00,17:30").is_err());
        let london = "0 2 * * 0"
            .parse::<crate::Schedule>()
            .unwrap()
            .in_time_zone(chrono_tz::Europe::London);
        assert!(
            crontab_expression(&london, utc)
                .unwrap_err()
                .contains("Europe/London")
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
