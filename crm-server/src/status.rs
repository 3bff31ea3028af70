//! `GET /status`: one page that tells an operator, at a glance and on a phone, which scheduled
//! jobs are healthy. Server-rendered HTML with inline CSS and SVG (no scripts, no front-end
//! build), refreshed by the browser every minute.
//!
//! It shows no customer data: job codes, schedules, times, states, durations, and the last
//! failure's message with e-mail addresses redacted. When an API token is configured the page
//! needs it, as `Authorization: Bearer <token>` or as the password of HTTP Basic auth (so a
//! browser asks for it in its own dialog; the token never goes in a URL, where logs and browser
//! history would keep it). Without a token it is read-only and open, like the GraphQL queries.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crm_jobs::health::{HealthState, JobHealth};
use crm_jobs::{JobRun, RunOutcome};
use subtle::ConstantTimeEq as _;
use tide::http::mime;
use tide::{Request, Response, StatusCode};

use crate::http::AppState;

/// Longest failure message shown (characters); the rest is in `crm jobs history`.
const MAX_MESSAGE_CHARS: usize = 160;

/// The page's handler.
pub(crate) async fn page(request: Request<AppState>) -> tide::Result {
    let config = request.state().config();
    if let Some(token) = &config.api_token
        && !token_matches(request.header("Authorization").map(|v| v.as_str()), token)
    {
        return Ok(Response::builder(StatusCode::Unauthorized)
            .header(
                "WWW-Authenticate",
                "Basic realm=\"crm status\", charset=\"UTF-8\"",
            )
            .body(
                "The status page needs the API token: `Authorization: Bearer <token>`, \
                 or any user name with the token as password.\n",
            )
            .content_type(mime::PLAIN)
            .build());
    }
    let Some(runner) = config.jobs.as_deref() else {
        return Ok(html(
            StatusCode::NotFound,
            render_page(
                &[],
                Utc::now(),
                Tz::UTC,
                Some("This server was started without the scheduled jobs."),
            ),
        ));
    };
    let now = runner.clock().now();
    match crm_jobs::health::assess(runner, now).await {
        Ok(health) => Ok(html(
            StatusCode::Ok,
            render_page(&health, now, runner.time_zone(), None),
        )),
        Err(e) => {
            tracing::error!(error = %e, "could not read the run ledger for the status page");
            Ok(html(
                StatusCode::ServiceUnavailable,
                render_page(
                    &[],
                    now,
                    runner.time_zone(),
                    Some("The run ledger could not be read; see the server's log."),
                ),
            ))
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    Response::builder(status)
        .body(body)
        .content_type(mime::HTML)
        .header("Cache-Control", "no-store")
        .build()
}

/// Whether `header` carries the token: `Bearer <token>`, or `Basic` with the token as the
/// password (any user name). Compared in constant time.
pub(crate) fn token_matches(header: Option<&str>, token: &str) -> bool {
    let Some((scheme, value)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        value.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        match text.split_once(':') {
            Some((_, password)) => password.to_owned(),
            None => return false,
        }
    } else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `in 4 min`, `3 h ago`: how far `t` is from `now`, in its largest unit.
fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let n = secs.unsigned_abs();
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86_400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if secs >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn when(t: DateTime<Utc>, now: DateTime<Utc>, zone: Tz) -> String {
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.to_rfc3339(),
        escape(
            &t.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        ),
        escape(&relative(t, now)),
    )
}

/// A tick as an operator names it: `Jun 9 02:00` (the full instant in its tooltip).
fn tick(t: DateTime<Utc>, zone: Tz) -> String {
    let local = t.with_timezone(&zone);
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.to_rfc3339(),
        escape(&local.format("%Y-%m-%d %H:%M:%S %Z").to_string()),
        escape(&local.format("%b %-d %H:%M").to_string()),
    )
}

fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    }
}

fn outcome_class(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "ok",
        RunOutcome::Failed => "bad",
        RunOutcome::Running => "run",
        RunOutcome::Skipped => "skip",
        _ => "warn",
    }
}

fn state_class(state: HealthState) -> &'static str {
    match state {
        HealthState::Ok => "ok",
        HealthState::Running => "run",
        HealthState::Late => "warn",
        HealthState::Missed | HealthState::Failing => "bad",
        _ => "skip",
    }
}

