//! `crm jobs run` over https: the real `crm serve` behind a real TLS server whose certificate
//! a CA made by the test signed. With `--ca-file` (or `CRM_CA_FILE`) the heartbeat writes its
//! line; without it the run fails, saying the certificate is not trusted.

#[path = "support/process.rs"]
mod process;
#[path = "../../crm-jobs/tests/support/tls_server.rs"]
mod tls_server;

use std::io::BufReader;
use std::process::Stdio;

use process::{KillOnDrop, assert_exit, crm_in, read_served_url, stderr};
use tls_server::{test_ca, tls_proxy};

#[test]
fn the_heartbeat_reaches_the_server_over_https_only_when_the_private_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let crm = || {
        let mut command = crm_in(dir.path());
        command.env("CRM_LOG_DIR", &logs);
        command
    };
    let mut server = KillOnDrop(
        crm()
            .args(["serve", "--bind", "127.0.0.1:0", "--no-demo-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("crm serve starts"),
    );
    let plain = read_served_url(&mut BufReader::new(server.0.stdout.take().unwrap()));
    let ca = test_ca();
    let port = async_std::task::block_on(tls_proxy(&ca, &plain));
    let url = format!("https://127.0.0.1:{port}/graphql");
    let heartbeat_log = || std::fs::read_to_string(logs.join("crm_heartbeat_log.txt")).unwrap();

    let untrusted = crm()
        .args(["--graphql-url", &url, "jobs", "run", "log_crm_heartbeat"])
        .output()
        .unwrap();
    assert_exit(&untrusted, 1);
    let expected = format!("cannot reach {url}: certificate not trusted (UnknownIssuer)");
    assert!(heartbeat_log().contains(&expected), "{}", heartbeat_log());
    assert!(
        stderr(&untrusted).contains(&expected),
        "{}",
        stderr(&untrusted)
    );

    let trusted = crm()
        .env("CRM_CA_FILE", &ca.ca_file)
        .args(["--graphql-url", &url, "jobs", "run", "log_crm_heartbeat"])
        .output()
        .unwrap();
    assert_exit(&trusted, 0);
    let log = heartbeat_log();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.ends_with(" CRM is alive\n"), "{log}");

    let by_flag = crm()
        .args(["--ca-file", ca.ca_file.to_str().unwrap()])
        .args([
            "--graphql-url",
            &url,
            "jobs",
            "run",
            "log_crm_heartbeat",
            "--force",
        ])
        .output()
        .unwrap();
    assert_exit(&by_flag, 0);
    assert_eq!(heartbeat_log().lines().count(), 3, "{}", heartbeat_log());

    let bad_ca_for_the_webhook = crm()
        .args(["--alert-webhook-url", "https://127.0.0.1:1/hook"])
        .args(["--ca-file", "/nonexistent/ca.pem"])
        .args(["jobs", "run", "log_crm_heartbeat", "--force"])
        .output()
        .unwrap();
    assert_exit(&bad_ca_for_the_webhook, 2);
    assert!(
        stderr(&bad_ca_for_the_webhook).contains(
            "Cannot set up the alert webhook: CRM_CA_FILE: cannot read /nonexistent/ca.pem"
        ),
        "{}",
        stderr(&bad_ca_for_the_webhook)
    );
    assert_eq!(heartbeat_log().lines().count(), 3, "{}", heartbeat_log());
}
