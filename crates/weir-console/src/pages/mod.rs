//! The pages, one file per family, and what their handlers share: turning a core error
//! into a page that names the broker to ask instead, the CSRF field of every form, and
//! links that survive any group id.

pub(crate) mod assets;
pub(crate) mod browse;
pub(crate) mod cluster;
pub(crate) mod groups;
pub(crate) mod live;
pub(crate) mod topics;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use weir_broker::{Reason, metadata};

use crate::Console;
use crate::error::PageError;

/// What a handler's body returns.
pub(crate) type PageResult = Result<Response, PageError>;

impl Console {
    /// The answer for `result`: the page, or the error page (naming the broker that
    /// leads or coordinates what was asked, where that is the problem).
    pub(crate) fn finish(&self, result: PageResult) -> Response {
        match result {
            Ok(page) => page,
            Err(e) => self.explain(e).into_response(),
        }
    }

    fn explain(&self, e: PageError) -> PageError {
        let PageError::Broker { error, hint: None } = e else {
            return e;
        };
        let (node, what) = match error.reason {
            Reason::NotLeader { leader } => (leader, "leads this partition"),
            Reason::NotCoordinator { coordinator } => (coordinator, "coordinates this group"),
            _ => return PageError::Broker { error, hint: None },
        };
        let hint = if node < 0 {
            "No broker does right now (an election is under way?): retry shortly.".to_owned()
        } else {
            let cluster = metadata::cluster(&self.core, &self.context(), &self.this_broker);
            let address = cluster
                .brokers
                .iter()
                .find(|b| b.node_id == node)
                .map(|b| b.endpoints.client.clone());
            match address {
                Some(address) => format!(
                    "Broker {node} {what} (client address {address}); open the console on \
                     that broker's admin listener to see it."
                ),
                None => format!(
                    "Broker {node} {what}; open the console on that broker's admin listener \
                     to see it."
                ),
            }
        };
        PageError::Broker {
            error,
            hint: Some(hint),
        }
    }

    /// The hidden field every form carries.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(crate::csrf::FIELD) value=(self.csrf_token); }
    }

    /// Refuses a post from another machine, without this process's token, or from
    /// another origin.
    pub(crate) fn check_post(
        &self,
        headers: &HeaderMap,
        peer: &Peer,
        token: &str,
    ) -> Result<(), PageError> {
        crate::csrf::check(&self.csrf_token, headers, peer.0, token)
    }
}

/// The client's address, where the listener says it (axum's `ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub Option<SocketAddr>);

impl Peer {
    /// Through loopback: the console's forms are for it (see `csrf::check`).
    pub(crate) fn is_local(&self) -> bool {
        self.0.is_some_and(|p| p.ip().is_loopback())
    }
}

/// What a page shows in place of its forms to a client not on loopback.
pub(crate) fn read_only() -> Markup {
    html! {
        p.note.read-only role="note" {
            "Read-only here: until authentication lands the console changes the cluster only \
             for a client connecting through loopback (open it at 127.0.0.1 or localhost, \
             e.g. over an SSH tunnel or kubectl port-forward)."
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Peer, Infallible> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// A destructive action whose confirmation asks for the thing's name to be typed: what
/// its page and its post share.
pub(crate) struct Deletion<'a> {
    /// "topic" or "group".
    pub(crate) kind: &'static str,
    /// How its name is called: "name" or "id".
    pub(crate) name_kind: &'static str,
    pub(crate) name: &'a str,
    /// Where the form posts.
    pub(crate) action: String,
    /// Where "Cancel" leads.
    pub(crate) cancel: String,
}

impl Deletion<'_> {
    /// The confirmation page: `warning`, then the form (or the read-only note).
    pub(crate) fn page(
        &self,
        c: &Console,
        peer: &Peer,
        section: crate::layout::Section,
        warning: Markup,
    ) -> Response {
        let Deletion {
            kind,
            name_kind,
            name,
            ..
        } = self;
        let body = html! {
            h1 { "Delete " (kind) " " (name) "?" }
            p.warning role="alert" { (warning) }
            @if peer.is_local() {
                form.stack method="post" action=(self.action) {
                    (c.csrf_field())
                    label for="confirm" { "Type the " (kind) "'s " (name_kind) " to confirm" }
                    input #confirm name="confirm" required autocomplete="off";
                    button.danger type="submit" { "Delete " (kind) }
                }
            } @else {
                (read_only())
            }
            p { a href=(self.cancel) { "Cancel" } }
        };
        crate::layout::respond(&format!("Delete {name}"), Some(section), body)
    }

    /// Refuses `form` unless it is a valid post that typed the name.
    pub(crate) fn check(
        &self,
        c: &Console,
        headers: &HeaderMap,
        peer: &Peer,
        form: &DeleteForm,
    ) -> Result<(), PageError> {
        c.check_post(headers, peer, &form.csrf)?;
        if form.confirm != self.name {
            return Err(PageError::Refused {
                status: axum::http::StatusCode::BAD_REQUEST,
                message: format!(
                    "not deleted: type the {}'s {}, {}, to confirm the deletion",
                    self.kind, self.name_kind, self.name
                ),
            });
        }
        Ok(())
    }
}

/// The post of a [`Deletion`]'s form.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct DeleteForm {
    csrf: String,
    confirm: String,
}

/// The 404 page of any other path.
pub(crate) async fn not_found(uri: Uri) -> Response {
    PageError::NotFound(format!("there is no page at {}", uri.path())).into_response()
}

/// `text` as one URL path segment (percent-encoding all but unreserved characters), for
/// links to groups, whose ids may hold any character.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` as a query-string value.
pub(crate) fn query_value(text: &str) -> String {
    segment(text)
}

/// A partition number from a path, or a clear 400.
pub(crate) fn parse_partition(text: &str) -> Result<u32, PageError> {
    text.parse::<u32>().map_err(|_| {
        PageError::BadInput(format!(
            "{text:?} is not a partition number (partitions are numbered from 0)"
        ))
    })
}

/// A list of broker ids as text.
pub(crate) fn ids(ids: &[i32]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_for_clients_on_this_machine() {
        assert!(Peer(Some("127.0.0.1:5000".parse().unwrap())).is_local());
        assert!(Peer(Some("[::1]:5000".parse().unwrap())).is_local());
        assert!(!Peer(Some("10.1.2.3:5000".parse().unwrap())).is_local());
        assert!(!Peer(None).is_local());
    }

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(segment("orders-v1.2_x~"), "orders-v1.2_x~");
        assert_eq!(segment("a/b c<"), "a%2Fb%20c%3C");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