/// A bar per recent run, oldest on the left: height by duration (relative to the longest),
/// colour by outcome; each bar's tooltip tells its start, duration and outcome.
fn chart(runs: &[JobRun], now: DateTime<Utc>, zone: Tz) -> String {
    const W: usize = 160;
    const H: usize = 36;
    const SLOTS: usize = crm_jobs::health::HEALTH_WINDOW as usize;
    let slot = W / SLOTS;
    let durations: Vec<f64> = runs
        .iter()
        .map(|r| r.duration(now).as_seconds_f64().max(0.0))
        .collect();
    let longest = durations.iter().copied().fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"durations and outcomes of the last {} runs\">\
         <line x1=\"0\" y1=\"{}\" x2=\"{W}\" y2=\"{}\" class=\"axis\"/>",
        runs.len(),
        H - 1,
        H - 1
    );
    // Newest last, drawn from the right edge so the latest run is always in the same place.
    let count = runs.len().min(SLOTS);
    for (i, (run, secs)) in runs.iter().zip(&durations).take(count).rev().enumerate() {
        let share = if longest > 0.0 { secs / longest } else { 0.0 };
        let height = (3.0 + share * (H as f64 - 5.0)).round() as usize;
        let x = W - (count - i) * slot + 1;
        let _ = write!(
            svg,
            "<rect class=\"{}\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{height}\" rx=\"1\">\
             <title>{} · {} · {}</title></rect>",
            outcome_class(run.outcome),
            H - 1 - height,
            slot - 2,
            escape(
                &run.started_at
                    .with_timezone(&zone)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            ),
            escape(&duration_text(
                run.duration(now).to_std().unwrap_or_default()
            )),
            run.outcome,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn row(job: &JobHealth, now: DateTime<Utc>, zone: Tz) -> String {
    let state = job.state;
    let detail = match (state, job.overdue_tick) {
        (HealthState::Late, Some(t)) => format!("{} due, not started", tick(t, zone)),
        (HealthState::Missed, Some(t)) => format!("{} got no run", tick(t, zone)),
        (HealthState::Failing, _) => format!(
            "{} failure{} in a row",
            job.consecutive_failures,
            if job.consecutive_failures == 1 {
                ""
            } else {
                "s"
            }
        ),
        (HealthState::Paused, _) => "paused by an operator".to_owned(),
        (HealthState::Running, _) => job
            .running
            .as_ref()
            .map(|r| format!("since {}", when(r.started_at, now, zone)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let next = match (state, job.next_run) {
        (HealthState::Paused, _) => "paused".to_owned(),
        (_, Some(t)) => when(t, now, zone),
        (_, None) => "never".to_owned(),
    };
    let success = job
        .last_success
        .as_ref()
        .map_or_else(|| "—".to_owned(), |r| when(r.started_at, now, zone));
    let failure = match &job.last_failure {
        None => "—".to_owned(),
        Some(r) => {
            let message = job
                .last_failure_message()
                .map(|m| {
                    let clipped: String = m.chars().take(MAX_MESSAGE_CHARS).collect();
                    let more = if m.chars().count() > MAX_MESSAGE_CHARS {
                        "…"
                    } else {
                        ""
                    };
                    format!("<div class=\"msg\">{}{more}</div>", escape(&clipped))
                })
                .unwrap_or_default();
            format!("{}{message}", when(r.started_at, now, zone))
        }
    };
    let timing = match (job.p50, job.p95) {
        (Some(p50), Some(p95)) => format!(
            "<span class=\"timing\">p50 {} · p95 {}</span>",
            escape(&duration_text(p50)),
            escape(&duration_text(p95))
        ),
        _ => String::new(),
    };
    format!(
        "<tr data-job=\"{code}\" data-state=\"{state_word}\">\
         <td data-label=\"Job\" class=\"job\"><div><code>{code}</code></div></td>\
         <td data-label=\"State\"><div><span class=\"badge {class}\">{state_word}</span>\
         <div class=\"detail\">{detail}</div></div></td>\
         <td data-label=\"Schedule\"><div><code>{schedule}</code> <span class=\"tz\">{tz}{overridden}\
         </span></div></td>\
         <td data-label=\"Next run\"><div>{next}</div></td>\
         <td data-label=\"Last success\"><div>{success}</div></td>\
         <td data-label=\"Last failure\"><div>{failure}</div></td>\
         <td data-label=\"Recent runs\"><div>{chart}{timing}</div></td></tr>",
        code = escape(&job.code),
        state_word = escape(state.as_str()),
        class = state_class(state),
        schedule = escape(&job.schedule_expression()),
        tz = escape(job.schedule.time_zone().name()),
        overridden = if job.overridden { " · override" } else { "" },
        chart = chart(&job.recent, now, zone),
    )
}

const STYLE: &str = "\
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#bf8700;--run:#0969da;--skip:#8c959f;\
--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff}\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
color:var(--fg);background:var(--bg)}\
header{padding:18px 20px 8px}\
h1{font-size:20px;margin:0 0 4px}\
.summary{color:var(--muted);margin:0}\
.summary b{color:var(--fg)}\
main{padding:8px 20px 24px}\
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);\
border-radius:8px;overflow:hidden}\
th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;\
color:var(--muted);background:#eef1f4;padding:8px 12px;border-bottom:1px solid var(--line);\
white-space:nowrap}\
td{padding:10px 12px;border-bottom:1px solid var(--line);vertical-align:top}\
tr:last-child td{border-bottom:0}\
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:nowrap}\
.job code{font-weight:600;font-size:14px}\
.tz,.detail,.timing,time{color:var(--muted);font-size:13px}\
.timing{display:block;margin-top:2px;white-space:nowrap}\
time{color:var(--fg)}\
.detail time{color:inherit}\
.msg{color:var(--bad);font-size:12px;max-width:24em;overflow-wrap:break-word}\
.badge{display:inline-block;padding:1px 10px;border-radius:999px;font-weight:600;\
font-size:13px;color:#fff;white-space:nowrap}\
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}\
.badge.warn{background:var(--warn)}.badge.run{background:var(--run)}\
.badge.skip{background:var(--skip)}\
.chart{display:block}\
.chart .axis{stroke:var(--line)}\
.chart rect.ok{fill:var(--ok)}.chart rect.bad{fill:var(--bad)}\
.chart rect.warn{fill:var(--warn)}.chart rect.run{fill:var(--run)}\
.chart rect.skip{fill:var(--skip)}\
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:10px 14px}\
footer{color:var(--muted);font-size:12px;padding:0 20px 20px}\
@media (max-width:760px){\
thead{display:none}\
table,tbody,tr,td{display:block;width:100%}\
table{border:0;background:none}\
tr{background:var(--card);border:1px solid var(--line);border-radius:8px;margin-bottom:12px;\
padding:6px 0}\
td{border:0;padding:5px 14px;display:grid;grid-template-columns:7.5em 1fr;gap:8px;\
align-items:start}\
td::before{content:attr(data-label);color:var(--muted);font-size:12px;\
text-transform:uppercase;letter-spacing:.04em;padding-top:2px}\
td.job{font-size:16px}\
}";

