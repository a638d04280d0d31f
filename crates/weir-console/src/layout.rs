//! The page shell every page shares: the document head (the stylesheet and script,
//! both served from the binary), the navigation landmark and the main region.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Cluster,
    Topics,
    Groups,
    Queues,
    Live,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Cluster, "/console/", "Cluster"),
    (Section::Topics, "/console/topics", "Topics"),
    (Section::Groups, "/console/groups", "Groups"),
    (Section::Queues, "/console/queues", "Queues"),
    (Section::Live, "/console/live", "Live"),
];

/// A whole page: `title` (text, escaped), the current section highlighted.
pub(crate) fn page(title: &str, current: Option<Section>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Weir console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "Weir" }
                    nav aria-label="Console sections" {
                        ul {
                            @for (section, href, label) in SECTIONS {
                                li {
                                    @if Some(section) == current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                main #main {
                    (body)
                }
                footer {
                    "Weir " (env!("CARGO_PKG_VERSION"))
                }
            }
        }
    };
    Html(markup.into_string())
}

/// [`page`] as a response.
pub(crate) fn respond(title: &str, current: Option<Section>, body: Markup) -> Response {
    page(title, current, body).into_response()
}
