//! When a job is due: a cron expression, every N minutes, or at given times of day, in an IANA
//! time zone.
//!
//! A [`Schedule`] is a pure value: [`Schedule::next_after`] and
//! [`Schedule::latest_at_or_before`] read no clock and touch no storage, so they are tested over
//! years of ticks in microseconds. Daylight saving time follows Vixie cron: a fixed time of day
//! that does not exist on the day the clocks go forward runs once, right after the change; one
//! that occurs twice when they go back runs once (at its first occurrence); interval and wildcard
//! schedules follow the wall clock (a repeated hour is run again, a skipped one is skipped).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{DateTime, LocalResult, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The environment variable naming the time zone of schedules that do not set their own.
pub const TIME_ZONE_ENV: &str = "CRM_TIME_ZONE";

/// The variable most Unix programs (`date`, `ls`, cron's jobs, Python, …) take their zone from:
/// the C library's `TZ`. Read after [`TIME_ZONE_ENV`], before the machine's zone.
pub const TZ_ENV: &str = "TZ";

/// Why a schedule could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression is not a valid 5-field expression.
    #[error("invalid cron expression '{expr}': {reason}")]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What the parser objected to.
        reason: String,
    },
    /// An interval of zero minutes would never advance.
    #[error("an interval must be at least 1 minute")]
    ZeroInterval,
    /// A time of day is not `HH:MM` with hours 00-23 and minutes 00-59.
    #[error("invalid time of day '{0}': expected HH:MM between 00:00 and 23:59")]
    InvalidTimeOfDay(String),
    /// `at_times` was given no time at all.
    #[error("at least one time of day is needed")]
    NoTimes,
    /// The name is not an IANA time zone (e.g. `Europe/London`).
    #[error("unknown time zone '{0}': expected an IANA name such as Europe/London or UTC")]
    UnknownTimeZone(String),
}

/// When a job is due, in a time zone.
///
/// Built with [`Schedule::cron`], [`Schedule::every_minutes`] or [`Schedule::at_times`], and
/// placed in a zone with [`Schedule::in_time_zone`]. A schedule without an explicit zone uses
/// [`default_time_zone`] (the runner may give it another with [`Schedule::or_time_zone`]).
///
/// Its text form (`Display` / `FromStr`) is what the command line shows and accepts:
/// `0 2 * * 0`, `every 5 minutes`, `at 08:00,17:30`, each optionally followed by
/// ` in Europe/London`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use crm_jobs::Schedule;
///
/// let sundays = Schedule::cron("0 2 * * 0")?.in_time_zone(chrono_tz::Europe::London);
/// let after = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap(); // a Thursday
/// assert_eq!(
///     sundays.next_after(after),
///     Some(Utc.with_ymd_and_hms(2026, 11, 29, 2, 0, 0).unwrap())
/// );
/// assert_eq!(sundays.to_string(), "0 2 * * 0 in Europe/London");
/// assert_eq!(sundays.to_string().parse::<Schedule>()?, sundays);
/// # Ok::<(), crm_jobs::ScheduleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    zone: Option<Tz>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A 5-field cron expression, kept as written (whitespace normalised) for display.
    Cron { expr: String, cron: Box<Cron> },
    /// Every N minutes of wall-clock time, counted from 1970-01-01 00:00 local time.
    EveryMinutes(u32),
    /// At these times of day, each a fixed-time cron pattern (`M H * * *`), sorted, distinct.
    AtTimes(Vec<(NaiveTime, Cron)>),
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.zone == other.zone
            && match (&self.kind, &other.kind) {
                (Kind::Cron { expr: a, .. }, Kind::Cron { expr: b, .. }) => a == b,
                (Kind::EveryMinutes(a), Kind::EveryMinutes(b)) => a == b,
                (Kind::AtTimes(a), Kind::AtTimes(b)) => {
                    a.iter().map(|(t, _)| t).eq(b.iter().map(|(t, _)| t))
                }
                _ => false,
            }
    }
}

impl Eq for Schedule {}

/// More than the largest change of a zone's UTC offset at one transition: 24 hours, when
/// Kwajalein (1993) and Samoa (2011) skipped a day; Antarctica/Vostok went back 7 hours in
/// 1994. Searching this far either side of a wall-clock time finds every instant that shows
/// it. It costs a wider scan only near a change of offset (`steady_offset`).
const MAX_OFFSET_SHIFT: TimeDelta = TimeDelta::hours(25);