/// The whole page: a summary line, then one row per job.
fn render_page(jobs: &[JobHealth], now: DateTime<Utc>, zone: Tz, note: Option<&str>) -> String {
    let problems = jobs.iter().filter(|j| j.state.is_problem()).count();
    let summary = if jobs.is_empty() {
        "No jobs.".to_owned()
    } else if problems == 0 {
        format!("<b>All {} jobs healthy.</b>", jobs.len())
    } else {
        format!("<b>{problems} of {} jobs need attention.</b>", jobs.len())
    };
    let title = if problems == 0 {
        "crm · jobs ok".to_owned()
    } else {
        format!(
            "crm · {problems} job problem{}",
            if problems == 1 { "" } else { "s" }
        )
    };
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <header><h1>Scheduled jobs</h1><p class=\"summary\">{summary} \
         As of {}.</p></header><main>",
        escape(
            &now.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        ),
    );
    if let Some(note) = note {
        let _ = write!(page, "<p class=\"note\">{}</p>", escape(note));
    }
    if !jobs.is_empty() {
        page.push_str(
            "<table><thead><tr><th>Job</th><th>State</th><th>Schedule</th><th>Next run</th>\
             <th>Last success</th><th>Last failure</th><th>Recent runs</th></tr></thead><tbody>",
        );
        for job in jobs {
            page.push_str(&row(job, now, zone));
        }
        page.push_str("</tbody></table>");
    }
    page.push_str(
        "</main><footer>Bars: the last runs, oldest left; height is duration, colour is \
         outcome (green succeeded, red failed, amber abandoned, blue running, grey skipped). \
         This page refreshes every minute.</footer></body></html>",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_opens_the_page_by_bearer_or_basic_password() {
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(token_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(token_matches(Some(&basic("ops:s3cret")), "s3cret"));
        assert!(token_matches(Some(&basic(":s3cret")), "s3cret"));
        assert!(!token_matches(Some(&basic("s3cret:")), "s3cret"));
        assert!(!token_matches(Some(&basic("ops:s3cre")), "s3cret"));
        assert!(!token_matches(Some("Basic !!!"), "s3cret"));
        assert!(!token_matches(Some("Bearer "), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |s: i64| now + chrono::TimeDelta::seconds(s);
        assert_eq!(relative(at(30), now), "in 30 s");
        assert_eq!(relative(at(-300), now), "5 min ago");
        assert_eq!(relative(at(7300), now), "in 2 h");
        assert_eq!(relative(at(-200_000), now), "2 d ago");
    }
}
