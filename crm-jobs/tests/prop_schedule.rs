//! Property tests of schedules as an adversary writes them (issue 8, rows P1-P3): arbitrary
//! text and near-valid cron expressions are refused with a message naming the problem, never a
//! panic; every valid schedule, over random instants from 1970 to 2200 in random IANA zones
//! (DST zones, Lord Howe's 30-minute DST, Chatham's 12:45 offset among them), answers
//! `next_after(t) > t` and `latest_at_or_before(t) <= t`, the two consistent with each other;
//! and the operator's path (`set_schedule`, what `crm jobs schedule` and the GraphQL mutation
//! call) refuses bad expressions on a real SQLite database and writes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crm_core::testing::TestDb;
use crm_jobs::{
    CronJob, JobContext, JobControl, JobError, ManualClock, OverrideStore, Runner, Schedule,
    ScheduleError,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property: enough to cover the generators' corners, few enough that the file runs
/// in seconds in debug.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 500,
        ..Config::default()
    }
}

// ------------------------------------------------------------------ generators

/// Zones where clocks do odd things, drawn more often than the rest.
const ODD_ZONES: &[&str] = &[
    "Australia/Lord_Howe", // DST shifts by 30 minutes
    "Pacific/Chatham",     // +12:45 / +13:45
    "America/New_York",
    "Europe/London",
    "Antarctica/Troll", // shifts by 2 hours
    "Asia/Kathmandu",   // +05:45
    "America/St_Johns", // -03:30 with DST
    "Pacific/Apia",     // skipped a whole day in 2011
    "Pacific/Kiritimati",
    "Africa/Casablanca", // DST suspended during Ramadan
    "America/Santiago",
    "Asia/Tehran",
    "Europe/Dublin", // negative DST in the tz database
    "UTC",
];

fn zone() -> impl Strategy<Value = Tz> {
    prop_oneof![
        select(ODD_ZONES).prop_map(|name| name.parse::<Tz>().unwrap()),
        select(chrono_tz::TZ_VARIANTS.as_slice()),
    ]
}

/// A whole-second instant from 1970 to 2200.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let end = Utc
        .with_ymd_and_hms(2200, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    (0..end).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// One valid field of a cron expression for values `lo..=hi`: `*`, a number, a range, a step,
/// a list.
fn valid_field(lo: u32, hi: u32) -> BoxedStrategy<String> {
    prop_oneof![
        Just("*".to_owned()),
        (lo..=hi).prop_map(|n| n.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1..=hi).prop_map(|s| format!("*/{s}")),
        (lo..=hi, 1..=hi).prop_map(move |(a, s)| format!("{a}-{hi}/{s}")),
        proptest::collection::vec(lo..=hi, 1..4).prop_map(|v| v
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")),
    ]
    .boxed()
}

/// A valid 5-field expression that fires at least once a year (days of the month up to 28),
/// or a nickname.
fn valid_cron() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (
            valid_field(0, 59),
            valid_field(0, 23),
            valid_field(1, 28),
            prop_oneof![valid_field(1, 12), select(&["JAN", "FEB-MAR", "*/3", "DEC"][..]).prop_map(str::to_owned)],
            prop_oneof![valid_field(0, 6), select(&["MON", "SUN", "MON-FRI", "SAT,SUN", "7"][..]).prop_map(str::to_owned)],
        )
            .prop_map(|(m, h, dom, mon, dow)| format!("{m} {h} {dom} {mon} {dow}")),
        1 => select(&["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"][..])
            .prop_map(str::to_owned),
    ]
}

/// A valid schedule of any of the three kinds, with or without its own zone.
fn valid_schedule() -> impl Strategy<Value = Schedule> {
    let kind = prop_oneof![
        4 => valid_cron().prop_map(|e| Schedule::cron(&e).unwrap_or_else(|err| panic!("{e}: {err}"))),
        2 => prop_oneof![1..=120u32, 1..=100_000u32, Just(u32::MAX)]
            .prop_map(|n| Schedule::every_minutes(n).unwrap()),
        2 => proptest::collection::vec((0..24u32, 0..60u32), 1..5).prop_map(|times| {
            let texts: Vec<String> = times.iter().map(|(h, m)| format!("{h:02}:{m:02}")).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Schedule::at_times(&refs).unwrap()
        }),
    ];
    (kind, zone()).prop_map(|(schedule, zone)| schedule.in_time_zone(zone))
}

