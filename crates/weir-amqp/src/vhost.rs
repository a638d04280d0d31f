//! Virtual hosts as namespaces of the cluster's names (docs/amqp.md § Virtual hosts).
//! The vhost `/` is the root: its names are the cluster's own. Any other vhost `V` is
//! the prefix `V.`: its queue `Q` is the topic and share group `V.Q`, its exchange `E`
//! the exchange `V.E`, its predeclared exchanges `V.amq.direct`, ... and its default
//! exchange `V.amq.default` (the core knows them all: `weir_broker::exchanges::
//! predeclared`). A connection qualifies every name a client sends before the core sees
//! it ([`Vhost::queue`], [`Vhost::exchange`]) and shows the client its own names again
//! ([`Vhost::local`], [`Vhost::local_exchange`]), so what the core stores, routes,
//! authorises and dead-letters is the qualified name, and a Kafka client reading `V.Q`
//! reads vhost `V`'s queue `Q`.

use std::borrow::Cow;

use weir_broker::exchanges::{DEFAULT_EXCHANGE_ALIAS, MAX_VHOST_NAME_BYTES, is_vhost_name};

use crate::exchanges::is_default;

/// The root vhost's name.
pub const ROOT: &str = "/";

/// The vhost a connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    name: String,
    /// `""` for the root, `V.` for vhost `V`.
    prefix: String,
}

impl Default for Vhost {
    fn default() -> Self {
        Self::root()
    }
}

impl Vhost {
    /// The vhost `/`.
    pub fn root() -> Self {
        Self {
            name: ROOT.to_owned(),
            prefix: String::new(),
        }
    }

    /// The vhost `name` (as `connection.open` names it), or why it cannot be one. A
    /// leading `/` is left out (`/sales` is `sales`), as URLs such as
    /// `amqp://host/%2Fsales` name it.
    pub fn named(name: &str) -> Result<Self, String> {
        if name == ROOT || name.is_empty() {
            return Ok(Self::root());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if !is_vhost_name(bare) {
            return Err(format!(
                "vhost '{name}' cannot be served: a vhost other than '/' is the name prefix \
                 of its queues and exchanges, 1 to {MAX_VHOST_NAME_BYTES} ASCII letters, \
                 digits, '-' and '_' (not 'amq')"
            ));
        }
        Ok(Self {
            name: bare.to_owned(),
            prefix: format!("{bare}."),
        })
    }

    /// Its name, as errors show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `""` for the root, `V.` for vhost `V`: every name of the vhost starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_root(&self) -> bool {
        self.prefix.is_empty()
    }

    /// The cluster's name of the vhost's queue `local` (its topic and share group).
    pub fn queue(&self, local: &str) -> String {
        format!("{}{local}", self.prefix)
    }

    /// The cluster's name of the vhost's exchange `local`: the default exchange (`""` or
    /// `amq.default`) is `""` in the root and `V.amq.default` in vhost `V`. Borrowed in
    /// the root (every publish asks it).
    pub fn exchange<'a>(&self, local: &'a str) -> Cow<'a, str> {
        match (is_default(local), self.is_root()) {
            (true, true) => Cow::Borrowed(""),
            (false, true) => Cow::Borrowed(local),
            (true, false) => Cow::Owned(format!("{}{DEFAULT_EXCHANGE_ALIAS}", self.prefix)),
            (false, false) => Cow::Owned(format!("{}{local}", self.prefix)),
        }
    }

    /// The vhost's own name for the queue (or any name) `qualified`; a name outside the
    /// vhost is shown whole.
    pub fn local<'a>(&self, qualified: &'a str) -> &'a str {
        qualified.strip_prefix(&self.prefix).unwrap_or(qualified)
    }

    /// The vhost's own name for the exchange `qualified` (its default exchange as `""`).
    pub fn local_exchange<'a>(&self, qualified: &'a str) -> &'a str {
        match self.local(qualified) {
            DEFAULT_EXCHANGE_ALIAS => "",
            local => local,
        }
    }

    /// `what 'name' in vhost 'V'`, RabbitMQ's way of naming a resource in errors.
    pub fn describe(&self, what: &str, local: &str) -> String {
        format!("{what} '{local}' in vhost '{}'", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_vhost_names_everything_as_it_is() {
        let root = Vhost::named("/").unwrap();
        assert!(root.is_root());
        assert_eq!(root.queue("sales.orders"), "sales.orders");
        assert_eq!(root.exchange(""), "");
        assert_eq!(root.exchange("amq.default"), "");
        assert_eq!(root.exchange("logs"), "logs");
        assert_eq!(root.local("sales.orders"), "sales.orders");
        assert_eq!(root.local_exchange(""), "");
    }

    #[test]
    fn a_vhost_is_the_prefix_of_its_names_and_shows_them_without_it() {
        let v = Vhost::named("sales").unwrap();
        assert_eq!(Vhost::named("/sales").unwrap(), v);
        assert_eq!(v.queue("orders"), "sales.orders");
        assert_eq!(v.exchange("logs"), "sales.logs");
        assert_eq!(v.exchange("amq.topic"), "sales.amq.topic");
        assert_eq!(v.exchange(""), "sales.amq.default");
        assert_eq!(v.exchange("amq.default"), "sales.amq.default");
        assert_eq!(v.local("sales.orders"), "orders");
        assert_eq!(v.local_exchange("sales.amq.default"), "");
        assert_eq!(v.local_exchange("sales.amq.topic"), "amq.topic");
        // Another vhost's name is shown whole.
        assert_eq!(v.local("hr.people"), "hr.people");
        assert_eq!(
            v.describe("queue", "orders"),
            "queue 'orders' in vhost 'sales'"
        );
    }

    #[test]
    fn a_vhost_name_cannot_hold_a_dot_or_be_amq() {
        for bad in [
            "a.b",
            "amq",
            "/a/b",
            "sp ace",
            &"v".repeat(MAX_VHOST_NAME_BYTES + 1),
        ] {
            let refused = Vhost::named(bad).unwrap_err();
            assert!(refused.contains("cannot be served"), "{refused}");
        }
        assert!(Vhost::named("tenant-1_prod").is_ok());
    }
}
