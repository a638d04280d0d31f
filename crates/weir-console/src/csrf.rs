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
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::PageError;

/// The name of the hidden field that carries the token.
pub(crate) const FIELD: &str = "csrf";

/// A new token, random per process.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The host a request was sent to: its `Host` header (HTTP/1.1), else its URI's authority
/// (HTTP/2 carries it as `:authority`, with no `Host` header: a browser speaks HTTP/2 to
/// the console over TLS).
pub(crate) fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    match headers.get(header::HOST) {
        Some(host) => host.to_str().ok().map(str::to_owned),
        None => uri.authority().map(|a| a.as_str().to_owned()),
    }
}

/// Refuses a post from a caller who may not change anything (`may_change`: an
/// authenticated user, or a client on loopback of an open broker), whose token is not
/// `expected`, or whose `Origin` is another host than `host`, the one it was sent to
/// ([`request_host`]).
pub(crate) fn check(
    expected: &str,
    headers: &HeaderMap,
    host: Option<&str>,
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
        let host = host.unwrap_or("");
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

/// Whether the host a request names ([`request_host`]) is an IP address or `localhost`
/// (with any port), or absent (not a browser: nothing to rebind).
pub(crate) fn address_host(headers: &HeaderMap, uri: &Uri) -> bool {
    if headers.get(header::HOST).is_none() && uri.authority().is_none() {
        return true;
    }
    let Some(host) = request_host(headers, uri) else {
        return false;
    };
    let host = host.as_str();
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
    if !address_host(request.headers(), request.uri()) {
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

    /// `check` as a handler calls it: the host taken from the request.
    fn posted(token: &str, headers: &HeaderMap, may_change: bool, sent: &str) -> bool {
        let host = request_host(headers, &Uri::from_static("/console/topics"));
        check(token, headers, host.as_deref(), may_change, sent).is_ok()
    }

    #[test]
    fn a_post_needs_the_token_and_the_same_origin_from_a_caller_who_may_change() {
        let token = new_token();
        assert_eq!(token.len(), 32);
        let same = headers("127.0.0.1:9293", Some("http://127.0.0.1:9293"));
        assert!(posted(&token, &same, true, &token));
        assert!(posted(&token, &headers("[::1]:9293", None), true, &token));
        assert!(!posted(&token, &same, true, ""));
        assert!(!posted(&token, &same, true, &new_token()));
        let other = headers("127.0.0.1:9293", Some("http://evil.example"));
        assert!(!posted(&token, &other, true, &token));
        let null = headers("127.0.0.1:9293", Some("null"));
        assert!(!posted(&token, &null, true, &token));
        let pod = headers("10.0.0.1:9293", Some("http://10.0.0.1:9293"));
        assert!(posted(&token, &pod, true, &token));
        assert!(
            !posted(&token, &pod, false, &token),
            "an open broker's client off loopback is refused"
        );
    }

    #[test]
    fn over_http2_the_host_is_the_uri_s_authority() {
        // HTTP/2 (a browser over TLS) sends `:authority`, which the server puts in the
        // URI, and no Host header: the console's forms were refused as cross-origin.
        let token = new_token();
        let mut h2 = HeaderMap::new();
        h2.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:9293"),
        );
        let uri = Uri::from_static("https://127.0.0.1:9293/console/topics");
        let host = request_host(&h2, &uri);
        assert_eq!(host.as_deref(), Some("127.0.0.1:9293"));
        assert!(check(&token, &h2, host.as_deref(), true, &token).is_ok());
        let evil = Uri::from_static("https://evil.example:9293/console/topics");
        let host = request_host(&h2, &evil);
        assert!(check(&token, &h2, host.as_deref(), true, &token).is_err());
        assert!(
            !address_host(&HeaderMap::new(), &evil),
            "rebinding over HTTP/2"
        );
        assert!(address_host(&HeaderMap::new(), &uri));
    }

    #[test]
    fn only_addresses_and_localhost_may_name_the_console() {
        let path = Uri::from_static("/console/");
        let allowed = [
            "127.0.0.1:9293",
            "localhost:9293",
            "LOCALHOST",
            "[::1]:9293",
            "10.0.0.1",
            "[fe80::1]",
        ];
        for host in allowed {
            assert!(address_host(&headers(host, None), &path), "{host}");
        }
        let refused = [
            "evil.example:9293",
            "weir-0.weir:9293",
            "127.0.0.1.nip.io",
            "localhost.evil",
        ];
        for host in refused {
            assert!(!address_host(&headers(host, None), &path), "{host}");
        }
        assert!(
            address_host(&HeaderMap::new(), &path),
            "no Host: not a browser"
        );
    }
}
