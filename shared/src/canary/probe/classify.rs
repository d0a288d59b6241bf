//! Failures sorted into classes: a TLS handshake's, an HTTP exchange's.

use std::error::Error as StdError;
use std::io;

use super::outcome::{Failure, FailureClass};

/// Every error in the chain, looking inside `io::Error`s (whose `source`
/// skips the error they wrap).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// A connection that broke (reset, closed, refused) rather than answered wrongly.
fn is_broken(errors: &[&(dyn StdError + 'static)]) -> bool {
    errors.iter().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            )
        })
    })
}

/// A failed TLS handshake: the rustls error's class, or `connect` when the
/// connection broke during it.
pub fn classify_tls(err: &io::Error) -> Failure {
    let errors = chain(err);
    if let Some(tls) = errors
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
    {
        return Failure::new(tls_class(tls), format!("TLS: {tls}"));
    }
    let class = if is_broken(&errors) {
        FailureClass::Connect
    } else {
        FailureClass::Tls
    };
    Failure::new(class, format!("TLS handshake: {err}"))
}

/// A failed HTTP exchange: `connect` when the connection broke or closed
/// before the answer, else `http` (not HTTP, or a protocol error).
pub fn classify_http(err: &hyper::Error) -> Failure {
    let errors = chain(err);
    let deepest = errors
        .last()
        .map_or_else(|| err.to_string(), |e| e.to_string());
    let class = if err.is_incomplete_message()
        || err.is_canceled()
        || err.is_closed()
        || is_broken(&errors)
    {
        FailureClass::Connect
    } else {
        FailureClass::Http
    };
    let message = if err.is_incomplete_message() {
        "connection closed before message completed".to_owned()
    } else if deepest == err.to_string() {
        deepest
    } else {
        format!("{err}: {deepest}")
    };
    Failure::new(class, message)
}

fn tls_class(err: &rustls::Error) -> FailureClass {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => FailureClass::TlsUnknownCa,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => FailureClass::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => FailureClass::TlsWrongName,
            _ => FailureClass::Tls,
        },
        _ => FailureClass::Tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn tls_errors_are_told_apart() {
        let class = |c| tls_class(&rustls::Error::InvalidCertificate(c));
        assert_eq!(class(C::UnknownIssuer), FailureClass::TlsUnknownCa);
        assert_eq!(class(C::Expired), FailureClass::TlsExpired);
        assert_eq!(class(C::NotValidForName), FailureClass::TlsWrongName);
        assert_eq!(class(C::BadSignature), FailureClass::Tls);
        assert_eq!(
            tls_class(&rustls::Error::HandshakeNotComplete),
            FailureClass::Tls
        );
    }

    #[test]
    fn the_chain_looks_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(C::UnknownIssuer);
        let io = io::Error::other(inner);
        let errors = chain(&io);
        assert_eq!(errors.len(), 2);
        assert!(errors[1].downcast_ref::<rustls::Error>().is_some());
        assert_eq!(classify_tls(&io).class, FailureClass::TlsUnknownCa);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_tls(&reset).class, FailureClass::Connect);
    }
}
