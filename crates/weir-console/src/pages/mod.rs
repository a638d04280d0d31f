//! The pages, one file per family, and what their handlers share: turning a core error
//! into a page that names the broker to ask instead, the CSRF field of every form, and
//! links that survive any group id.

pub(crate) mod assets;
pub(crate) mod browse;
pub(crate) mod cluster;
pub(crate) mod groups;
pub(crate) mod live;
pub(crate) mod queues;
pub(crate) mod topics;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use weir_broker::{Listener, Reason, RequestContext, metadata};

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
            let cluster = metadata::cluster(&self.core, &self.own_context(), &self.this_broker);
            let address = cluster
                .brokers
                .iter()
                .find(|b| b.node_id == node)
                .map(|b| b.endpoints.client().to_owned());
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

    /// Refuses a post from a caller who may not change anything (see
    /// [`Caller::may_change`]), without this process's token, or from another origin.
    pub(crate) fn check_post(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
        token: &str,
    ) -> Result<(), PageError> {
        crate::csrf::check(
            &self.csrf_token,
            headers,
            caller.host.as_deref(),
            caller.may_change(),
            token,
        )
    }
}

/// Who is asking: the request's context for the core, and whether it may change anything.
/// On a secured broker weir-server's console authentication puts the proved user's
/// [`RequestContext`] in the request's extensions, and the core authorises every
/// operation on her principal as for any listener; on an open broker the request is
/// anonymous, and its forms are served to a client through loopback only (see
/// `csrf::check`).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    ctx: RequestContext,
    /// A user proved by the broker's authentication (not anonymous on an open broker).
    authenticated: bool,
    /// The host the request was sent to (`csrf::request_host`).
    host: Option<String>,
}

impl Caller {
    /// The context the core checks this request's operations with.
    pub(crate) fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// Whether the console's forms are for this caller: an authenticated user (the core
    /// authorises each change she posts), or a client through loopback on an open broker.
    pub(crate) fn may_change(&self) -> bool {
        self.authenticated || self.ctx.peer.is_some_and(|p| p.ip().is_loopback())
    }
}

/// What a page shows in place of its forms to a caller who may not post them.
pub(crate) fn read_only() -> Markup {
    html! {
        p.note.read-only role="note" {
            "Read-only here: on a broker without authentication the console changes the \
             cluster only for a client connecting through loopback (open it at 127.0.0.1 or \
             localhost, e.g. over an SSH tunnel or kubectl port-forward)."
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, Infallible> {
        let host = crate::csrf::request_host(&parts.headers, &parts.uri);
        if let Some(ctx) = parts.extensions.get::<RequestContext>() {
            return Ok(Caller {
                ctx: ctx.clone(),
                authenticated: true,
                host,
            });
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Caller {
            ctx: RequestContext::anonymous(Listener::HTTP, peer),
            authenticated: false,
            host,
        })
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
        caller: &Caller,
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
            @if caller.may_change() {
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
        caller: &Caller,
        form: &DeleteForm,
    ) -> Result<(), PageError> {
        c.check_post(headers, caller, &form.csrf)?;
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

    fn anonymous(peer: Option<&str>) -> Caller {
        Caller {
            ctx: RequestContext::anonymous(Listener::HTTP, peer.map(|p| p.parse().unwrap())),
            authenticated: false,
            host: None,
        }
    }

    #[test]
    fn forms_are_for_clients_on_this_machine_or_authenticated_users() {
        assert!(anonymous(Some("127.0.0.1:5000")).may_change());
        assert!(anonymous(Some("[::1]:5000")).may_change());
        assert!(!anonymous(Some("10.1.2.3:5000")).may_change());
        assert!(!anonymous(None).may_change());
        let mut user = anonymous(Some("10.1.2.3:5000"));
        user.authenticated = true;
        assert!(user.may_change());
    }

    #[test]
    fn segments_keep_only_unreserved_characters() {
        assert_eq!(segment("orders-v1.2_x~"), "orders-v1.2_x~");
        assert_eq!(segment("a/b c<"), "a%2Fb%20c%3C");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
