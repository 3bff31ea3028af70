//! A webhook receiver for the alert tests: a real HTTP listener on loopback.

use async_std::net::TcpListener;
use futures::{AsyncReadExt as _, AsyncWriteExt as _};

/// A tiny HTTP server on 127.0.0.1:0 that answers each request with the next status of
/// `statuses` (then 200) and hands over each JSON body.
pub(crate) async fn webhook_listener(
    statuses: Vec<u16>,
) -> (String, async_std::channel::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = async_std::channel::unbounded();
    async_std::task::spawn(async move {
        let mut statuses = statuses.into_iter();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body[..length].to_owned());
                    }
                }
            };
            let status = statuses.next().unwrap_or(200);
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
            if let Some(body) = body
                && status == 200
            {
                let _ = tx.send(serde_json::from_str(&body).unwrap()).await;
            }
        }
    });
    (url, rx)
}
