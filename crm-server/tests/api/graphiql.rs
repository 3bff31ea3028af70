//! GraphiQL as a user without internet meets it: `/graphql` loaded in a real headless Chromium
//! (Debian's `chromium`) whose name resolution is cut off from every other host, driven over the
//! DevTools protocol. The editor renders, `{ hello }` runs, and every request the page made went
//! to this server.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{CHROMIUM_FLAGS, spawn_app};

/// Headless Chromium spoken to over `--remote-debugging-pipe`: commands go in on its file
/// descriptor 3 and answers and events come out of descriptor 4, each a JSON text ended by a
/// NUL byte. A shell maps them to the child's stdin and stdout (no unsafe `pre_exec` needed).
struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    /// Every URL the page asked for (`Network.requestWillBeSent`).
    requested: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(r#"exec chromium "$@" 3<&0 4>&1 0</dev/null 1>/dev/null 2>/dev/null"#)
            .arg("chromium")
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-pipe")
            // No host name resolves, only this server's address is reached: a page that needs a
            // CDN cannot load it.
            .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("chromium runs (Debian package `chromium`; .ci/run installs it)");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            input,
            output,
            next_id: 0,
            requested: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends one command (to the page's `session`, if given) and returns its result, noting the
    /// events that arrive meanwhile.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        self.input.flush().unwrap();
        loop {
            let mut raw = Vec::new();
            let read = self.output.read_until(0, &mut raw).unwrap();
            assert!(
                read > 0,
                "chromium closed the pipe while {method} was pending"
            );
            raw.pop();
            let message: Value = serde_json::from_slice(&raw).unwrap();
            if message["method"] == "Network.requestWillBeSent" {
                let url = message["params"]["request"]["url"].as_str().unwrap_or("");
                self.requested.push(url.to_owned());
            }
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut rest = Vec::new();
        let _ = self.output.read_to_end(&mut rest);
    }
}

/// Waits in the page for the query editor, runs the query with GraphiQL's run button, and
/// resolves with the response pane's text once it holds an answer (or rejects after 20 s).
const RUN_IN_GRAPHIQL: &str = r#"(async () => {
  const until = async (what, probe) => {
    for (let i = 0; i < 200; i++) {
      const found = probe();
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error('timed out waiting for ' + what + '; the page shows: ' + document.body.innerText);
  };
  const editor = await until('the query editor',
    () => document.querySelector('.graphiql-query-editor .CodeMirror'));
  const query = editor.CodeMirror.getValue();
  (await until('the run button', () => document.querySelector('.graphiql-execute-button'))).click();
  const answer = await until('the answer', () => {
    const pane = document.querySelector('.graphiql-response .CodeMirror');
    const text = pane && pane.CodeMirror.getValue();
    return text && text.includes('"data"') ? text : null;
  });
  return { query, answer };
})()"#;

#[async_std::test]
async fn graphiql_renders_and_answers_hello_in_a_browser_that_reaches_no_other_host() {
    let app = spawn_app().await;
    let origin = format!("http://{}", app.address);
    let url = format!("{origin}/graphql?query=%7B%20hello%20%7D");
    let (outcome, requested) = async_std::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call(Some(&session), "Network.enable", json!({}));
        browser.call(Some(&session), "Page.navigate", json!({ "url": url }));
        let outcome = browser.call(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": RUN_IN_GRAPHIQL, "awaitPromise": true, "returnByValue": true }),
        );
        let requested = std::mem::take(&mut browser.requested);
        (outcome, requested)
    })
    .await;
    assert!(
        outcome.get("exceptionDetails").is_none(),
        "GraphiQL did not run the query: {outcome}"
    );
    let value = &outcome["result"]["value"];
    assert_eq!(
        value["query"], "{ hello }",
        "the editor shows the URL's query"
    );
    let answer: Value = serde_json::from_str(value["answer"].as_str().unwrap()).unwrap();
    assert_eq!(answer, json!({ "data": { "hello": "Hello, GraphQL!" } }));
    // The page, React, GraphiQL, its stylesheet, the start script and the POST: all from here.
    assert!(requested.len() >= 6, "{requested:?}");
    for url in &requested {
        assert!(
            url.starts_with(&format!("{origin}/")) || url.starts_with("data:"),
            "the page asked another host for {url}"
        );
    }
}

#[async_std::test]
async fn graphiql_is_sent_with_a_policy_that_forbids_other_hosts_and_its_files_are_served() {
    let app = spawn_app().await;
    let page = app
        .request("GET", "/graphql/", &[("Accept", "text/html")], b"")
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'; script-src 'self';"),
        "{}",
        page.headers
    );
    assert!(!page.body.contains("https://"), "{}", page.body);
    for (file, kind) in [
        ("graphiql-3.8.3.min.js", "javascript"),
        ("graphiql-3.8.3.min.css", "text/css"),
        ("react-18.3.1.production.min.js", "javascript"),
        ("react-dom-18.3.1.production.min.js", "javascript"),
        ("init.js", "javascript"),
    ] {
        let path = format!("/graphiql/{file}");
        assert!(page.body.contains(&path), "the page loads {path}");
        let asset = app.request("GET", &path, &[], b"").await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(
            asset.headers.to_ascii_lowercase().contains(kind),
            "{path}: {}",
            asset.headers
        );
        assert!(asset.body.len() > 500, "{path}");
    }
    let missing = app.request("GET", "/graphiql/jquery.js", &[], b"").await;
    assert_eq!(missing.status, 404);
}