impl Schedule {
    /// A standard 5-field cron expression (minute hour day-of-month month day-of-week), as in a
    /// crontab: `0 2 * * 0` is Sunday at 02:00. Names (`MON`, `JAN`), ranges, lists and steps are
    /// accepted, as are the `@daily`-style nicknames; seconds and years are not.
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        let normalised = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expr: expr.to_owned(),
            reason,
        };
        if !normalised.starts_with('@') && normalised.split(' ').count() != 5 {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                normalised.split(' ').filter(|f| !f.is_empty()).count()
            )));
        }
        // croner takes an empty list item (`1,,2`, or a field that is just `,`) as matching
        // nothing, which Vixie cron refuses and no one means (found by the property tests of
        // issue 8): a field of `,` would never fire.
        const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
        if !normalised.starts_with('@') {
            for (name, field) in FIELDS.iter().zip(normalised.split(' ')) {
                if field.split(',').any(str::is_empty) {
                    return Err(invalid(format!(
                        "the {name} field '{field}' has an empty list item"
                    )));
                }
            }
        }
        let cron = parse_cron(&normalised).map_err(invalid)?;
        Ok(Self {
            kind: Kind::Cron {
                expr: normalised,
                cron: Box::new(cron),
            },
            zone: None,
        })
    }

    /// Every `minutes` minutes (django-cron's `RUN_EVERY_MINS`), on the wall clock: multiples of
    /// `minutes` counted from 1970-01-01 00:00 local time, so every 5 minutes falls on :00, :05,
    /// …, and every 1440 minutes at local midnight.
    pub fn every_minutes(minutes: u32) -> Result<Self, ScheduleError> {
        if minutes == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        Ok(Self {
            kind: Kind::EveryMinutes(minutes),
            zone: None,
        })
    }

    /// Every day at each of these local times (django-cron's `RUN_AT_TIMES`), written `HH:MM`.
    pub fn at_times(times: &[&str]) -> Result<Self, ScheduleError> {
        if times.is_empty() {
            return Err(ScheduleError::NoTimes);
        }
        let mut parsed = times
            .iter()
            .map(|t| parse_time_of_day(t))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        let kind = Kind::AtTimes(
            parsed
                .into_iter()
                .map(|t| {
                    let pattern = format!("{} {} * * *", t.minute(), t.hour());
                    let cron =
                        parse_cron(&pattern).map_err(|reason| ScheduleError::InvalidCron {
                            expr: pattern.clone(),
                            reason,
                        })?;
                    Ok((t, cron))
                })
                .collect::<Result<_, ScheduleError>>()?,
        );
        Ok(Self { kind, zone: None })
    }

    /// This schedule, evaluated in `zone`.
    pub fn in_time_zone(mut self, zone: Tz) -> Self {
        self.zone = Some(zone);
        self
    }

    /// This schedule, in `zone` unless it already names its own.
    pub fn or_time_zone(mut self, zone: Tz) -> Self {
        self.zone.get_or_insert(zone);
        self
    }

    /// The zone set with [`Schedule::in_time_zone`], if any.
    pub fn explicit_time_zone(&self) -> Option<Tz> {
        self.zone
    }

    /// The zone this schedule is evaluated in: its own, or else [`default_time_zone`] (UTC if
    /// that is misconfigured; the runner refuses to start then, so no job runs at a wrong hour).
    pub fn time_zone(&self) -> Tz {
        self.zone
            .unwrap_or_else(|| default_time_zone().unwrap_or(Tz::UTC))
    }

    /// The first tick strictly after `instant`, or `None` if there is none (a cron expression
    /// that can never match, such as `0 0 30 2 *`).
    pub fn next_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.nearest_tick(instant, Direction::Next)
    }

    /// The latest tick at or before `instant`, or `None` if there is none.
    pub fn latest_at_or_before(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.nearest_tick(instant, Direction::Previous)
    }

    /// The tick nearest `instant` in `direction`: strictly after it, or at or before it.
    fn nearest_tick(&self, instant: DateTime<Utc>, direction: Direction) -> Option<DateTime<Utc>> {
        let zone = self.time_zone();
        let instant = whole_second(instant);
        let from_cron = |cron: &Cron| match direction {
            Direction::Next => cron_next(cron, zone, instant),
            Direction::Previous => cron_previous(cron, zone, instant),
        };
        let found = match &self.kind {
            Kind::Cron { cron, .. } => from_cron(cron),
            Kind::EveryMinutes(n) => match direction {
                Direction::Next => every_next(*n, zone, instant),
                Direction::Previous => every_previous(*n, zone, instant),
            },
            Kind::AtTimes(times) => {
                let ticks = times.iter().filter_map(|(_, cron)| from_cron(cron));
                match direction {
                    Direction::Next => ticks.min(),
                    Direction::Previous => ticks.max(),
                }
            }
        };
        found.filter(|t| match direction {
            Direction::Next => *t > instant,
            Direction::Previous => *t <= instant,
        })
    }

    /// The ticks in `(after, until]`, oldest first.
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let next = self.next_after(cursor)?;
            if next > until {
                return None;
            }
            cursor = next;
            Some(next)
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Cron { expr, .. } => f.write_str(expr)?,
            Kind::EveryMinutes(1) => f.write_str("every 1 minute")?,
            Kind::EveryMinutes(n) => write!(f, "every {n} minutes")?,
            Kind::AtTimes(times) => {
                f.write_str("at ")?;
                for (i, (t, _)) in times.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", t.format("%H:%M"))?;
                }
            }
        }
        if let Some(zone) = self.zone {
            write!(f, " in {}", zone.name())?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses the form [`Display`](fmt::Display) writes: `0 2 * * 0`, `every 5 minutes`,
    /// `at 08:00,17:30`, each optionally followed by ` in <IANA zone>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (spec, zone) = match s.rsplit_once(" in ") {
            Some((spec, zone)) => (spec.trim(), Some(parse_time_zone(zone.trim())?)),
            None => (s, None),
        };
        let schedule = if let Some(rest) = spec.strip_prefix("every ") {
            let count = rest
                .trim()
                .strip_suffix("minutes")
                .or_else(|| rest.trim().strip_suffix("minute"))
                .map(str::trim)
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| ScheduleError::InvalidCron {
                    expr: s.to_owned(),
                    reason: "expected 'every N minutes'".to_owned(),
                })?;
            Self::every_minutes(count)?
        } else if let Some(rest) = spec.strip_prefix("at ") {
            let times: Vec<&str> = rest.split(',').map(str::trim).collect();
            Self::at_times(&times)?
        } else {
            Self::cron(spec)?
        };
        Ok(match zone {
            Some(zone) => schedule.in_time_zone(zone),
            None => schedule,
        })
    }
}

