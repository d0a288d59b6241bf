//! Where responses may go, and how a response URL shows in logs.
//!
//! A pre-signed URL is a credential: logs show `scheme://host/path` only.
//! Stack data is only ever sent over https; plain http is allowed for
//! loopback hosts when `ALLOW_INSECURE_RESPONSE_URL=true` (tests, the demo).

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// Why a response URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("not a URL")]
    Unparsable,
    #[error("scheme {0} is not https")]
    Scheme(String),
    #[error(
        "http is refused (responses go over https; ALLOW_INSECURE_RESPONSE_URL=true allows http to loopback hosts only)"
    )]
    InsecureNotAllowed,
    #[error("http is allowed for loopback hosts only, not {0}")]
    NotLoopback(String),
}

/// Whether responses may be PUT to `url`.
pub fn check_response_url(url: &str, allow_insecure: bool) -> Result<Url, UrlRefused> {
    let parsed = Url::parse(url).map_err(|_| UrlRefused::Unparsable)?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "https" => Err(UrlRefused::Unparsable),
        "http" if !allow_insecure => Err(UrlRefused::InsecureNotAllowed),
        "http" => {
            let host = parsed.host_str().ok_or(UrlRefused::Unparsable)?;
            let ip = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>();
            if host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback()) {
                Ok(parsed)
            } else {
                Err(UrlRefused::NotLoopback(host.to_owned()))
            }
        }
        other => Err(UrlRefused::Scheme(other.to_owned())),
    }
}

/// A URL for logs: scheme, host, port and path; never the query (the
/// signature), the fragment or user info.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(self.0) {
            Ok(url) => {
                write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
                if let Some(port) = url.port() {
                    write!(f, ":{port}")?;
                }
                f.write_str(url.path())
            }
            Err(_) => f.write_str("<unparsable URL>"),
        }
    }
}

pub fn redact(url: &str) -> String {
    Redacted(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn https_anywhere_http_only_to_loopback_with_the_flag() {
        let s3 = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/x?X-Amz-Signature=abc";
        assert!(check_response_url(s3, false).is_ok());
        assert!(check_response_url(s3, true).is_ok());
        for local in [
            "http://127.0.0.1:5000/b/k?X-Amz-Signature=1",
            "http://[::1]/k",
            "http://localhost:9/k",
        ] {
            assert_eq!(
                check_response_url(local, false).unwrap_err(),
                UrlRefused::InsecureNotAllowed
            );
            assert!(check_response_url(local, true).is_ok(), "{local}");
        }
        assert_eq!(
            check_response_url("http://example.com/k", true).unwrap_err(),
            UrlRefused::NotLoopback("example.com".into())
        );
        assert!(matches!(
            check_response_url("http://10.0.0.1/k", true),
            Err(UrlRefused::NotLoopback(_))
        ));
        assert!(matches!(
            check_response_url("http://127.0.0.1.nip.io/k", true),
            Err(UrlRefused::NotLoopback(_))
        ));
        assert_eq!(
            check_response_url("ftp://127.0.0.1/k", true).unwrap_err(),
            UrlRefused::Scheme("ftp".into())
        );
        assert_eq!(
            check_response_url("file:///etc/passwd", true).unwrap_err(),
            UrlRefused::Scheme("file".into())
        );
        assert_eq!(
            check_response_url("not a url", true).unwrap_err(),
            UrlRefused::Unparsable
        );
    }

    #[test]
    fn redaction_keeps_host_and_path_only() {
        assert_eq!(
            redact(
                "https://user:pw@bucket.s3.amazonaws.com/arn%3Aaws/req?X-Amz-Signature=secret#f"
            ),
            "https://bucket.s3.amazonaws.com/arn%3Aaws/req"
        );
        assert_eq!(
            redact("http://127.0.0.1:5000/b/k?X-Amz-Credential=c"),
            "http://127.0.0.1:5000/b/k"
        );
        assert_eq!(redact("::"), "<unparsable URL>");
    }

    proptest! {
        #[test]
        fn the_query_never_shows(path in "[a-z0-9/]{0,30}", secret in "SIG[A-Za-z0-9%]{8,40}") {
            let url = format!("https://s3.amazonaws.com/{path}?X-Amz-Signature={secret}");
            let shown = redact(&url);
            prop_assert!(!shown.contains(&secret));
            prop_assert!(!shown.contains('?'));
        }

        #[test]
        fn no_non_loopback_http_is_ever_allowed(a in 0u8..=255, b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
            let url = format!("http://{a}.{b}.{c}.{d}/k");
            prop_assert_eq!(check_response_url(&url, true).is_ok(), a == 127);
            prop_assert!(check_response_url(&url, false).is_err());
        }
    }
}
