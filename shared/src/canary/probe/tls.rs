//! TLS for probes: the certificate authorities each endpoint trusts, a
//! verifier that keeps the expiry of the chain it verified, and the client
//! configuration of one attempt.
//!
//! **Trust.** `trust: "public-and-bundle"` (the default) trusts the system's
//! public roots (read once at cold start, as `rustls-native-certs` finds
//! them; `SSL_CERT_FILE` and `SSL_CERT_DIR` override the location) and the
//! endpoint's `ca_bundle`; `trust: "bundle-only"` trusts the `ca_bundle`
//! alone, so that a certificate a public CA issued for the name is refused.
//! Verification is webpki's, as rustls does it: the chain to a trust anchor
//! for server authentication, then the name.
//!
//! **`CertificateExpiryDays`** is read from the path webpki built from the
//! leaf to a trust anchor, not from every certificate the server sent:
//!
//! - **verified**: the earliest `notAfter` of the leaf and the
//!   intermediates on that path. A certificate the server sent that is not
//!   on it (an expired cross-signed copy of a root, an unrelated extra)
//!   does not count; nor does the anchor, which webpki trusts by its name
//!   and key, not by its validity.
//! - **refused** (expired, unknown CA, bad signature, no path): the leaf's
//!   own `notAfter`, the one certificate that is the server's whatever path
//!   a client builds; an expired leaf shows a negative number of days.
//!   Without a verified path nothing else the server sent is known to be on
//!   the way to a root: webpki reports the error of the last candidate it
//!   tried, and that may be the extra expired certificate (an expired
//!   cross-signed root refused as `tls_expired` while the real problem is
//!   an unknown CA), so its date must not count. The probe fails either
//!   way (`tls_*`) and the refusal shows in `Success`.
//! - **wrong name**: the path verified, so the path's expiry.

use std::sync::{Arc, Mutex};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use super::BuildError;
use super::outcome::{Failure, FailureClass};
use crate::canary::cert;
use crate::canary::config::{Endpoint, Trust};

/// What a handshake's verifier saw: the chain's expiry (epoch seconds).
pub type Expiry = Arc<Mutex<Option<i64>>>;

/// What tells two endpoints' trust anchors apart.
type TrustKey<'a> = (Trust, Option<&'a str>);

/// The trust anchors of each endpoint (`None` for http), one store per
/// distinct (`trust`, `ca_bundle`), the system's roots read at most once.
pub fn roots_of(endpoints: &[Endpoint]) -> Result<Vec<Option<Arc<RootCertStore>>>, BuildError> {
    let mut system: Option<Vec<CertificateDer<'static>>> = None;
    let mut built: Vec<(TrustKey, Arc<RootCertStore>)> = Vec::new();
    let mut out = Vec::with_capacity(endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        if e.url.scheme() != "https" {
            out.push(None);
            continue;
        }
        let key = (e.trust, e.ca_bundle.as_deref());
        if let Some((_, roots)) = built.iter().find(|(k, _)| *k == key) {
            out.push(Some(Arc::clone(roots)));
            continue;
        }
        let location = format!("CANARY_TARGETS[{i}]");
        let mut store = RootCertStore::empty();
        if let Some(pem) = e.ca_bundle.as_deref() {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|err| BuildError {
                    location: format!("{location}.ca_bundle"),
                    source: rustls::Error::General(err.to_string()),
                })?;
                store.add(cert).map_err(|source| BuildError {
                    location: format!("{location}.ca_bundle"),
                    source,
                })?;
            }
        }
        if e.trust == Trust::PublicAndBundle {
            let public = system.get_or_insert_with(system_roots);
            store.add_parsable_certificates(public.iter().cloned());
        }
        if store.is_empty() {
            return Err(BuildError {
                location,
                source: rustls::Error::General(
                    "no CA certificate was loaded from the system (and no ca_bundle is given)"
                        .to_owned(),
                ),
            });
        }
        let store = Arc::new(store);
        built.push((key, Arc::clone(&store)));
        out.push(Some(store));
    }
    Ok(out)
}

/// The system's CA certificates (those that do not load are logged).
fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %error, "a system CA certificate could not be loaded");
    }
    found.certs
}

/// The client configuration of one https attempt: `roots` verified as the
/// module says, the expiry noted in `expiry`; no session resumption (no
/// tickets, no session IDs: every probe verifies the whole chain, as a
/// client arriving after a failover would); ALPN h2, then http/1.1.
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    expiry: &Expiry,
) -> Result<ClientConfig, Failure> {
    let verifier = ChainVerifier {
        roots: Arc::clone(roots),
        algorithms: provider.signature_verification_algorithms,
        expiry: Arc::clone(expiry),
    };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| Failure::new(FailureClass::Tls, format!("TLS: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// webpki's verification, keeping the expiry of the verified path.
#[derive(Debug)]
struct ChainVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    expiry: Expiry,
}

impl ChainVerifier {
    fn note(&self, not_after: Option<i64>) {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner()) = not_after;
    }
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let verified = leaf.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        match verified {
            Ok(path) => {
                let ders: Vec<CertificateDer<'_>> = std::iter::once(path.end_entity().der())
                    .chain(path.intermediate_certificates().map(|c| c.der()))
                    .collect();
                let (earliest, unreadable) =
                    cert::earliest_not_after(ders.iter().map(|d| d.as_ref()));
                if let Some(err) = unreadable {
                    tracing::warn!(server = ?server_name, error = %err, "a certificate's expiry is unreadable");
                }
                self.note(earliest);
            }
            Err(err) => {
                self.note(cert::not_after(end_entity).ok());
                return Err(pki_error(err));
            }
        }
        leaf.verify_is_valid_for_subject_name(server_name)
            .map_err(pki_error)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki's error as rustls reports it (the cases probes tell apart, and
/// the rest as `Other`).
fn pki_error(err: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let cert = match err {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertNotValidForName(webpki::InvalidNameContext {
            expected,
            presented,
        }) => CertificateError::NotValidForNameContext {
            expected,
            presented,
        },
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(extra: serde_json::Value) -> Endpoint {
        let mut item = json!({"name": "api", "url": "https://api.example.com/"});
        if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut item, extra) {
            m.extend(e);
        }
        Endpoint::from_json("T", &item).unwrap()
    }

    #[test]
    fn bundle_only_trusts_the_bundle_alone_and_stores_are_shared() {
        let pem = include_str!("../testdata/ca.pem");
        let endpoints = [
            endpoint(json!({"trust": "bundle-only", "ca_bundle": pem})),
            endpoint(json!({"ca_bundle": pem})),
            endpoint(json!({"url": "http://a/"})),
            endpoint(json!({"trust": "bundle-only", "ca_bundle": pem})),
        ];
        let roots = roots_of(&endpoints).unwrap();
        let only = roots[0].as_ref().unwrap();
        assert_eq!(only.len(), 1);
        assert!(roots[2].is_none());
        assert!(Arc::ptr_eq(only, roots[3].as_ref().unwrap()));
        // The default mode adds the system's roots (the test machine has some).
        let system = system_roots().len();
        assert!(system > 0, "no system CA certificates on this machine");
        assert!(roots[1].as_ref().unwrap().len() > 1);
    }

    #[test]
    fn verifier_errors_keep_the_classes_probes_tell_apart() {
        assert!(matches!(
            pki_error(webpki::Error::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ));
        assert!(matches!(
            pki_error(webpki::Error::CertExpired {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(2)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1)),
            }),
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ));
        assert!(matches!(
            pki_error(webpki::Error::UnsupportedNameType),
            rustls::Error::InvalidCertificate(CertificateError::Other(_))
        ));
    }
}