/// A field that no cron accepts, with the reason we expect to be able to name.
fn bad_field(index: usize) -> BoxedStrategy<String> {
    let (lo, hi): (u32, u32) = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)][index];
    prop_oneof![
        (hi + 1..=hi + 1000).prop_map(|n| n.to_string()),
        Just("*/0".to_owned()),
        Just("*/99999999999999999999".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("-1".to_owned()),
        (lo + 1..=hi).prop_map(|n| format!("{n}-{}", n - 1)), // a reversed range
        Just("FOO".to_owned()),
        Just("1-".to_owned()),
        Just("/5".to_owned()),
        Just(",".to_owned()),
        Just("1,,2".to_owned()),
        Just("٣".to_owned()),  // an Arabic-Indic digit
        Just("１".to_owned()), // a full-width digit
        Just("1/2/3".to_owned()),
        Just("*-*".to_owned()),
        Just("1e3".to_owned()),
        Just("0x1F".to_owned()),
        Just("'; DROP TABLE job_overrides; --".replace(' ', "")),
    ]
    .boxed()
}

/// A 5-field expression with exactly one bad field, the others valid.
fn near_valid_cron() -> impl Strategy<Value = (String, usize, String)> {
    (0..5usize).prop_flat_map(|bad| {
        let fields: Vec<BoxedStrategy<String>> = (0..5)
            .map(|i| {
                if i == bad {
                    bad_field(i)
                } else {
                    let (lo, hi) = [(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)][i];
                    valid_field(lo, hi)
                }
            })
            .collect();
        (fields, Just(bad)).prop_map(|(fields, bad)| {
            let field = fields[bad].clone();
            (fields.join(" "), bad, field)
        })
    })
}

/// Text near the schedule grammar: pieces of the valid forms glued at random.
fn schedule_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(
            &[
                "*",
                "*/5",
                "0",
                "59",
                "60",
                "24",
                "1-5",
                "5-1",
                "MON",
                "JAN",
                "L",
                "W",
                "?",
                "#",
                "@daily",
                "@reboot",
                "@every",
                "every",
                "minutes",
                "minute",
                "at",
                "in",
                "08:00",
                "24:00",
                "8:5",
                ",",
                ":",
                "-",
                "/",
                "Europe/London",
                "Mars/Olympus",
                "Australia/Lord_Howe",
                "UTC",
                "utc",
                "0",
                "-0",
                "4294967296",
                "1.5",
                "\u{0}",
                "\u{202e}",
                "\u{feff}",
                "é",
                "\u{301}",
                "🙂",
                " ",
                "  ",
                "\t",
                "\n",
            ][..],
        )
        .prop_map(str::to_owned),
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.join(" "))
}

// ------------------------------------------------------------------ checks

/// The parser caught a panic of croner's: its message is not a reason, and it means croner
/// panicked on user input.
const PARSER_PANIC: &str = "the cron parser failed on this expression";

/// An error must say what is wrong, in words a person can act on.
fn assert_clear(input: &str, err: &ScheduleError) {
    let message = err.to_string();
    assert!(!message.trim().is_empty(), "{input:?}: empty message");
    assert!(
        !message.contains(PARSER_PANIC),
        "{input:?}: croner panicked ({message})"
    );
    match err {
        ScheduleError::InvalidCron { reason, .. } => {
            assert!(!reason.trim().is_empty(), "{input:?}: no reason: {message}");
            assert!(
                message.starts_with("invalid cron expression '"),
                "{message}"
            );
        }
        ScheduleError::ZeroInterval => assert!(message.contains("at least 1 minute")),
        ScheduleError::InvalidTimeOfDay(t) => assert!(message.contains(&format!("'{t}'"))),
        ScheduleError::NoTimes => {}
        ScheduleError::UnknownTimeZone(z) => {
            assert!(message.contains(&format!("'{z}'")) && message.contains("IANA"))
        }
        other => panic!("{input:?}: an error variant this test does not know: {other:?}"),
    }
}

