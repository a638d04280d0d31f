//! The handshake of a connection: `connection.start` with the capabilities offered,
//! `start-ok` with PLAIN or AMQPLAIN checked by the core's `authenticate`, `tune`/`tune-ok`
//! (channel_max, frame_max, heartbeat) and `connection.open`.

use std::sync::atomic::Ordering;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use weir_broker::Reason;
use weir_broker::audit::Outcome;
use weir_broker::authn::{Credentials, FAILED_AUTHENTICATION_DELAY, Mechanism};
use weir_broker::security::Operation;

use crate::errors::{ACCESS_REFUSED, COMMAND_INVALID, CONNECTION_FORCED, NOT_ALLOWED, Reply};
use crate::frame::{MAX_FRAME_BYTES, MIN_FRAME_BYTES};
use crate::vhost::Vhost;

use super::{Conn, HEARTBEAT, MAX_CHANNELS, Phase};

impl Conn {
    pub(super) fn send_start(&mut self) {
        let mut capabilities = FieldTable::default();
        for (name, on) in [
            ("publisher_confirms", true),
            ("basic.nack", true),
            ("per_consumer_qos", true),
            ("authentication_failure_close", true),
            ("consumer_cancel_notify", true),
            ("exchange_exchange_bindings", true),
            ("connection.blocked", true),
        ] {
            capabilities.insert(name.into(), AMQPValue::Boolean(on));
        }
        let mut properties = FieldTable::default();
        properties.insert("product".into(), AMQPValue::LongString("Weir".into()));
        properties.insert(
            "version".into(),
            AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
        );
        properties.insert(
            "information".into(),
            AMQPValue::LongString("AMQP 0-9-1 on Weir's log; see docs/amqp.md".into()),
        );
        properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: properties,
                mechanisms: "PLAIN AMQPLAIN".into(),
                locales: "en_US".into(),
            })),
        );
    }

    pub(super) async fn on_handshake(&mut self, frame: AMQPFrame) -> Result<(), Reply> {
        let out_of_order = |what: &str| {
            Reply::connection(
                COMMAND_INVALID,
                format!("expected connection.{what} during the handshake"),
            )
        };
        let AMQPFrame::Method(0, AMQPClass::Connection(m)) = frame else {
            return Err(match self.phase {
                Phase::Start => out_of_order("start-ok"),
                Phase::Tune => out_of_order("tune-ok"),
                _ => out_of_order("open"),
            });
        };
        match (self.phase, m) {
            (Phase::Start, connection::AMQPMethod::StartOk(start_ok)) => {
                self.authenticate(&start_ok).await?;
                self.cancel_notify =
                    client_capability(&start_ok.client_properties, "consumer_cancel_notify");
                self.blocked_notify =
                    client_capability(&start_ok.client_properties, "connection.blocked");
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                        channel_max: MAX_CHANNELS,
                        frame_max: MAX_FRAME_BYTES,
                        heartbeat: HEARTBEAT,
                    })),
                );
                self.phase = Phase::Tune;
                Ok(())
            }
            (Phase::Tune, connection::AMQPMethod::TuneOk(tune)) => {
                let frame_max = if tune.frame_max == 0 {
                    MAX_FRAME_BYTES
                } else {
                    tune.frame_max
                };
                if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&frame_max) {
                    return Err(Reply::connection(
                        NOT_ALLOWED,
                        format!(
                            "frame_max {frame_max} is outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}"
                        ),
                    )
                    .on(10, 31));
                }
                self.frame_max = frame_max;
                self.reader_frame_max.store(frame_max, Ordering::Relaxed);
                self.channel_max = match tune.channel_max {
                    0 => MAX_CHANNELS,
                    n => n.min(MAX_CHANNELS),
                };
                // The client's choice, as RabbitMQ takes it (0: no heartbeats).
                self.heartbeat = tune.heartbeat;
                self.phase = Phase::Open;
                Ok(())
            }
            (Phase::Open, connection::AMQPMethod::Open(open)) => {
                self.vhost = self.open_vhost(open.virtual_host.as_str())?;
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
                );
                self.phase = Phase::Running;
                Ok(())
            }
            (_, connection::AMQPMethod::Close(_)) => {
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::Start, _) => Err(out_of_order("start-ok")),
            (Phase::Tune, _) => Err(out_of_order("tune-ok")),
            _ => Err(out_of_order("open")),
        }
    }

    /// The vhost `connection.open` names, if it may be opened: `/` always (each operation
    /// is authorised on its own); another vhost `V` is the namespace `V.` (`crate::vhost`),
    /// and with ACLs on needs Describe on the topics prefixed `V.` (a PREFIXED ACL `V.`,
    /// or one on every topic): 530 NOT_ALLOWED otherwise, as RabbitMQ refuses a vhost the
    /// user has no permissions in.
    fn open_vhost(&self, name: &str) -> Result<Vhost, Reply> {
        let refused = |text: String| Reply::connection(NOT_ALLOWED, text).on(10, 40);
        let vhost = Vhost::named(name).map_err(refused)?;
        if !vhost.is_root() {
            self.shared
                .broker
                .authorize_topic(&self.ctx, Operation::Describe, vhost.prefix())
                .map_err(|e| {
                    refused(format!(
                        "access to vhost '{}' refused: {} (a vhost's names start with \
                         '{}'; docs/amqp.md § Virtual hosts)",
                        vhost.name(),
                        e.message,
                        vhost.prefix()
                    ))
                })?;
        }
        Ok(vhost)
    }

    /// PLAIN or AMQPLAIN. With authentication required, the core checks the password
    /// (`Authentication::authenticate`, as for every listener); otherwise the connection
    /// is anonymous, whatever it sent (docs/amqp.md § Connections).
    pub(super) async fn authenticate(
        &mut self,
        start_ok: &connection::StartOk,
    ) -> Result<(), Reply> {
        let refused = |text: String| Reply::connection(ACCESS_REFUSED, text).on(10, 11);
        let (mechanism, credentials) = match start_ok.mechanism.as_str() {
            "PLAIN" => (
                Mechanism::Plain,
                weir_security::sasl::parse_plain(start_ok.response.as_bytes())
                    .map(|c| (c.user, c.password))
                    .map_err(|e| e.to_string()),
            ),
            "AMQPLAIN" => (Mechanism::AmqPlain, amqplain(start_ok.response.as_bytes())),
            other => {
                return Err(refused(format!(
                    "authentication mechanism {other} is not offered: PLAIN or AMQPLAIN"
                )));
            }
        };
        let broker = &self.shared.broker;
        let authentication = broker.authentication();
        if !authentication.required(self.ctx.listener) {
            return Ok(());
        }
        let (user, password) = match credentials {
            Ok(credentials) => credentials,
            Err(reason) => {
                broker.authorizer().audit().authentication(
                    &self.ctx,
                    mechanism.name(),
                    None,
                    Outcome::Refused(&reason),
                );
                tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
                return Err(refused(format!(
                    "{} response refused: {reason}",
                    mechanism.name()
                )));
            }
        };
        let credentials = Credentials::Password {
            mechanism,
            user,
            password,
        };
        match authentication.authenticate(&self.ctx, credentials).await {
            Ok(authenticated) => {
                authenticated.apply(&mut self.ctx);
                Ok(())
            }
            Err(err) if err.reason == Reason::Busy => {
                Err(Reply::connection(CONNECTION_FORCED, err.message))
            }
            Err(_) => Err(refused(format!(
                "login was refused using authentication mechanism {}",
                mechanism.name()
            ))),
        }
    }
}

