//! `GET /metrics`: the scheduled jobs in the Prometheus text exposition format (version
//! 0.0.4), read from the run ledger, so the runs of every process sharing it count (the
//! scheduler's, the workers', `crm jobs run`'s), not only this server's.
//!
//! The counters come from [`RunLedger::run_counts`], which a prune does not lower, so
//! `rate(crm_job_runs_total[…])` sees no reset when history is deleted. Same access rule as
//! `/status`: with an API token configured, a scrape needs it (`bearer_token` or
//! `basic_auth.password` in Prometheus' scrape config).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_jobs::health::{HealthState, JobHealth};
use crm_jobs::{RunCount, RunOutcome};
use tide::{Request, Response, StatusCode};

use crate::http::AppState;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every state `crm_job_health` reports, so a job has one series per state (1 for its state, 0
/// for the others) and an alert on `crm_job_health{state="failing"} == 1` needs no `absent()`.
const STATES: [HealthState; 7] = [
    HealthState::Ok,
    HealthState::Running,
    HealthState::NeverRun,
    HealthState::Late,
    HealthState::Missed,
    HealthState::Failing,
    HealthState::Paused,
];

/// The handler.
pub(crate) async fn scrape(request: Request<AppState>) -> tide::Result {
    let config = request.state().config();
    if let Some(token) = &config.api_token
        && !crate::status::token_matches(request.header("Authorization").map(|v| v.as_str()), token)
    {
        return Ok(Response::builder(StatusCode::Unauthorized)
            .header("WWW-Authenticate", "Basic realm=\"crm metrics\", charset=\"UTF-8\"")
            .body("/metrics needs the API token: `Authorization: Bearer <token>`, or any user name with the token as password.\n")
            .content_type(tide::http::mime::PLAIN)
            .build());
    }
    let http = request.state().http();
    let Some(runner) = config.jobs.as_deref() else {
        let mut body = render(&[], &[]);
        http.render(&mut body);
        return Ok(text(StatusCode::Ok, body));
    };
    let now = runner.clock().now();
    let read = async {
        let health = crm_jobs::health::assess(runner, now).await?;
        let counts = runner.ledger().run_counts().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((health, counts))
    };
    match read.await {
        Ok((health, counts)) => {
            let mut body = render(&health, &counts);
            http.render(&mut body);
            Ok(text(StatusCode::Ok, body))
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read the run ledger for /metrics");
            Ok(Response::builder(StatusCode::ServiceUnavailable)
                .body("The run ledger could not be read; see the server's log.\n")
                .content_type(tide::http::mime::PLAIN)
                .build())
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    Response::builder(status)
        .body(body)
        .header("Content-Type", CONTENT_TYPE)
        .header("Cache-Control", "no-store")
        .build()
}

/// A label value as the exposition format quotes it.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// An instant as Prometheus' timestamps are: seconds since the epoch, to the microsecond.
fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The latest end among `counts` of `code` whose outcome `pick` accepts, or `fallback`'s.
fn latest(
    counts: &[RunCount],
    code: &str,
    pick: impl Fn(RunOutcome) -> bool,
    fallback: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    counts
        .iter()
        .filter(|c| c.code == code && pick(c.outcome))
        .filter_map(|c| c.last_ended)
        .chain(fallback)
        .max()
}

/// The whole exposition: jobs in `health`'s order (the runner's), then any job the ledger
/// counts that is no longer registered (its runs still count, so a counter does not vanish).
pub fn render(health: &[JobHealth], counts: &[RunCount]) -> String {
    let mut codes: Vec<&str> = health.iter().map(|j| j.code.as_str()).collect();
    for count in counts {
        if !codes.contains(&count.code.as_str()) {
            codes.push(&count.code);
        }
    }
    let mut out = String::with_capacity(256 + codes.len() * 1024);

    family(
        &mut out,
        "crm_job_runs_total",
        "counter",
        "Finished runs of the job by outcome, since the ledger began (a prune does not lower it; dry runs left out).",
    );
    for count in counts {
        let _ = writeln!(
            out,
            "crm_job_runs_total{{job=\"{}\",outcome=\"{}\"}} {}",
            label(&count.code),
            count.outcome,
            count.runs
        );
    }

    family(
        &mut out,
        "crm_job_duration_seconds",
        "summary",
        "How long the job's finished runs took (succeeded, failed or abandoned; skips take no time).",
    );
    for code in &codes {
        let timed = counts.iter().filter(|c| {
            c.code == *code
                && matches!(
                    c.outcome,
                    RunOutcome::Succeeded | RunOutcome::Failed | RunOutcome::Abandoned
                )
        });
        let (sum, n) = timed.fold((0.0, 0), |(sum, n), c| {
            (sum + c.total_duration.as_secs_f64(), n + c.runs)
        });
        let job = label(code);
        let _ = writeln!(out, "crm_job_duration_seconds_sum{{job=\"{job}\"}} {sum}");
        let _ = writeln!(out, "crm_job_duration_seconds_count{{job=\"{job}\"}} {n}");
    }

    let by_code = |code: &str| health.iter().find(|j| j.code == code);
    family(
        &mut out,
        "crm_job_last_success_timestamp_seconds",
        "gauge",
        "When the job's latest successful run ended (Unix time); absent if it never succeeded.",
    );
    for code in &codes {
        let fallback = by_code(code)
            .and_then(|j| j.last_success.as_ref())
            .and_then(|r| r.ended_at);
        if let Some(t) = latest(counts, code, |o| o == RunOutcome::Succeeded, fallback) {
            let _ = writeln!(
                out,
                "crm_job_last_success_timestamp_seconds{{job=\"{}\"}} {}",
                label(code),
                seconds(t)
            );
        }
    }
    family(
        &mut out,
        "crm_job_last_failure_timestamp_seconds",
        "gauge",
        "When the job's latest failed (or abandoned) run ended (Unix time); absent if none did.",
    );
    for code in &codes {
        let fallback = by_code(code)
            .and_then(|j| j.last_failure.as_ref())
            .and_then(|r| r.ended_at);
        let failed = |o| matches!(o, RunOutcome::Failed | RunOutcome::Abandoned);
        if let Some(t) = latest(counts, code, failed, fallback) {
            let _ = writeln!(
                out,
                "crm_job_last_failure_timestamp_seconds{{job=\"{}\"}} {}",
                label(code),
                seconds(t)
            );
        }
    }
    family(
        &mut out,
        "crm_job_next_run_timestamp_seconds",
        "gauge",
        "When the job's schedule next fires (Unix time); absent while paused or if it never fires again.",
    );
    for job in health {
        if job.state != HealthState::Paused
            && let Some(t) = job.next_run
        {
            let _ = writeln!(
                out,
                "crm_job_next_run_timestamp_seconds{{job=\"{}\"}} {}",
                label(&job.code),
                seconds(t)
            );
        }
    }
    family(
        &mut out,
        "crm_job_health",
        "gauge",
        "1 for the job's health state (as /status shows it), 0 for the others.",
    );
    for job in health {
        for state in STATES {
            let _ = writeln!(
                out,
                "crm_job_health{{job=\"{}\",state=\"{}\"}} {}",
                label(&job.code),
                state.as_str(),
                u8::from(job.state == state)
            );
        }
    }
    family(
        &mut out,
        "crm_job_consecutive_failures",
        "gauge",
        "How many of the job's latest finished runs failed (or were abandoned) in a row.",
    );
    for job in health {
        let _ = writeln!(
            out,
            "crm_job_consecutive_failures{{job=\"{}\"}} {}",
            label(&job.code),
            job.consecutive_failures
        );
    }
    out
}

/// The paths requests are counted under: a fixed few, so a scanner's random URLs cannot
/// make series without end (they count as `other`).
const PATHS: [&str; 7] = [
    "/graphql",
    "/graphiql",
    "/healthz",
    "/readyz",
    "/status",
    "/metrics",
    "other",
];

/// Status classes, `1xx` to `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// This server's requests, counted as they are answered: by path and status class, with their
/// summed durations. Atomics only, so counting costs a request no lock.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    answered: [[AtomicU64; CLASSES.len()]; PATHS.len()],
    micros: [AtomicU64; PATHS.len()],
    /// Pages of lists answered: written straight to JSON, and left to juniper.
    pages: [AtomicU64; 2],
}

impl HttpStats {
    /// Counts one answered request.
    pub(crate) fn record(&self, path: &str, status: u16, took: Duration) {
        let route = match path {
            "/graphql" | "/graphql/" => 0,
            p if p.starts_with("/graphiql/") => 1,
            "/healthz" => 2,
            "/readyz" => 3,
            "/status" => 4,
            "/metrics" => 5,
            _ => 6,
        };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.answered[route][class].fetch_add(1, Ordering::Relaxed);
        self.micros[route].fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one page of a list: its edges written straight to JSON (`direct`), or by juniper
    /// field by field (the request's shape or a row's error needed it).
    pub(crate) fn record_page(&self, direct: bool) {
        self.pages[usize::from(!direct)].fetch_add(1, Ordering::Relaxed);
    }

    /// `crm_http_requests_total`, `crm_http_request_duration_seconds` (paths with requests
    /// only) and `crm_graphql_pages_total`.
    pub(crate) fn render(&self, out: &mut String) {
        family(
            out,
            "crm_http_requests_total",
            "counter",
            "Requests this server answered, by path and status class (since it started).",
        );
        for (route, path) in PATHS.iter().enumerate() {
            for (class, word) in CLASSES.iter().enumerate() {
                let n = self.answered[route][class].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "crm_http_requests_total{{path=\"{path}\",status=\"{word}\"}} {n}"
                    );
                }
            }
        }
        family(
            out,
            "crm_http_request_duration_seconds",
            "summary",
            "How long this server took to answer requests, by path (since it started).",
        );
        for (route, path) in PATHS.iter().enumerate() {
            let n: u64 = self.answered[route]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                let secs = self.micros[route].load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "crm_http_request_duration_seconds_sum{{path=\"{path}\"}} {secs}\n\
                     crm_http_request_duration_seconds_count{{path=\"{path}\"}} {n}"
                );
            }
        }
        family(
            out,
            "crm_graphql_pages_total",
            "counter",
            "Pages of lists this server answered, by how their edges were written: `direct` \
             (straight to JSON) or `juniper` (field by field, for a request shape or a row error \
             the direct writer leaves to it) (since it started).",
        );
        for (i, written) in ["direct", "juniper"].iter().enumerate() {
            let n = self.pages[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "crm_graphql_pages_total{{written=\"{written}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_path_and_status_class_and_strange_paths_as_other() {
        let stats = HttpStats::default();
        stats.record("/graphql/", 200, Duration::from_millis(5));
        stats.record("/graphql", 400, Duration::from_millis(1));
        stats.record("/wp-login.php", 404, Duration::ZERO);
        let mut text = String::new();
        stats.render(&mut text);
        for line in [
            "crm_http_requests_total{path=\"/graphql\",status=\"2xx\"} 1",
            "crm_http_requests_total{path=\"/graphql\",status=\"4xx\"} 1",
            "crm_http_requests_total{path=\"other\",status=\"4xx\"} 1",
            "crm_http_request_duration_seconds_sum{path=\"/graphql\"} 0.006",
            "crm_http_request_duration_seconds_count{path=\"/graphql\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("wp-login"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_as_the_format_says() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn no_jobs_still_give_every_family_its_help_and_type() {
        let text = render(&[], &[]);
        for name in [
            "crm_job_runs_total",
            "crm_job_duration_seconds",
            "crm_job_last_success_timestamp_seconds",
            "crm_job_last_failure_timestamp_seconds",
            "crm_job_next_run_timestamp_seconds",
            "crm_job_health",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in {text}"
            );
        }
    }
}