/// A schedule that parsed must show as text that parses back to itself.
fn assert_round_trip(input: &str, schedule: &Schedule) {
    let text = schedule.to_string();
    let again: Schedule = text
        .parse()
        .unwrap_or_else(|e| panic!("{input:?} shows as {text:?}, which does not parse: {e}"));
    assert_eq!(&again, schedule, "{input:?} -> {text:?}");
}

/// `next_after` and `latest_at_or_before` at `t`, and their agreement.
fn assert_ticks_consistent(schedule: &Schedule, t: DateTime<Utc>, must_fire: bool) {
    let next = schedule.next_after(t);
    let latest = schedule.latest_at_or_before(t);
    let ctx = || format!("{schedule} at {t}: next {next:?}, latest {latest:?}");
    if must_fire {
        assert!(next.is_some(), "no next tick: {}", ctx());
    }
    if let Some(n) = next {
        assert!(n > t, "next not after: {}", ctx());
        assert_eq!(
            schedule.latest_at_or_before(n),
            Some(n),
            "the next tick is not its own latest: {}",
            ctx()
        );
        // Nothing between t and n: the latest before n is the latest at t.
        let second = TimeDelta::seconds(1);
        assert_eq!(
            schedule.latest_at_or_before(n - second),
            latest,
            "a tick between t and the next: {}",
            ctx()
        );
    }
    if let Some(p) = latest {
        assert!(p <= t, "latest after t: {}", ctx());
        assert_eq!(
            schedule.next_after(p),
            next,
            "next after the latest tick skips or adds one: {}",
            ctx()
        );
    }
}

// ------------------------------------------------------------------ P1: text in

