//! The syntax of SCRAM's messages (RFC 5802 §7, with Kafka's extensions): parsing the
//! client's messages on the server, the server's on the client, and the escaping of user
//! names. Only syntax: nonces, proofs and signatures are checked by the two sides.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::MAX_SALT_BYTES;
use crate::sasl::{SaslError, authzid_mismatch, check_user};

fn malformed(what: impl Into<String>) -> SaslError {
    SaslError::Malformed(what.into())
}

/// A user name as a SCRAM `saslname`: `,` as `=2C` and `=` as `=3D`.
pub(crate) fn escape_user(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Decodes a `saslname`: `=2C` and `=3D` are the only escapes, any other `=` is an
/// error. Checks the decoded name's length and refuses NUL.
pub(crate) fn unescape_user(name: &str) -> Result<String, SaslError> {
    let mut user = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        user.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => user.push(','),
            Some("=3D") => user.push('='),
            _ => {
                return Err(malformed(
                    "a user name has `=` that is not `=2C` or `=3D` (the escapes of `,` and `=`)",
                ));
            }
        }
        rest = &rest[at + 3..];
    }
    user.push_str(rest);
    if user.contains('\0') {
        return Err(malformed("a user name contains NUL"));
    }
    check_user(&user)?;
    Ok(user)
}

/// One `key=value` attribute; `key` one or more ASCII letters (RFC 5802's attributes are
/// one letter, Kafka's extensions are words).
fn attribute(part: &str) -> Result<(&str, &str), SaslError> {
    match part.split_once('=') {
        Some((key, value)) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok((key, value))
        }
        _ => Err(malformed(format!(
            "expected an attribute `name=value`, found {:?}",
            truncated(part)
        ))),
    }
}

/// The attribute `key=` that must come next.
fn expect<'a>(part: Option<&'a str>, key: &str, what: &str) -> Result<&'a str, SaslError> {
    let part = part.ok_or_else(|| malformed(format!("no {what} ({key}=)")))?;
    match attribute(part)? {
        (k, value) if k == key => Ok(value),
        ("m", _) => Err(SaslError::Unsupported(
            "mandatory SCRAM extensions (m=)".into(),
        )),
        (k, _) => Err(malformed(format!(
            "expected {what} ({key}=), found attribute {k:?}"
        ))),
    }
}

/// A nonce: non-empty, printable ASCII, no `,`.
fn nonce(value: &str) -> Result<&str, SaslError> {
    if value.is_empty() {
        return Err(malformed("empty nonce"));
    }
    if !value
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(
            "a nonce has a character that is not printable ASCII",
        ));
    }
    Ok(value)
}

fn base64(value: &str, what: &str) -> Result<Vec<u8>, SaslError> {
    STANDARD
        .decode(value)
        .map_err(|e| malformed(format!("{what} is not base64: {e}")))
}

/// A message's text: SCRAM messages are UTF-8.
pub(crate) fn text<'a>(message: &'a [u8], what: &str) -> Result<&'a str, SaslError> {
    std::str::from_utf8(message).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

/// For error messages: at most 32 characters of something the client sent.
fn truncated(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// A parsed client-first message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    /// `gs2-header`, with its final `,`: what `c=` must encode.
    pub gs2_header: &'a str,
    /// `client-first-message-bare`: the start of the AuthMessage.
    pub bare: &'a str,
    pub user: String,
    pub nonce: &'a str,
}