/// Parses an IANA time zone name, with a clear error.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))
}

/// The zone of schedules that name none: `CRM_TIME_ZONE` if set (an error if it is not an IANA
/// name), else the zone `TZ` names, as most Unix programs read it ([`tz_variable_zone`]; an
/// error if it names none we know), else the machine's zone ([`machine_time_zone`]:
/// `/etc/localtime`, then `/etc/timezone`), else UTC.
pub fn default_time_zone() -> Result<Tz, ScheduleError> {
    let configured = std::env::var(TIME_ZONE_ENV).ok();
    let tz = std::env::var(TZ_ENV).ok();
    resolve_time_zone(configured.as_deref(), tz.as_deref(), machine_time_zone())
}

/// The IANA zone a `TZ` value names, in the forms the C library reads and people write: a name
/// (`Europe/Paris`), a name after a colon (`:Europe/Paris`), or a file in a zoneinfo directory
/// (`:/usr/share/zoneinfo/Europe/Paris`, or `:/etc/localtime`, which some distributions
/// recommend, read as the zone that link points to). Empty counts as unset (`Ok(None)`).
///
/// Anything else, such as a POSIX rule (`CET-1CEST,M3.5.0,M10.5.0/3`), is an error rather
/// than ignored: `TZ` is read because users expect the jobs to follow it, and quietly falling
/// back to another zone would run them at other hours than the ones they set.
pub fn tz_variable_zone(value: &str) -> Result<Option<Tz>, ScheduleError> {
    let value = value.trim();
    let name = value.strip_prefix(':').unwrap_or(value).trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name == "/etc/localtime" {
        return Ok(machine_time_zone());
    }
    let after_zoneinfo = |path: &str| {
        path.rfind("zoneinfo/")
            .map(|at| path[at + "zoneinfo/".len()..].to_owned())
    };
    let name = if name.starts_with('/') {
        after_zoneinfo(name)
            .or_else(|| {
                let resolved = std::fs::canonicalize(name).ok()?;
                after_zoneinfo(&resolved.to_string_lossy())
            })
            .unwrap_or_else(|| name.to_owned())
    } else {
        name.to_owned()
    };
    name.parse::<Tz>()
        .map(Some)
        .map_err(|_| ScheduleError::UnknownTimeZone(format!("TZ={value}")))
}

/// The machine's IANA zone, read once (it does not change under a running process): the zone
/// `/etc/localtime` links to, else the name in `/etc/timezone`; `None` when neither names one.
///
/// The `TZ` variable is not read here: this is the zone the machine's services (the cron daemon
/// among them) run in, whoever starts `crm`, which `crm crontab add` compares the jobs' zone
/// with. The jobs' default zone reads `TZ` first ([`default_time_zone`]).
pub fn machine_time_zone() -> Option<Tz> {
    static MACHINE: OnceLock<Option<Tz>> = OnceLock::new();
    *MACHINE.get_or_init(|| {
        iana_time_zone::get_timezone()
            .ok()
            .and_then(|name| name.parse::<Tz>().ok())
    })
}

/// [`default_time_zone`] with its inputs passed in, so it is testable without the environment.
fn resolve_time_zone(
    configured: Option<&str>,
    tz: Option<&str>,
    machine: Option<Tz>,
) -> Result<Tz, ScheduleError> {
    match configured.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => parse_time_zone(name),
        None => Ok(tz
            .map(tz_variable_zone)
            .transpose()?
            .flatten()
            .or(machine)
            .unwrap_or(Tz::UTC)),
    }
}

fn parse_cron(pattern: &str) -> Result<Cron, String> {
    // Vixie cron's `@midnight` is `@daily`; croner knows only the latter. The expression keeps
    // its own spelling for display (found by the property tests of issue 8).
    let pattern = if pattern.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        pattern
    };
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    // The parser is not known to panic, but a schedule comes from users: never let it unwind.
    match catch_unwind(|| parser.parse(pattern)) {
        Ok(Ok(cron)) => Ok(cron),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the cron parser failed on this expression".to_owned()),
    }
}

fn parse_time_of_day(text: &str) -> Result<NaiveTime, ScheduleError> {
    let invalid = || ScheduleError::InvalidTimeOfDay(text.to_owned());
    let (h, m) = text.trim().split_once(':').ok_or_else(invalid)?;
    let digits = |s: &str, max_len: usize| {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let hour = digits(h, 2).ok_or_else(invalid)?;
    let minute = digits(m, 2).filter(|_| m.len() == 2).ok_or_else(invalid)?;
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(invalid)
}

fn whole_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.with_nanosecond(0).unwrap_or(instant)
}

/// croner's forward search, in `zone`. croner has had DST panics reported; a panic or a search
/// error becomes "no tick" here rather than unwinding into the runner.
fn cron_next(cron: &Cron, zone: Tz, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    croner_search(cron, zone, instant, Direction::Next, false).or_else(|| {
        // croner gives up on a search that meets a day the zone skipped (Samoa went from
        // 29 to 31 December 2011) or, with a fixed day of the week, a gap of several hours
        // (Antarctica/Casey): no tick comes before the change, so look again from it.
        let change = offset_change(zone, instant, Direction::Next)?;
        croner_search(cron, zone, change, Direction::Next, true)
    })
}