#[test]
fn p1_arbitrary_text_is_a_schedule_or_a_clear_error_never_a_panic() {
    let mut runner = TestRunner::new(config(1500));
    let strategy = prop_oneof![any::<String>(), "\\PC{0,80}", schedule_like_text()];
    runner
        .run(&strategy, |text| {
            match text.parse::<Schedule>() {
                Ok(schedule) => assert_round_trip(&text, &schedule),
                Err(err) => assert_clear(&text, &err),
            }
            match Schedule::cron(&text) {
                Ok(schedule) => assert_round_trip(&text, &schedule),
                Err(err) => assert_clear(&text, &err),
            }
            if let Err(err) = crm_jobs::parse_time_zone(&text) {
                assert_clear(&text, &err);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn p1_near_valid_cron_expressions_are_refused_naming_the_expression() {
    let mut runner = TestRunner::new(config(1000));
    runner
        .run(&near_valid_cron(), |(expr, index, field)| {
            let err = match Schedule::cron(&expr) {
                Ok(schedule) => panic!(
                    "{expr:?} (field {index} = {field:?}) was accepted as {schedule}: {:?}",
                    schedule.next_after(Utc::now())
                ),
                Err(err) => err,
            };
            assert_clear(&expr, &err);
            assert!(
                err.to_string().contains(&format!("'{expr}'")),
                "the message names the expression: {err}"
            );
            // The same through the text form, with a zone.
            let with_zone = format!("{expr} in Europe/London");
            let err = with_zone.parse::<Schedule>().unwrap_err();
            assert_clear(&with_zone, &err);
            Ok(())
        })
        .unwrap();
}

#[test]
fn p1_wrong_field_counts_and_unknown_nicknames_are_refused() {
    let mut runner = TestRunner::new(config(500));
    let strategy = prop_oneof![
        proptest::collection::vec(valid_field(0, 5), 0..=4),
        proptest::collection::vec(valid_field(0, 5), 6..=8),
    ];
    runner
        .run(&strategy, |fields| {
            let expr = fields.join(" ");
            let err = Schedule::cron(&expr).unwrap_err();
            assert_clear(&expr, &err);
            assert!(
                err.to_string().contains(&format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    fields.len()
                )),
                "{expr:?}: {err}"
            );
            Ok(())
        })
        .unwrap();
    for nickname in ["@reboot", "@every", "@", "@5m", "@DAILY2", "@yearly extra"] {
        let err = Schedule::cron(nickname).unwrap_err();
        assert_clear(nickname, &err);
    }
}

#[test]
fn p1_interval_and_time_of_day_forms_refuse_bad_numbers() {
    let mut runner = TestRunner::new(config(1000));
    let count = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("-0".to_owned()),
        Just("4294967296".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("1.5".to_owned()),
        Just("1e3".to_owned()),
        Just("".to_owned()),
        Just("٣".to_owned()),
        Just("five".to_owned()),
    ];
    let time = prop_oneof![
        (24..100u32, 0..60u32).prop_map(|(h, m)| format!("{h}:{m:02}")),
        (0..24u32, 60..100u32).prop_map(|(h, m)| format!("{h:02}:{m}")),
        (0..24u32, 0..10u32).prop_map(|(h, m)| format!("{h:02}:{m}")),
        Just("".to_owned()),
        Just(":".to_owned()),
        Just("-1:00".to_owned()),
        Just("08:00:00".to_owned()),
        Just("٠٨:٠٠".to_owned()),
        Just("08h00".to_owned()),
        Just("+8:00".to_owned()),
    ];
    runner
        .run(&(count, time), |(count, time)| {
            let every = format!("every {count} minutes");
            let err = every.parse::<Schedule>().unwrap_err();
            assert_clear(&every, &err);
            let at = format!("at 08:00,{time}");
            let err = at.parse::<Schedule>().unwrap_err();
            assert_clear(&at, &err);
            assert_eq!(err, ScheduleError::InvalidTimeOfDay(time.trim().to_owned()));
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------ P2: ticks

#[test]
fn p2_every_valid_schedule_gives_consistent_ticks_in_every_zone_from_1970_to_2200() {
    let mut runner = TestRunner::new(config(1000));
    runner
        .run(&(valid_schedule(), instant()), |(schedule, t)| {
            // Every generated schedule fires at least once a year.
            assert_ticks_consistent(&schedule, t, true);
            Ok(())
        })
        .unwrap();
}

/// Instants within a few hours of one of the zone's clock changes, where the bugs live.
#[test]
fn p2_ticks_stay_consistent_right_around_clock_changes() {
    use chrono::Offset;
    let mut runner = TestRunner::new(config(600));
    let strategy = (valid_schedule(), 1971..2100i32, 0..366u32, -240..240i64);
    runner
        .run(&strategy, |(schedule, year, day, minutes)| {
            let zone = schedule.time_zone();
            // The first change of offset on or after the chosen day, found by hourly probes.
            let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()
                + TimeDelta::days(i64::from(day));
            let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
            let mut probe = start;
            let change = loop {
                let next = probe + TimeDelta::minutes(30);
                if offset(next) != offset(probe) {
                    break Some(next);
                }
                if probe - start > TimeDelta::days(400) {
                    break None;
                }
                probe = next;
            };
            let t = change.unwrap_or(start) + TimeDelta::minutes(minutes);
            assert_ticks_consistent(&schedule, t, true);
            Ok(())
        })
        .unwrap();
}

/// The case croner once panicked on, generalised: a fixed time in or next to the hour the
/// clocks skip, searched from just before it, in every DST zone.
#[test]
fn p2_fixed_times_in_a_spring_forward_gap_give_one_tick_and_no_panic() {
    let mut runner = TestRunner::new(config(400));
    let strategy = (
        select(ODD_ZONES).prop_map(|z| z.parse::<Tz>().unwrap()),
        1990..2040i32,
        0..24u32,
        select(&[0u32, 15, 30, 45][..]),
    );
    runner
        .run(&strategy, |(zone, year, hour, minute)| {
            let cron = Schedule::cron(&format!("{minute} {hour} * * *"))
                .unwrap()
                .in_time_zone(zone);
            let at = Schedule::at_times(&[&format!("{hour:02}:{minute:02}")])
                .unwrap()
                .in_time_zone(zone);
            // Search a year of days from 90 minutes before the time, each day.
            let mut day = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
            for _ in 0..366 / 7 {
                let local = day
                    .with_timezone(&zone)
                    .date_naive()
                    .and_hms_opt(hour, minute, 0);
                if let Some(local) = local {
                    let t = local.and_utc() - TimeDelta::minutes(90);
                    for schedule in [&cron, &at] {
                        let next = schedule.next_after(t).expect("a daily time always comes");
                        assert!(next > t);
                        assert!(next - t <= TimeDelta::days(2), "{schedule} at {t}: {next}");
                    }
                }
                day += TimeDelta::days(7);
            }
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------ P3: operator path

/// A job whose schedule the operator tries to replace; it never runs here.
struct Nightly;

#[async_trait]
impl CronJob for Nightly {
    fn code(&self) -> &str {
        "nightly"
    }
    fn schedule(&self) -> Schedule {
        Schedule::cron("0 3 * * *").unwrap()
    }
    async fn run(&self, _ctx: &JobContext) -> Result<String, JobError> {
        Ok("ran".to_owned())
    }
}

/// Every refused schedule text through `set_schedule` (the call behind `crm jobs schedule` and
/// `setJobSchedule`), on a real SQLite database: an error naming the problem, and nothing
/// stored, audited or counted. One database for all cases.
#[test]
fn p3_refused_override_schedules_write_nothing_on_sqlite() {
    async_std::task::block_on(async {
        let db = TestDb::sqlite().await;
        let database = db.database().clone();
        let store: Arc<dyn OverrideStore> = Arc::new(database.clone());
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
        let runner = Runner::builder()
            .ledger(Arc::new(database.clone()))
            .overrides(store.clone())
            .clock(Arc::new(clock))
            .time_zone(Tz::UTC)
            .jobs(vec![Box::new(Nightly) as Box<dyn CronJob>])
            .build()
            .unwrap();

        let bad = prop_oneof![
            near_valid_cron().prop_map(|(e, _, _)| e),
            near_valid_cron().prop_map(|(e, _, _)| format!("{e} in Europe/London")),
            valid_cron().prop_map(|e| format!("{e} in Mars/Olympus")),
            Just("every 0 minutes".to_owned()),
            Just("at 24:00".to_owned()),
            Just("0 0 30 2 *".to_owned()), // never fires again
            Just("".to_owned()),
            Just("x".repeat(100_000)),
        ];
        // Generated up front: the cases are awaited one by one on the same database.
        let mut generator = TestRunner::new(config(100));
        let cases: Vec<String> = (0..100)
            .map(|_| bad.new_tree(&mut generator).unwrap().current())
            .collect();
        for text in &cases {
            let shown: String = text.chars().take(200).collect();
            let err = match runner.set_schedule("nightly", Some(text), "api").await {
                Ok(state) => panic!("{shown:?} was accepted: {state:?}"),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(
                message.starts_with("schedule: "),
                "{shown:?}: names the field: {message}"
            );
            assert!(
                message.len() < 2_000,
                "{shown:?}: a message of {} bytes",
                message.len()
            );
        }
        assert_eq!(store.version().await.unwrap(), 0, "no change counted");
        assert!(
            store.audit(None, 10).await.unwrap().is_empty(),
            "no audit row"
        );
        assert!(
            store.snapshot().await.unwrap().overrides.is_empty(),
            "no override"
        );
        assert_eq!(
            runner.effective_schedule("nightly").unwrap().to_string(),
            "0 3 * * * in UTC"
        );
    });
}