/// Parses a client-first message: `gs2-header client-first-message-bare`. `claimed` gets
/// the user name as soon as it is decoded, so a later error still names it.
pub(crate) fn client_first<'a>(
    text: &'a str,
    claimed: &mut Option<String>,
) -> Result<ClientFirst<'a>, SaslError> {
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("no gs2 header (`n,,`)"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(SaslError::Unsupported(
                "channel binding (p=): use SCRAM without channel binding (gs2 header `n,,`)".into(),
            ));
        }
        _ => {
            return Err(malformed(
                "the gs2 header's channel binding flag is not `n`, `y` or `p=`",
            ));
        }
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("the gs2 header does not end with `,`"))?;
    let authzid = match authzid {
        "" => None,
        a => match a.strip_prefix("a=") {
            Some(name) => Some(unescape_user(name)?),
            None => return Err(malformed("the gs2 header's authzid does not start `a=`")),
        },
    };
    let gs2_header = &text[..text.len() - bare.len()];

    let mut parts = bare.split(',');
    let user = unescape_user(expect(parts.next(), "n", "user name")?)?;
    *claimed = Some(user.clone());
    let nonce = nonce(expect(parts.next(), "r", "client nonce")?)?;
    for part in parts {
        let (key, value) = attribute(part)?;
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(SaslError::Unsupported(
                "delegation tokens (tokenauth=true)".into(),
            ));
        }
    }
    if authzid.is_some_and(|a| a != user) {
        return Err(authzid_mismatch());
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        user,
        nonce,
    })
}

/// A parsed client-final message.
#[derive(Debug)]
pub(crate) struct ClientFinal<'a> {
    /// `c=`, decoded.
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    /// `client-final-message-without-proof`: the end of the AuthMessage.
    pub without_proof: &'a str,
    pub proof: Vec<u8>,
}

