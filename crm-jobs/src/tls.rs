//! The TLS settings both HTTP transports share: rustls 0.23 on ring, trusting the system's roots
//! plus an optional private CA file (`CRM_CA_FILE`), and one line saying why a handshake failed.
//! surf's transport (`https.rs`) wraps it with futures-rustls, the tokio one (`tokio_http.rs`)
//! with tokio-rustls: one trust policy whichever runtime carries the bytes.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// A client configuration trusting the system's roots and, if given, every certificate in the
/// PEM file `ca_file`. A missing, unreadable or empty CA file is an error now, not at the first
/// request.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    // Unreadable system stores are skipped: a private CA alone may be all that is needed.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("CRM_CA_FILE: cannot read {shown}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("CRM_CA_FILE: no PEM certificate in {shown}"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("CRM_CA_FILE: a certificate in {shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One line saying why the handshake failed: an untrusted or misnamed certificate by name.
pub(crate) fn handshake_reason(error: &std::io::Error, host: &str) -> String {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
            CertificateError::UnknownIssuer => "certificate not trusted (UnknownIssuer)".to_owned(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for the host name {host} (NotValidForName)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired (Expired)".to_owned()
            }
            other => format!("certificate refused ({other:?})"),
        },
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {error}"),
    }
}

/// `work`'s outcome, or "`what` within `limit`" when it takes longer (async-io's timer: any
/// executor).
pub(crate) async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let timeout = async {
        async_io::Timer::after(limit).await;
        Err(format!("{what} within {limit:?}"))
    };
    futures::pin_mut!(work, timeout);
    futures::future::select(work, timeout)
        .await
        .factor_first()
        .0
}
