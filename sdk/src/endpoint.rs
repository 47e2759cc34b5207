//! Which URLs the SDK will talk to.
//!
//! Owns: the rule that every endpoint (issuer, token endpoint, `jwks_uri`,
//! audit endpoint, resource AS) is `https`, or plain `http` on a loopback
//! host only (a broker in development, a test).
//! Must never: accept a URL with credentials in it, a fragment, or another
//! scheme; tokens, secrets and keys only travel over TLS off this host.

use std::net::IpAddr;

/// Why a URL is not an endpoint the SDK talks to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{what} is not a valid absolute URL")]
    Invalid { what: &'static str },
    #[error("{what} must be https (plain http only on a loopback host)")]
    NotHttps { what: &'static str },
    #[error("{what} must not carry credentials or a fragment")]
    Unclean { what: &'static str },
}

/// Check `url` (named `what` in the error) and return it normalised.
pub(crate) fn checked(url: &str, what: &'static str) -> Result<url::Url, EndpointError> {
    let u = url::Url::parse(url).map_err(|_| EndpointError::Invalid { what })?;
    if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
        return Err(EndpointError::Unclean { what });
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback(&u) => Ok(u),
        _ => Err(EndpointError::NotHttps { what }),
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An issuer identifier without a trailing slash, as the broker writes it in
/// `iss` (RFC 8414 §2: compared as strings).
pub(crate) fn issuer(issuer: &str) -> Result<String, EndpointError> {
    checked(issuer, "issuer")?;
    Ok(issuer.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_on_loopback() {
        assert!(checked("https://broker.example.com/token", "x").is_ok());
        assert!(checked("http://127.0.0.1:8080/token", "x").is_ok());
        assert!(checked("http://[::1]:8080/token", "x").is_ok());
        assert!(checked("http://localhost/token", "x").is_ok());
        for bad in [
            "http://broker.example.com/token",
            "http://10.0.0.1/token",
            "ftp://127.0.0.1/x",
        ] {
            assert_eq!(checked(bad, "x"), Err(EndpointError::NotHttps { what: "x" }), "{bad}");
        }
        assert_eq!(checked("/token", "x"), Err(EndpointError::Invalid { what: "x" }));
        assert_eq!(
            checked("https://u:p@broker.example.com/", "x"),
            Err(EndpointError::Unclean { what: "x" })
        );
    }

    #[test]
    fn an_issuer_loses_its_trailing_slash() {
        assert_eq!(issuer("https://b.example.com/").unwrap(), "https://b.example.com");
        assert_eq!(issuer("https://b.example.com/t").unwrap(), "https://b.example.com/t");
    }
}
