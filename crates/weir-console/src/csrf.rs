//! The check every form post passes, against cross-site request forgery: another site
//! open in the same browser must not be able to make it post to the console on
//! loopback. Two checks, either of which stops it: the form carries this process's
//! token (a page of another origin cannot read it), and a browser's `Origin` header, when
//! sent, names the host the request was sent to.

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::PageError;

/// The name of the hidden field that carries the token.
pub(crate) const FIELD: &str = "csrf";

/// A new token, random per process.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Refuses a post whose token is not `expected` or whose `Origin` is another host.
pub(crate) fn check(expected: &str, headers: &HeaderMap, token: &str) -> Result<(), PageError> {
    let refused = |message: &str| PageError::Refused {
        status: StatusCode::FORBIDDEN,
        message: message.to_owned(),
    };
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
    fn a_post_needs_the_token_and_the_same_origin() {
        let token = new_token();
        assert_eq!(token.len(), 32);
        let same = headers("127.0.0.1:9293", Some("http://127.0.0.1:9293"));
        assert!(check(&token, &same, &token).is_ok());
        assert!(check(&token, &headers("127.0.0.1:9293", None), &token).is_ok());
        assert!(check(&token, &same, "").is_err());
        assert!(check(&token, &same, &new_token()).is_err());
        let other = headers("127.0.0.1:9293", Some("http://evil.example"));
        assert!(check(&token, &other, &token).is_err());
        let null = headers("127.0.0.1:9293", Some("null"));
        assert!(check(&token, &null, &token).is_err());
    }
}
