//! What a heartbeat that could not reach the CRM leaves behind, for the transport tests.

use crm_jobs::JobError;

use crate::helpers::{Crm, read_log};

/// The heartbeat run at 2026-01-02 03:05 UTC failed, its one log line (22:05 the day before in
/// New York) naming `url` and containing `reason`.
pub(crate) fn assert_heartbeat_failed_with(
    crm: &Crm,
    result: Result<String, JobError>,
    url: &str,
    reason: &str,
) {
    let err = result.expect_err("the run fails");
    assert!(matches!(err, JobError::Endpoint(_)), "{err:?}");
    let log = read_log(crm.logs.path(), "crm_heartbeat_log.txt");
    assert!(
        log.starts_with("01/01/2026-22:05:00 CRM is alive - GraphQL endpoint not responding: "),
        "{log}"
    );
    assert!(log.contains(url), "{log}");
    assert!(log.contains(reason), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}