fn cron_previous(cron: &Cron, zone: Tz, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    croner_search(cron, zone, instant, Direction::Previous, true).or_else(|| {
        let change = offset_change(zone, instant, Direction::Previous)?;
        croner_search(
            cron,
            zone,
            change - TimeDelta::seconds(1),
            Direction::Previous,
            true,
        )
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Next,
    Previous,
}

/// croner's search from `instant`'s wall time in `zone`; `None` when it fails or panics.
fn croner_search(
    cron: &Cron,
    zone: Tz,
    instant: DateTime<Utc>,
    direction: Direction,
    inclusive: bool,
) -> Option<DateTime<Utc>> {
    let local = instant.with_timezone(&zone);
    catch_unwind(AssertUnwindSafe(|| match direction {
        Direction::Next => cron.find_next_occurrence(&local, inclusive),
        Direction::Previous => cron.find_previous_occurrence(&local, inclusive),
    }))
    .ok()?
    .ok()
    .map(|t| t.with_timezone(&Utc))
}

/// The nearest instant within a year after (or at or before) `instant` at which `zone`'s
/// offset becomes (or became) the one it has from then on: the first second of the new offset.
/// Called only when croner gave up, so the half-hourly probes cost nothing in the usual case.
fn offset_change(zone: Tz, instant: DateTime<Utc>, direction: Direction) -> Option<DateTime<Utc>> {
    use chrono::Offset;
    let offset_at = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    let step = match direction {
        Direction::Next => TimeDelta::minutes(30),
        Direction::Previous => TimeDelta::minutes(-30),
    };
    let here = offset_at(instant);
    let mut near = instant;
    for _ in 0..(2 * 24 * 366) {
        let far = near.checked_add_signed(step)?;
        if offset_at(far) != here {
            // Narrow (near, far] down to the second: `near` keeps `here`, `far` does not.
            let (mut near, mut far) = (near, far);
            while (far - near).abs() > TimeDelta::seconds(1) {
                let middle = near + (far - near) / 2;
                if offset_at(middle) == here {
                    near = middle;
                } else {
                    far = middle;
                }
            }
            return Some(match direction {
                Direction::Next => far,
                Direction::Previous => near,
            });
        }
        near = far;
    }
    None
}

/// Every instant whose wall clock in `zone` shows `naive`: none in a gap, two in an overlap.
fn instants_showing(zone: Tz, naive: NaiveDateTime) -> impl Iterator<Item = DateTime<Utc>> {
    let (a, b) = match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => (Some(t), None),
        LocalResult::Ambiguous(earlier, later) => (Some(earlier), Some(later)),
        LocalResult::None => (None, None),
    };
    a.into_iter().chain(b).map(|t| t.with_timezone(&Utc))
}

/// Wall-clock minute count of `naive` since 1970-01-01 00:00.
fn wall_minutes(naive: NaiveDateTime) -> i64 {
    naive.and_utc().timestamp().div_euclid(60)
}

fn from_wall_minutes(minutes: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(minutes.checked_mul(60)?, 0).map(|t| t.naive_utc())
}

/// `zone`'s UTC offset if it stays the same from a span of `n` minutes plus the largest offset
/// shift before `instant` to as long after it, so that the tick either side is plain arithmetic.
fn steady_offset(zone: Tz, instant: DateTime<Utc>, n: i64) -> Option<TimeDelta> {
    use chrono::Offset;
    if n > 1440 {
        // Over spans of days two changes could cancel out between the probes.
        return None;
    }
    let reach = MAX_OFFSET_SHIFT.checked_add(&TimeDelta::try_minutes(n)?)?;
    let offset_at = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    let here = offset_at(instant);
    let before = offset_at(instant.checked_sub_signed(reach)?);
    let after = offset_at(instant.checked_add_signed(reach)?);
    (here == before && here == after).then(|| TimeDelta::seconds(i64::from(here.local_minus_utc())))
}

/// The first wall-clock multiple of `n` minutes whose instant is after `instant`. Candidates
/// are scanned from a little before `instant`'s wall time, since after the clocks go back a
/// later instant can show an earlier wall time.
fn every_next(n: u32, zone: Tz, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let n = i64::from(n);
    let local = instant.with_timezone(&zone).naive_local();
    if let Some(offset) = steady_offset(zone, instant, n) {
        // No change of offset nearby: wall time is instant plus a constant.
        let next = wall_minutes(local)
            .div_euclid(n)
            .checked_add(1)?
            .checked_mul(n)?;
        return Some(from_wall_minutes(next)?.and_utc() - offset);
    }
    let horizon = local.checked_add_signed(MAX_OFFSET_SHIFT)?;
    let mut k = wall_minutes(local.checked_sub_signed(MAX_OFFSET_SHIFT)?).div_euclid(n);
    let mut best: Option<DateTime<Utc>> = None;
    loop {
        let candidate = from_wall_minutes(k.checked_mul(n)?)?;
        if candidate > horizon && best.is_some() {
            return best;
        }
        for t in instants_showing(zone, candidate).filter(|t| *t > instant) {
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        k = k.checked_add(1)?;
    }
}

/// The latest wall-clock multiple of `n` minutes whose instant is at or before `instant`.
fn every_previous(n: u32, zone: Tz, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let n = i64::from(n);
    let local = instant.with_timezone(&zone).naive_local();
    if let Some(offset) = steady_offset(zone, instant, n) {
        let previous = wall_minutes(local).div_euclid(n).checked_mul(n)?;
        return Some(from_wall_minutes(previous)?.and_utc() - offset);
    }
    let horizon = local.checked_sub_signed(MAX_OFFSET_SHIFT)?;
    let mut k = wall_minutes(local.checked_add_signed(MAX_OFFSET_SHIFT)?).div_euclid(n);
    let mut best: Option<DateTime<Utc>> = None;
    loop {
        let candidate = from_wall_minutes(k.checked_mul(n)?)?;
        if candidate < horizon && best.is_some() {
            return best;
        }
        for t in instants_showing(zone, candidate).filter(|t| *t <= instant) {
            best = Some(best.map_or(t, |b| b.max(t)));
        }
        k = k.checked_sub(1)?;
    }
}

/// The five schedules of the contract's jobs, as cron expressions (used by the job files and
/// by the crontab lines, which must agree).
pub mod schedules {
    /// `clean_inactive_customers`: Sunday at 02:00.
    pub const CLEAN_INACTIVE_CUSTOMERS: &str = "0 2 * * 0";
    /// `send_order_reminders`: daily at 08:00.
    pub const SEND_ORDER_REMINDERS: &str = "0 8 * * *";
    /// `log_crm_heartbeat`: every 5 minutes.
    pub const LOG_CRM_HEARTBEAT: &str = "*/5 * * * *";
    /// `update_low_stock`: every 12 hours, at 00:00 and 12:00.
    pub const UPDATE_LOW_STOCK: &str = "0 */12 * * *";
    /// `generate_crm_report`: Monday at 06:00.
    pub const GENERATE_CRM_REPORT: &str = "0 6 * * 1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::London;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Checks next/latest agree: each tick's predecessor is the previous tick.
    fn assert_consistent(schedule: &Schedule, from: DateTime<Utc>, until: DateTime<Utc>) {
        let ticks: Vec<_> = schedule.ticks_between(from, until).collect();
        for pair in ticks.windows(2) {
            assert!(pair[0] < pair[1]);
            assert_eq!(schedule.latest_at_or_before(pair[1]), Some(pair[1]));
            assert_eq!(
                schedule.latest_at_or_before(pair[1] - TimeDelta::seconds(1)),
                Some(pair[0]),
                "{schedule}: the tick before {} should be {}",
                pair[1],
                pair[0]
            );
        }
    }

    #[test]
    fn the_contract_schedules_parse() {
        for expr in [
            schedules::CLEAN_INACTIVE_CUSTOMERS,
            schedules::SEND_ORDER_REMINDERS,
            schedules::LOG_CRM_HEARTBEAT,
            schedules::UPDATE_LOW_STOCK,
            schedules::GENERATE_CRM_REPORT,
        ] {
            assert_eq!(Schedule::cron(expr).unwrap().to_string(), expr);
        }
    }

    #[test]
    fn bad_cron_expressions_are_rejected_with_the_reason() {
        for bad in [
            "",
            "* * * *",
            "0 2 * * 0 2026",
            "61 * * * *",
            "0 25 * * *",
            "x y z a b",
            "1,,2 * * * *",
            "* * * * ,",
        ] {
            let err = Schedule::cron(bad).unwrap_err();
            assert!(
                matches!(err, ScheduleError::InvalidCron { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("invalid cron expression"));
        }
        let err = Schedule::cron("* * * *").unwrap_err().to_string();
        assert!(err.contains("expected 5 fields"), "{err}");
    }

    #[test]
    fn bad_intervals_times_and_zones_are_rejected() {
        assert_eq!(Schedule::every_minutes(0), Err(ScheduleError::ZeroInterval));
        assert_eq!(Schedule::at_times(&[]), Err(ScheduleError::NoTimes));
        for bad in ["24:00", "8", "08:60", "08:5", "ab:cd", "-1:00", "08:00:00"] {
            assert_eq!(
                Schedule::at_times(&[bad]),
                Err(ScheduleError::InvalidTimeOfDay(bad.to_owned()))
            );
        }
        assert_eq!(
            "0 2 * * 0 in Mars/Olympus".parse::<Schedule>(),
            Err(ScheduleError::UnknownTimeZone("Mars/Olympus".to_owned()))
        );
    }

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "0 2 * * 0",
            "*/5 * * * *",
            "0 6 * * 1 in America/New_York",
            "every 1 minute",
            "every 90 minutes in Europe/London",
            "at 08:00,17:30",
            "at 00:15 in UTC",
        ] {
            let schedule: Schedule = text.parse().unwrap();
            assert_eq!(schedule.to_string(), text);
            assert_eq!(schedule.to_string().parse::<Schedule>().unwrap(), schedule);
        }
        let messy: Schedule = "  0   2 * *  0 ".parse().unwrap();
        assert_eq!(messy.to_string(), "0 2 * * 0");
        let unsorted = Schedule::at_times(&["17:30", "8:00", "08:00"]).unwrap();
        assert_eq!(unsorted.to_string(), "at 08:00,17:30");
    }

    #[test]
    fn the_default_zone_is_the_configured_one_then_tzs_then_the_machines_then_utc() {
        assert_eq!(
            resolve_time_zone(Some("Europe/London"), Some("Asia/Tokyo"), Some(New_York)),
            Ok(London)
        );
        assert_eq!(
            resolve_time_zone(None, Some("Asia/Tokyo"), Some(New_York)),
            Ok(Tz::Asia__Tokyo)
        );
        assert_eq!(
            resolve_time_zone(Some("  "), Some(":Asia/Tokyo"), None),
            Ok(Tz::Asia__Tokyo)
        );
        assert_eq!(resolve_time_zone(None, None, Some(New_York)), Ok(New_York));
        assert_eq!(
            resolve_time_zone(None, Some(""), Some(New_York)),
            Ok(New_York)
        );
        assert_eq!(
            resolve_time_zone(Some("  "), None, Some(New_York)),
            Ok(New_York)
        );
        assert_eq!(resolve_time_zone(None, None, None), Ok(Tz::UTC));
        assert_eq!(
            resolve_time_zone(Some("Nowhere/Land"), None, Some(New_York)),
            Err(ScheduleError::UnknownTimeZone("Nowhere/Land".to_owned()))
        );
        assert_eq!(
            resolve_time_zone(None, Some("CET-1CEST,M3.5.0,M10.5.0/3"), Some(New_York)),
            Err(ScheduleError::UnknownTimeZone(
                "TZ=CET-1CEST,M3.5.0,M10.5.0/3".to_owned()
            ))
        );
    }

    #[test]
    fn tz_is_read_in_the_forms_the_c_library_reads() {
        for (value, zone) in [
            ("Europe/Paris", Some(Tz::Europe__Paris)),
            (":Europe/Paris", Some(Tz::Europe__Paris)),
            (" America/New_York ", Some(New_York)),
            (":/usr/share/zoneinfo/Europe/London", Some(London)),
            ("/usr/share/zoneinfo/Asia/Tokyo", Some(Tz::Asia__Tokyo)),
            ("UTC", Some(Tz::UTC)),
            ("", None),
            (":", None),
        ] {
            assert_eq!(tz_variable_zone(value), Ok(zone), "{value:?}");
        }
        for bad in ["EST+5", "Nowhere/Land", ":/nonexistent/file"] {
            assert!(tz_variable_zone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tz_pointing_at_etc_localtime_is_the_machines_zone() {
        assert_eq!(tz_variable_zone(":/etc/localtime"), Ok(machine_time_zone()));
    }

    #[test]
    fn next_after_is_strictly_after_even_on_a_tick() {
        let daily = Schedule::cron("0 8 * * *").unwrap().in_time_zone(Tz::UTC);
        let tick = utc(2026, 11, 26, 8, 0);
        assert_eq!(daily.next_after(tick), Some(utc(2026, 11, 27, 8, 0)));
        assert_eq!(
            daily.next_after(tick - TimeDelta::milliseconds(1)),
            Some(tick)
        );
        assert_eq!(
            daily.next_after(tick + TimeDelta::milliseconds(500)),
            Some(utc(2026, 11, 27, 8, 0))
        );
        assert_eq!(daily.latest_at_or_before(tick), Some(tick));
        assert_eq!(
            daily.latest_at_or_before(tick - TimeDelta::seconds(1)),
            Some(utc(2026, 11, 25, 8, 0))
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_as_in_vixie_cron() {
        // Both restricted: either matches ("the 13th, or any Friday"); October 2026 starts
        // on a Thursday, so its 13th is a Tuesday.
        let schedule = Schedule::cron("0 0 13 * 5").unwrap().in_time_zone(Tz::UTC);
        let ticks: Vec<_> = schedule
            .ticks_between(utc(2026, 10, 1, 0, 0), utc(2026, 10, 31, 0, 0))
            .collect();
        let expected: Vec<_> = [2, 9, 13, 16, 23, 30]
            .into_iter()
            .map(|d| utc(2026, 10, d, 0, 0))
            .collect();
        assert_eq!(ticks, expected);
        let schedule = Schedule::cron("0 0 1 * MON").unwrap().in_time_zone(Tz::UTC);
        let ticks: Vec<_> = schedule
            .ticks_between(utc(2026, 11, 25, 0, 0), utc(2026, 12, 8, 0, 0))
            .collect();
        assert_eq!(
            ticks,
            vec![
                utc(2026, 11, 30, 0, 0),
                utc(2026, 12, 1, 0, 0),
                utc(2026, 12, 7, 0, 0)
            ]
        );
    }

    #[test]
    fn nicknames_and_names_are_understood() {
        let daily = Schedule::cron("@daily").unwrap().in_time_zone(Tz::UTC);
        assert_eq!(
            daily.next_after(utc(2026, 6, 1, 10, 0)),
            Some(utc(2026, 6, 2, 0, 0))
        );
        let weekly = Schedule::cron("0 2 * * SUN").unwrap().in_time_zone(Tz::UTC);
        assert_eq!(
            weekly.next_after(utc(2026, 6, 1, 10, 0)),
            Some(utc(2026, 6, 7, 2, 0))
        );
        assert!(Schedule::cron("@reboot").is_err());
        let midnight = Schedule::cron("@midnight").unwrap().in_time_zone(Tz::UTC);
        assert_eq!(
            midnight.next_after(utc(2026, 6, 1, 10, 0)),
            daily.next_after(utc(2026, 6, 1, 10, 0))
        );
        assert_eq!(midnight.to_string(), "@midnight in UTC");
    }

    #[test]
    fn a_cron_schedule_runs_in_its_own_zone() {
        let report = Schedule::cron(schedules::GENERATE_CRM_REPORT)
            .unwrap()
            .in_time_zone(New_York);
        // Thursday 26 Nov 2026 -> Monday 30 Nov 06:00 EST = 11:00 UTC.
        assert_eq!(
            report.next_after(utc(2026, 11, 26, 12, 0)),
            Some(utc(2026, 11, 30, 11, 0))
        );
    }

    #[test]
    fn an_impossible_date_has_no_tick_and_does_not_hang_or_panic() {
        let never = Schedule::cron("0 0 30 2 *").unwrap().in_time_zone(Tz::UTC);
        assert_eq!(never.next_after(utc(2026, 1, 1, 0, 0)), None);
        assert_eq!(never.latest_at_or_before(utc(2026, 1, 1, 0, 0)), None);
    }

    #[test]
    fn every_n_minutes_follows_wall_clock_multiples() {
        let five = Schedule::every_minutes(5).unwrap().in_time_zone(London);
        assert_eq!(
            five.next_after(utc(2026, 6, 1, 10, 2)),
            Some(utc(2026, 6, 1, 10, 5))
        );
        let daily = Schedule::every_minutes(1440)
            .unwrap()
            .in_time_zone(New_York);
        assert_eq!(
            daily.next_after(utc(2026, 6, 1, 10, 0)),
            Some(local(New_York, 2026, 6, 2, 0, 0))
        );
        assert_eq!(
            daily.latest_at_or_before(utc(2026, 6, 1, 10, 0)),
            Some(local(New_York, 2026, 6, 1, 0, 0))
        );
    }

    #[test]
    fn at_times_runs_at_each_time_every_day() {
        let twice = Schedule::at_times(&["08:00", "17:30"])
            .unwrap()
            .in_time_zone(London);
        let ticks: Vec<_> = twice
            .ticks_between(utc(2026, 7, 1, 0, 0), utc(2026, 7, 3, 0, 0))
            .collect();
        assert_eq!(
            ticks,
            vec![
                local(London, 2026, 7, 1, 8, 0),
                local(London, 2026, 7, 1, 17, 30),
                local(London, 2026, 7, 2, 8, 0),
                local(London, 2026, 7, 2, 17, 30),
            ]
        );
    }

    // New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    // London:   2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.

    #[test]
    fn a_fixed_time_skipped_by_spring_forward_runs_once_right_after_the_change() {
        for schedule in [
            Schedule::cron("30 2 * * *").unwrap(),
            Schedule::at_times(&["02:30"]).unwrap(),
        ] {
            let schedule = schedule.in_time_zone(New_York);
            let ticks: Vec<_> = schedule
                .ticks_between(utc(2026, 3, 7, 0, 0), utc(2026, 3, 10, 0, 0))
                .collect();
            assert_eq!(
                ticks,
                vec![
                    local(New_York, 2026, 3, 7, 2, 30),
                    // 02:30 does not exist on the 8th: once, at 03:00 EDT (07:00 UTC).
                    utc(2026, 3, 8, 7, 0),
                    local(New_York, 2026, 3, 9, 2, 30),
                ],
                "{schedule}"
            );
            assert_consistent(&schedule, utc(2026, 3, 1, 0, 0), utc(2026, 3, 15, 0, 0));
        }
        let london = Schedule::cron("30 1 * * *").unwrap().in_time_zone(London);
        assert_eq!(
            london.next_after(utc(2026, 3, 28, 12, 0)),
            Some(utc(2026, 3, 29, 1, 0)), // 02:00 BST, right after the change
        );
    }

    #[test]
    fn a_fixed_time_repeated_by_fall_back_runs_once() {
        let schedule = Schedule::cron("30 1 * * *").unwrap().in_time_zone(New_York);
        let ticks: Vec<_> = schedule
            .ticks_between(utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0))
            .collect();
        assert_eq!(
            ticks,
            vec![
                utc(2026, 11, 1, 5, 30), // 01:30 EDT, the first of the two
                local(New_York, 2026, 11, 2, 1, 30),
            ]
        );
        let london = Schedule::at_times(&["01:30"]).unwrap().in_time_zone(London);
        let ticks: Vec<_> = london
            .ticks_between(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0))
            .collect();
        assert_eq!(
            ticks,
            vec![utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
        assert_consistent(&schedule, utc(2026, 10, 25, 0, 0), utc(2026, 11, 8, 0, 0));
    }

    #[test]
    fn interval_schedules_follow_the_wall_clock_across_both_changes() {
        for zone in [New_York, London] {
            for schedule in [
                Schedule::cron("*/5 * * * *").unwrap(),
                Schedule::every_minutes(5).unwrap(),
            ] {
                let schedule = schedule.in_time_zone(zone);
                // A whole year holds one 23-hour and one 25-hour day: every 5 minutes of
                // elapsed time, 365 * 288 ticks in all.
                let from = local(zone, 2026, 1, 1, 0, 0);
                let until = local(zone, 2027, 1, 1, 0, 0);
                let ticks: Vec<_> = schedule.ticks_between(from, until).collect();
                assert_eq!(ticks.len(), 365 * 288, "{schedule}");
                assert!(
                    ticks
                        .windows(2)
                        .all(|w| w[1] - w[0] == TimeDelta::minutes(5)),
                    "{schedule}: uneven gap"
                );
            }
        }
        // Hourly at :30 in New York: the 8 March gap hour has no 02:30; the 1 November overlap
        // runs 01:30 twice.
        let hourly = Schedule::cron("30 * * * *").unwrap().in_time_zone(New_York);
        let spring: Vec<_> = hourly
            .ticks_between(utc(2026, 3, 8, 5, 0), utc(2026, 3, 8, 8, 0))
            .collect();
        assert_eq!(
            spring,
            // 00:30 EST, 01:30 EST, 03:30 EDT
            vec![
                utc(2026, 3, 8, 5, 30),
                utc(2026, 3, 8, 6, 30),
                utc(2026, 3, 8, 7, 30)
            ]
        );
        let fall: Vec<_> = hourly
            .ticks_between(utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 8, 0))
            .collect();
        assert_eq!(
            fall,
            vec![
                utc(2026, 11, 1, 4, 30), // 00:30 EDT
                utc(2026, 11, 1, 5, 30), // 01:30 EDT
                utc(2026, 11, 1, 6, 30), // 01:30 EST
                utc(2026, 11, 1, 7, 30), // 02:30 EST
            ]
        );
    }

    #[test]
    fn next_and_latest_agree_over_a_year_in_both_zones() {
        for zone in [New_York, London] {
            for text in [
                "0 2 * * 0",
                "0 8 * * *",
                "0 */12 * * *",
                "0 6 * * 1",
                "30 1 * * *",
            ] {
                let schedule = Schedule::cron(text).unwrap().in_time_zone(zone);
                assert_consistent(&schedule, utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0));
            }
            let at = Schedule::at_times(&["01:30", "02:30"])
                .unwrap()
                .in_time_zone(zone);
            assert_consistent(&at, utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0));
            let every = Schedule::every_minutes(45).unwrap().in_time_zone(zone);
            assert_consistent(&every, utc(2026, 2, 25, 0, 0), utc(2026, 4, 5, 0, 0));
            assert_consistent(&every, utc(2026, 10, 20, 0, 0), utc(2026, 11, 5, 0, 0));
        }
    }

    #[test]
    fn the_spring_forward_case_reported_to_panic_in_croner_gives_a_tick() {
        // croner-rust issue 16: "0 2 * * *" in New York searched from 01:30 on the day of the
        // spring-forward change panicked.
        let schedule = Schedule::cron("0 2 * * *").unwrap().in_time_zone(New_York);
        let from = local(New_York, 2025, 3, 9, 1, 30);
        assert_eq!(schedule.next_after(from), Some(utc(2025, 3, 9, 7, 0)));
    }

    /// Samoa skipped 30 December 2011 (UTC-10 to UTC+14 at midnight): croner gives up on a
    /// search across that day, found by the clock-change property test.
    #[test]
    fn a_daily_time_is_found_across_a_day_the_zone_skipped_both_ways() {
        let daily: Schedule = "at 13:32 in Pacific/Apia".parse().unwrap();
        let utc = |d, h, m| Utc.with_ymd_and_hms(2011, 12, d, h, m, 0).unwrap();
        // 29 December 22:53 in Apia (UTC-10): the next 13:32 is on the 31st (UTC+14).
        assert_eq!(daily.next_after(utc(30, 8, 53)), Some(utc(30, 23, 32)));
        // 31 December 13:00 in Apia: the latest 13:32 was on the 29th.
        assert_eq!(
            daily.latest_at_or_before(utc(30, 23, 0)),
            Some(utc(29, 23, 32))
        );
        let hourly: Schedule = "0 * * * * in Pacific/Apia".parse().unwrap();
        assert_eq!(hourly.next_after(utc(30, 9, 30)), Some(utc(30, 10, 0)));
        assert_eq!(
            hourly.latest_at_or_before(utc(30, 10, 30)),
            Some(utc(30, 10, 0))
        );
    }

    /// Antarctica/Casey jumped from UTC+8 to UTC+11 at 02:00 on Sunday 18 October 2009; croner
    /// gives up on a backward search of a weekly time across that gap.
    #[test]
    fn a_weekly_time_is_found_back_across_a_gap_of_three_hours() {
        let weekly: Schedule = "30 2 * * 0 in Antarctica/Casey".parse().unwrap();
        let utc = |d, h, m| Utc.with_ymd_and_hms(2009, 10, d, h, m, 0).unwrap();
        let next = weekly.next_after(utc(16, 18, 0)).unwrap();
        assert_eq!(next, utc(24, 15, 30), "Sunday 25 October 02:30 +11");
        assert_eq!(
            weekly.latest_at_or_before(next - TimeDelta::seconds(1)),
            weekly.latest_at_or_before(utc(16, 18, 0)),
            "nothing between the two"
        );
        assert_eq!(
            weekly.latest_at_or_before(utc(16, 18, 0)),
            Some(utc(10, 18, 30))
        );
    }

    /// Antarctica/Vostok went back 7 hours (UTC+7 to UTC) on 31 January 1994: the wall-clock
    /// scan of `every N minutes` must reach that far back.
    #[test]
    fn every_n_minutes_stays_consistent_across_a_seven_hour_fall_back() {
        let every: Schedule = "every 7 minutes in Antarctica/Vostok".parse().unwrap();
        let mut t = Utc.with_ymd_and_hms(1994, 1, 31, 12, 0, 0).unwrap();
        while t < Utc.with_ymd_and_hms(1994, 2, 1, 0, 0, 0).unwrap() {
            let next = every.next_after(t).expect("a next tick");
            assert!(next > t);
            assert_eq!(every.latest_at_or_before(next), Some(next), "at {t}");
            assert_eq!(
                every.latest_at_or_before(next - TimeDelta::seconds(1)),
                every.latest_at_or_before(t),
                "a tick between {t} and {next}"
            );
            t += TimeDelta::minutes(3);
        }
    }
}