/// Parses a client-final message: `c=...,r=...[,extensions],p=...`.
pub(crate) fn client_final(text: &str) -> Result<ClientFinal<'_>, SaslError> {
    let (without_proof, last) = text
        .rsplit_once(',')
        .ok_or_else(|| malformed("a client-final message is `c=...,r=...,p=...`"))?;
    let proof = expect(Some(last), "p", "proof (last)")?;
    let proof = base64(proof, "the proof (p=)")?;
    let mut parts = without_proof.split(',');
    let channel_binding = base64(
        expect(parts.next(), "c", "channel binding")?,
        "the channel binding (c=)",
    )?;
    let nonce = nonce(expect(parts.next(), "r", "nonce")?)?;
    for part in parts {
        attribute(part)?;
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// A parsed server-first message.
#[derive(Debug)]
pub(crate) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Parses a server-first message: `r=...,s=...,i=...[,extensions]`.
pub(crate) fn server_first(text: &str) -> Result<ServerFirst<'_>, SaslError> {
    let mut parts = text.split(',');
    let nonce = nonce(expect(parts.next(), "r", "nonce")?)?;
    let salt = base64(expect(parts.next(), "s", "salt")?, "the salt (s=)")?;
    if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
        return Err(malformed(format!(
            "the salt is {} bytes: a SCRAM salt is 1 to {MAX_SALT_BYTES} bytes",
            salt.len()
        )));
    }
    let iterations = expect(parts.next(), "i", "iteration count")?;
    let iterations = match iterations.parse::<u32>() {
        Ok(i) if iterations.bytes().all(|b| b.is_ascii_digit()) => i,
        _ => {
            return Err(malformed(format!(
                "the iteration count (i=) is not a number: {:?}",
                truncated(iterations)
            )));
        }
    };
    for part in parts {
        attribute(part)?;
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// A server-final message: the server's signature, or the error it reported.
#[derive(Debug)]
pub(crate) enum ServerFinal {
    Verifier(Vec<u8>),
    /// `e=`: the server's error (not shown: the client's error says authentication
    /// failed, whatever the server's reason).
    Error,
}

/// Parses a server-final message: `v=...` or `e=...` (then extensions).
pub(crate) fn server_final(text: &str) -> Result<ServerFinal, SaslError> {
    let mut parts = text.split(',');
    let first = parts
        .next()
        .ok_or_else(|| malformed("empty server-final message"))?;
    let result = match attribute(first)? {
        ("v", value) => ServerFinal::Verifier(base64(value, "the server signature (v=)")?),
        ("e", _) => ServerFinal::Error,
        (k, _) => {
            return Err(malformed(format!(
                "a server-final message starts v= or e=, not {k:?}"
            )));
        }
    };
    for part in parts {
        attribute(part)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::MAX_USER_BYTES;

    #[test]
    fn user_names_escape_and_unescape() {
        assert_eq!(escape_user("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_user("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(unescape_user("=3D2C").unwrap(), "=2C");
        for name in ["user", "a,b", "=", "x=2Cy", "\u{e9}t\u{e9}"] {
            assert_eq!(unescape_user(&escape_user(name)).unwrap(), name);
        }
        for bad in ["a=b", "a=", "a=2", "a=2c", "=3d", ""] {
            assert!(
                matches!(unescape_user(bad), Err(SaslError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(unescape_user(&"u".repeat(MAX_USER_BYTES)).is_ok());
        assert!(unescape_user(&"u".repeat(MAX_USER_BYTES + 1)).is_err());
        assert!(unescape_user("a\0b").is_err());
    }

    #[test]
    fn client_first_parses_gs2_header_and_extensions() {
        let mut claimed = None;
        let m = client_first("n,,n=user,r=abc", &mut claimed).unwrap();
        assert_eq!((m.gs2_header, m.bare), ("n,,", "n=user,r=abc"));
        assert_eq!((m.user.as_str(), m.nonce), ("user", "abc"));

        let m = client_first(
            "y,a=us=2Cer,n=us=2Cer,r=x,tokenauth=false,foo=bar",
            &mut claimed,
        )
        .unwrap();
        assert_eq!(m.gs2_header, "y,a=us=2Cer,");
        assert_eq!(m.user, "us,er");
        assert_eq!(claimed.as_deref(), Some("us,er"));

        let err = |m: &str| client_first(m, &mut None).unwrap_err();
        assert!(matches!(
            err("p=tls-unique,,n=u,r=x"),
            SaslError::Unsupported(_)
        ));
        assert!(matches!(
            err("n,,n=u,r=x,tokenauth=TRUE"),
            SaslError::Unsupported(_)
        ));
        assert!(matches!(err("n,,m=ext,n=u,r=x"), SaslError::Unsupported(_)));
        assert!(matches!(
            err("n,a=other,n=u,r=x"),
            SaslError::Unsupported(_)
        ));
        for bad in [
            "",
            "n",
            "n,",
            "n,,",
            "x,,n=u,r=x",
            "n,b=u,n=u,r=x",
            "n,,r=x,n=u",
            "n,,n=u",
            "n,,n=u,r=",
            "n,,n=u,r=a b",
            "n,,n=u,r=x,=v",
            "n,,n=u,r=x,noequals",
            "n,,n=,r=x",
        ] {
            assert!(
                matches!(client_first(bad, &mut None), Err(SaslError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_final_and_server_messages_parse() {
        let m = client_final("c=biws,r=abc,ext=1,p=AAEC").unwrap();
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!((m.nonce, m.without_proof), ("abc", "c=biws,r=abc,ext=1"));
        assert_eq!(m.proof, [0, 1, 2]);
        for bad in [
            "",
            "c=biws,r=abc",
            "p=AAEC",
            "r=abc,c=biws,p=AAEC",
            "c=b!ws,r=a,p=AA==",
        ] {
            assert!(client_final(bad).is_err(), "{bad:?}");
        }

        let m = server_first("r=abc,s=AAEC,i=4096").unwrap();
        assert_eq!(
            (m.nonce, m.salt.as_slice(), m.iterations),
            ("abc", &[0u8, 1, 2][..], 4096)
        );
        for bad in [
            "r=abc,s=,i=4096",
            "r=abc,s=AAEC,i=+4096",
            "r=abc,s=AAEC,i=99999999999",
            "r=abc,s=AAEC",
        ] {
            assert!(server_first(bad).is_err(), "{bad:?}");
        }
        assert!(
            matches!(server_final("v=AAEC").unwrap(), ServerFinal::Verifier(v) if v == [0, 1, 2])
        );
        assert!(matches!(
            server_final("e=invalid-proof").unwrap(),
            ServerFinal::Error
        ));
        assert!(server_final("x=1").is_err());
    }
}
