//! A real TLS server for the https tests (crm-jobs' and the `crm` binary's): a CA made for the
//! test, and a rustls listener with a certificate it signed, in front of a plain HTTP server.

use std::path::PathBuf;
use std::sync::Arc;

use async_std::net::{TcpListener, TcpStream};
use futures::AsyncReadExt as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA made for this test, its PEM file, and a server certificate it signed for 127.0.0.1
/// only (so `localhost` is a wrong name).
pub(crate) struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA's certificate, PEM (what `CRM_CA_FILE` names).
    pub(crate) ca_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

pub(crate) fn test_ca() -> TestCa {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "crm test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    TestCa {
        _dir: dir,
        ca_file,
        server: Arc::new(server),
    }
}

/// A TLS listener on 127.0.0.1:0 that hands each decrypted connection to `upstream` (an
/// `http://host:port/...` URL); returns its port.
pub(crate) async fn tls_proxy(ca: &TestCa, upstream: &str) -> u16 {
    let upstream = upstream
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = futures_rustls::TlsAcceptor::from(ca.server.clone());
    async_std::task::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            async_std::task::spawn(async move {
                // As TLS terminators do: otherwise Nagle holds the answer's second TLS record
                // until the client's delayed ACK, 40 ms per request (measured: 45 ms per
                // heartbeat over this proxy, 3.3 ms with these two lines; plain http 0.6 ms).
                let _ = stream.set_nodelay(true);
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(plain) = TcpStream::connect(upstream.as_str()).await else {
                    return;
                };
                let (tls_read, mut tls_write) = tls.split();
                let _ = plain.set_nodelay(true);
                let mut plain_write = plain.clone();
                let up = futures::io::copy(tls_read, &mut plain_write);
                let down = futures::io::copy(plain, &mut tls_write);
                futures::pin_mut!(up, down);
                let _ = futures::future::select(up, down).await;
            });
        }
    });
    port
}