/// AMQPLAIN's response: a field table without its length prefix, with `LOGIN` and
/// `PASSWORD` (RabbitMQ's mechanism; what py-amqp and kombu send by default).
pub(super) fn amqplain(response: &[u8]) -> Result<(String, String), String> {
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
    framed.extend_from_slice(response);
    let (_, table) = amq_protocol::types::parsing::parse_field_table(&framed[..])
        .map_err(|e| format!("the AMQPLAIN response is not a field table: {e}"))?;
    let field = |name: &str| -> Result<String, String> {
        match table.inner().get(&ShortString::from(name)) {
            Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec())
                .map_err(|_| format!("AMQPLAIN {name} is not UTF-8")),
            Some(AMQPValue::ShortString(s)) => Ok(s.as_str().to_owned()),
            _ => Err(format!("the AMQPLAIN response has no {name}")),
        }
    };
    Ok((field("LOGIN")?, field("PASSWORD")?))
}

/// Whether the client's properties announce capability `name` (`capabilities`, a table
/// of booleans, as RabbitMQ's clients send it); anything else is no.
pub(super) fn client_capability(properties: &FieldTable, name: &str) -> bool {
    let Some(AMQPValue::FieldTable(capabilities)) = properties.inner().get("capabilities") else {
        return false;
    };
    matches!(
        capabilities.inner().get(name),
        Some(AMQPValue::Boolean(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqplain_reads_login_and_password() {
        let mut table = FieldTable::default();
        table.insert("LOGIN".into(), AMQPValue::LongString("guest".into()));
        table.insert("PASSWORD".into(), AMQPValue::LongString("secret".into()));
        let (bytes, _) = amq_protocol::types::generation::gen_field_table(&table)(
            amq_protocol::frame::WriteContext::from(Vec::new()),
        )
        .expect("encodes")
        .into_inner();
        // Without the table's own length prefix, as AMQPLAIN sends it.
        assert_eq!(
            amqplain(&bytes[4..]).unwrap(),
            ("guest".to_owned(), "secret".to_owned())
        );
        assert!(amqplain(b"\x05LOGIN").is_err());
    }

    #[test]
    fn client_capabilities_are_read_from_the_capabilities_table() {
        let mut capabilities = FieldTable::default();
        capabilities.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        capabilities.insert("basic.nack".into(), AMQPValue::Boolean(false));
        let mut properties = FieldTable::default();
        properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        assert!(client_capability(&properties, "consumer_cancel_notify"));
        assert!(!client_capability(&properties, "basic.nack"));
        assert!(!client_capability(&properties, "connection.blocked"));
        // A client that sends no capabilities announces none.
        assert!(!client_capability(
            &FieldTable::default(),
            "consumer_cancel_notify"
        ));
    }
}
