//! The checks every form post passes. Against cross-site request forgery (another site
//! open in the same browser must not be able to make it post to the console on
//! loopback), two checks, either of which stops it: the form carries this process's
//! token (a page of another origin cannot read it), and a browser's `Origin` header, when
//! sent, names the host the request was sent to. And on a broker without authentication,
//! a post (anything that changes the cluster) is served only to a client on loopback: the
//! container images and manifests bind the admin listener to every interface so that
//! Prometheus can scrape it, and there an open console shows but changes nothing. On a
//! secured broker the user is proved and the core authorises each change, wherever she
//! connects from.
//!
//! Against DNS rebinding (a site whose name is made to resolve to 127.0.0.1 is, to the
//! browser, the same origin as the console, so it could read pages and their tokens),
//! every console request must name the console by an IP address or `localhost`
//! ([`only_address_hosts`]), as Jupyter and others do.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::PageError;

/// The name of the hidden field that carries the token.
pub(crate) const FIELD: &str = "csrf";

/// A new token, random per process.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Refuses a post from a caller who may not change anything (`may_change`: an
/// authenticated user, or a client on loopback of an open broker), whose token is not
/// `expected`, or whose `Origin` is another host.
pub(crate) fn check(
    expected: &str,
    headers: &HeaderMap,
    may_change: bool,
    token: &str,
) -> Result<(), PageError> {
    let refused = |message: &str| PageError::Refused {
        status: StatusCode::FORBIDDEN,
        message: message.to_owned(),
    };
    if !may_change {
        return Err(refused(
            "on a broker without authentication the console changes nothing for clients off \
             loopback: open it at 127.0.0.1 or localhost (e.g. over an SSH tunnel or \
             `kubectl port-forward`)",
        ));
    }
    if token != expected {
        return Err(refused(
            "the form's token is missing or stale (the broker restarted?): reload the page and send it again",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(refused(
                "the form was posted from another origin than the console's",
            ));
        }
    }
    Ok(())
}

/// Whether the `Host` a request names is an IP address or `localhost` (with any port), or
/// absent (not a browser: nothing to rebind).
pub(crate) fn address_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// Refuses a console request whose `Host` is a name other than `localhost` (see the
/// module's note on DNS rebinding).
pub(crate) async fn only_address_hosts(request: Request, next: Next) -> Response {
    if !address_host(request.headers()) {
        return PageError::Refused {
            status: StatusCode::FORBIDDEN,
            message: "the console answers only when it is opened by an IP address or as \
                      localhost (e.g. http://127.0.0.1:9293/console/), never through another \
                      host name: a page of another site could make its name point here"
                .into(),
        }
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn a_post_needs_the_token_and_the_same_origin_from_a_caller_who_may_change() {
        let token = new_token();
        assert_eq!(token.len(), 32);
        let same = headers("127.0.0.1:9293", Some("http://127.0.0.1:9293"));
        assert!(check(&token, &same, true, &token).is_ok());
        assert!(check(&token, &headers("[::1]:9293", None), true, &token).is_ok());
        assert!(check(&token, &same, true, "").is_err());
        assert!(check(&token, &same, true, &new_token()).is_err());
        let other = headers("127.0.0.1:9293", Some("http://evil.example"));
        assert!(check(&token, &other, true, &token).is_err());
        let null = headers("127.0.0.1:9293", Some("null"));
        assert!(check(&token, &null, true, &token).is_err());
        let pod = headers("10.0.0.1:9293", Some("http://10.0.0.1:9293"));
        assert!(check(&token, &pod, true, &token).is_ok());
        assert!(
            check(&token, &pod, false, &token).is_err(),
            "an open broker's client off loopback is refused"
        );
    }

    #[test]
    fn only_addresses_and_localhost_may_name_the_console() {
        let allowed = [
            "127.0.0.1:9293",
            "localhost:9293",
            "LOCALHOST",
            "[::1]:9293",
            "10.0.0.1",
            "[fe80::1]",
        ];
        for host in allowed {
            assert!(address_host(&headers(host, None)), "{host}");
        }
        let refused = [
            "evil.example:9293",
            "weir-0.weir:9293",
            "127.0.0.1.nip.io",
            "localhost.evil",
        ];
        for host in refused {
            assert!(!address_host(&headers(host, None)), "{host}");
        }
        assert!(address_host(&HeaderMap::new()), "no Host: not a browser");
    }
}
