//! Exchanges between [`ScramClient`] and [`ScramServer`]: RFC 7677's test vector, round
//! trips, and every way an exchange must fail.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::scram::{MAX_MESSAGE_BYTES, MIN_ITERATIONS, ScramClient, salted_password};

fn credential(mechanism: ScramMechanism, password: &str) -> ScramCredential {
    ScramCredential::new(mechanism, password, MIN_ITERATIONS).unwrap()
}

/// A lookup that knows `user` with `credential`.
fn only<'a>(
    user: &'static str,
    credential: &'a ScramCredential,
) -> impl FnOnce(&str) -> Option<ScramCredential> + 'a {
    move |name| (name == user).then(|| credential.clone())
}

fn failed(mechanism: ScramMechanism) -> SaslError {
    SaslError::AuthenticationFailed {
        mechanism: mechanism.name(),
    }
}

/// What the server's client-final step returned.
type Outcome = Result<(String, Vec<u8>), SaslError>;

/// Runs a client (with `password`) against a server holding `stored` for `user`.
fn exchange(
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
    stored: Option<&ScramCredential>,
) -> (ScramServer, Outcome, Vec<u8>) {
    let mut client = ScramClient::new(mechanism, user, password);
    let mut server = ScramServer::new(mechanism);
    let server_first = server
        .client_first(&client.client_first(), |_| stored.cloned())
        .unwrap();
    let client_final = client.client_final(&server_first).unwrap();
    let result = server.client_final(&client_final);
    if let Ok((_, server_final)) = &result {
        client.verify_server_final(server_final).unwrap();
    }
    (server, result, server_first)
}

#[test]
fn rfc_7677_test_vector() {
    let m = ScramMechanism::Sha256;
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password(m, "pencil", &salt, 4096);
    let stored = ScramCredential::from_salted_password(m, salt, 4096, &salted).unwrap();
    let mut client = ScramClient::with_nonce_for_tests(m, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    let mut server = ScramServer::with_nonce_for_tests(m, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");

    let client_first = client.client_first();
    assert_eq!(client_first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first = server
        .client_first(&client_first, only("user", &stored))
        .unwrap();
    assert_eq!(
        String::from_utf8(server_first.clone()).unwrap(),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let client_final = client.client_final(&server_first).unwrap();
    assert_eq!(
        String::from_utf8(client_final.clone()).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    let (user, server_final) = server.client_final(&client_final).unwrap();
    assert_eq!(user, "user");
    assert_eq!(
        String::from_utf8(server_final.clone()).unwrap(),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    client.verify_server_final(&server_final).unwrap();
}

#[test]
fn round_trip_with_both_mechanisms() {
    for m in ScramMechanism::ALL {
        let stored = credential(m, "pencil");
        let (server, result, _) = exchange(m, "alice", "pencil", Some(&stored));
        assert_eq!(result.unwrap().0, "alice");
        assert_eq!(server.claimed_user(), Some("alice"));
    }
}

#[test]
fn step_drives_the_exchange() {
    let m = ScramMechanism::Sha512;
    let stored = credential(m, "pencil");
    let mut client = ScramClient::new(m, "alice", "pencil");
    let mut server = ScramServer::new(m);
    let ServerStep::Continue(server_first) = server
        .step(&client.client_first(), only("alice", &stored))
        .unwrap()
    else {
        panic!("the first step continues");
    };
    let client_final = client.client_final(&server_first).unwrap();
    let ServerStep::Done { user, server_final } = server
        .step(&client_final, |_| panic!("looked up twice"))
        .unwrap()
    else {
        panic!("the second step is the last");
    };
    assert_eq!(user, "alice");
    client.verify_server_final(&server_final).unwrap();
    assert_eq!(server.step(b"again", |_| None), Err(SaslError::OutOfOrder));
}

#[test]
fn a_wrong_password_fails() {
    for m in ScramMechanism::ALL {
        let stored = credential(m, "pencil");
        let (server, result, _) = exchange(m, "alice", "pen", Some(&stored));
        assert_eq!(result, Err(failed(m)));
        assert_eq!(server.claimed_user(), Some("alice"));
    }
    assert_eq!(
        failed(ScramMechanism::Sha512).to_string(),
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism SCRAM-SHA-512"
    );
}

#[test]
fn an_unknown_user_looks_like_a_wrong_password() {
    for m in ScramMechanism::ALL {
        let stored = credential(m, "pencil");
        let (_, wrong_password, _) = exchange(m, "alice", "pen", Some(&stored));
        let (server, unknown, first) = exchange(m, "mallory", "pencil", None);
        assert_eq!(unknown, wrong_password);
        assert_eq!(
            unknown.unwrap_err().to_string(),
            wrong_password.unwrap_err().to_string()
        );
        assert_eq!(server.claimed_user(), Some("mallory"));

        // The same salt (and a real credential's length) on every attempt; another user
        // gets another salt.
        let fields = |first: &[u8]| {
            let m = message::server_first(std::str::from_utf8(first).unwrap()).unwrap();
            (m.salt, m.iterations)
        };
        let (salt, iterations) = fields(&first);
        assert_eq!(salt.len(), SALT_BYTES);
        assert_eq!(iterations, DEFAULT_ITERATIONS);
        let (_, _, again) = exchange(m, "mallory", "other", None);
        assert_eq!(fields(&again).0, salt);
        let (_, _, other) = exchange(m, "trent", "pencil", None);
        assert_ne!(fields(&other).0, salt);
    }
}

#[test]
fn a_credential_of_the_other_mechanism_is_unknown() {
    let stored = credential(ScramMechanism::Sha256, "pencil");
    let (_, result, _) = exchange(ScramMechanism::Sha512, "alice", "pencil", Some(&stored));
    assert_eq!(result, Err(failed(ScramMechanism::Sha512)));
}

/// Client-first and client-final of a correct exchange for alice/pencil, and a fresh
/// server that has seen the client-first (returned by `server()`).
struct Recorded {
    stored: ScramCredential,
    client_first: Vec<u8>,
    client_final: String,
}

impl Recorded {
    fn new(m: ScramMechanism) -> Self {
        let stored = credential(m, "pencil");
        let mut client = ScramClient::new(m, "alice", "pencil");
        let client_first = client.client_first();
        let server_first = Self::server_with(m, &stored, &client_first);
        let client_final = client.client_final(&server_first.1).unwrap();
        Self {
            stored,
            client_first,
            client_final: String::from_utf8(client_final).unwrap(),
        }
    }

    fn server_with(
        m: ScramMechanism,
        stored: &ScramCredential,
        client_first: &[u8],
    ) -> (ScramServer, Vec<u8>) {
        let mut server = ScramServer::with_nonce_for_tests(m, "server-nonce");
        let first = server
            .client_first(client_first, only("alice", stored))
            .unwrap();
        (server, first)
    }

    fn server(&self) -> ScramServer {
        Self::server_with(self.stored.mechanism, &self.stored, &self.client_first).0
    }
}

#[test]
fn tampered_client_final_messages_fail() {
    let m = ScramMechanism::Sha256;
    let r = Recorded::new(m);
    assert!(r.server().client_final(r.client_final.as_bytes()).is_ok());

    let (without_proof, proof) = r.client_final.rsplit_once(",p=").unwrap();
    let mut proof = STANDARD.decode(proof).unwrap();
    proof[0] ^= 1;
    let tampered = format!("{without_proof},p={}", STANDARD.encode(&proof));
    assert_eq!(r.server().client_final(tampered.as_bytes()), Err(failed(m)));

    let short = format!("{without_proof},p={}", STANDARD.encode(&proof[1..]));
    assert!(matches!(
        r.server().client_final(short.as_bytes()),
        Err(SaslError::Malformed(_))
    ));

    // Another nonce, or channel binding data that is not the gs2 header sent.
    let nonce = r.client_final.replace("server-nonce", "server-nonc3");
    let binding = r
        .client_final
        .replace("c=biws", &format!("c={}", STANDARD.encode("y,,")));
    for tampered in [nonce, binding] {
        match r.server().client_final(tampered.as_bytes()) {
            Err(SaslError::Malformed(text)) => assert!(
                text.contains("nonce") || text.contains("channel binding"),
                "{text}"
            ),
            other => panic!("{tampered}: {other:?}"),
        }
    }
}

#[test]
fn the_gs2_header_y_is_accepted_and_p_refused() {
    let m = ScramMechanism::Sha256;
    let stored = credential(m, "pencil");
    // A client that sends `y,,` (it could bind channels, but thinks the server cannot):
    // its proof computed here, as RFC 5802 §3 says, with c= the base64 of `y,,`.
    let bare = "n=alice,r=client";
    let mut server = ScramServer::with_nonce_for_tests(m, "server");
    let server_first = server
        .client_first(format!("y,,{bare}").as_bytes(), only("alice", &stored))
        .unwrap();
    let server_first = String::from_utf8(server_first).unwrap();
    let without_proof = format!("c={},r=clientserver", STANDARD.encode("y,,"));
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let salted = salted_password(m, "pencil", &stored.salt, stored.iterations);
    let client_key = m.client_key(&salted);
    let signature = m.mac(&m.hash(&client_key), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
    assert_eq!(
        server.client_final(client_final.as_bytes()).unwrap().0,
        "alice"
    );

    let mut server = ScramServer::new(m);
    let refused = server.client_first(format!("p=tls-exporter,,{bare}").as_bytes(), |_| {
        panic!("no lookup for a refused message")
    });
    match refused {
        Err(SaslError::Unsupported(text)) => assert!(text.contains("channel binding"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn user_names_with_comma_and_equals_sign() {
    for m in ScramMechanism::ALL {
        let stored = credential(m, "pencil");
        let mut client = ScramClient::new(m, "o=u,dc", "pencil");
        let first = client.client_first();
        assert!(first.starts_with(b"n,,n=o=3Du=2Cdc,r="), "{first:?}");
        let mut server = ScramServer::new(m);
        let server_first = server
            .client_first(&first, only("o=u,dc", &stored))
            .unwrap();
        assert_eq!(server.claimed_user(), Some("o=u,dc"));
        let client_final = client.client_final(&server_first).unwrap();
        assert_eq!(server.client_final(&client_final).unwrap().0, "o=u,dc");
    }
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    assert!(matches!(
        server.client_first(b"n,,n=o=u,r=abc", |_| None),
        Err(SaslError::Malformed(_))
    ));
}

#[test]
fn authzid_must_be_the_user() {
    let m = ScramMechanism::Sha256;
    let stored = credential(m, "pencil");
    let mut server = ScramServer::new(m);
    let result = server.client_first(b"n,a=admin,n=alice,r=abc", only("alice", &stored));
    assert!(
        matches!(result, Err(SaslError::Unsupported(_))),
        "{result:?}"
    );
    assert_eq!(
        server.claimed_user(),
        Some("alice"),
        "named in the audit line"
    );

    let mut server = ScramServer::new(m);
    assert!(
        server
            .client_first(b"n,a=alice,n=alice,r=abc", only("alice", &stored))
            .is_ok()
    );
}

#[test]
fn extensions_tokenauth_refused_others_ignored() {
    let m = ScramMechanism::Sha256;
    let mut server = ScramServer::new(m);
    assert!(matches!(
        server.client_first(b"n,,n=alice,r=abc,tokenauth=true", |_| None),
        Err(SaslError::Unsupported(_))
    ));
    let mut server = ScramServer::new(m);
    assert!(
        server
            .client_first(b"n,,n=alice,r=abc,tokenauth=false,other=x", |_| None)
            .is_ok()
    );
}

#[test]
fn steps_out_of_order_fail() {
    let m = ScramMechanism::Sha256;
    let r = Recorded::new(m);

    let mut server = ScramServer::new(m);
    assert_eq!(
        server.client_final(r.client_final.as_bytes()),
        Err(SaslError::OutOfOrder)
    );
    // The failed call ends the exchange.
    assert_eq!(
        server.client_first(&r.client_first, only("alice", &r.stored)),
        Err(SaslError::OutOfOrder)
    );

    let mut server = r.server();
    assert_eq!(
        server.client_first(&r.client_first, only("alice", &r.stored)),
        Err(SaslError::OutOfOrder)
    );
    assert_eq!(
        server.client_final(r.client_final.as_bytes()),
        Err(SaslError::OutOfOrder),
        "a second client-first failed the exchange"
    );

    // After a failure, a correct message does not resume it.
    let mut server = r.server();
    assert!(server.client_final(b"c=biws,r=x,p=AAAA").is_err());
    assert_eq!(
        server.client_final(r.client_final.as_bytes()),
        Err(SaslError::OutOfOrder)
    );

    // After success, nothing more.
    let mut server = r.server();
    assert!(server.client_final(r.client_final.as_bytes()).is_ok());
    assert_eq!(
        server.client_final(r.client_final.as_bytes()),
        Err(SaslError::OutOfOrder)
    );

    let mut client = ScramClient::new(m, "alice", "pencil");
    assert_eq!(
        client.client_final(b"r=x,s=AAAA,i=4096"),
        Err(SaslError::OutOfOrder)
    );
    assert_eq!(
        client.verify_server_final(b"v=AAAA"),
        Err(SaslError::OutOfOrder)
    );
}

#[test]
fn over_long_messages_are_refused_before_parsing() {
    let m = ScramMechanism::Sha256;
    let mut long = b"n,,n=alice,r=".to_vec();
    long.resize(MAX_MESSAGE_BYTES + 1, b'a');
    let mut server = ScramServer::new(m);
    match server.client_first(&long, |_| panic!("no lookup")) {
        Err(SaslError::Malformed(text)) => assert!(text.contains("limit of 4096"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.claimed_user(), None, "not parsed");

    let r = Recorded::new(m);
    let mut server = r.server();
    let mut long = r.client_final.clone().into_bytes();
    long.resize(MAX_MESSAGE_BYTES + 1, b'A');
    assert!(matches!(
        server.client_final(&long),
        Err(SaslError::Malformed(_))
    ));

    let mut client = ScramClient::new(m, "alice", "pencil");
    client.client_first();
    assert!(matches!(
        client.client_final(&vec![b'r'; MAX_MESSAGE_BYTES + 1]),
        Err(SaslError::Malformed(_))
    ));
}

#[test]
fn the_client_checks_the_server() {
    let m = ScramMechanism::Sha256;
    let stored = credential(m, "pencil");
    let mut client = ScramClient::new(m, "alice", "pencil");
    let mut server = ScramServer::new(m);
    let server_first = server
        .client_first(&client.client_first(), only("alice", &stored))
        .unwrap();
    let client_final = client.client_final(&server_first).unwrap();
    let (_, server_final) = server.client_final(&client_final).unwrap();
    client.verify_server_final(&server_final).unwrap();

    // A server without alice's credential cannot sign.
    let mut signature = STANDARD.decode(&server_final[2..]).unwrap();
    signature[0] ^= 1;
    let forged = format!("v={}", STANDARD.encode(signature));
    assert_eq!(
        client.verify_server_final(forged.as_bytes()),
        Err(SaslError::ServerNotAuthenticated {
            mechanism: "SCRAM-SHA-256"
        })
    );
    assert_eq!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(failed(m))
    );
    assert!(matches!(
        client.verify_server_final(b"x"),
        Err(SaslError::Malformed(_))
    ));

    // A server-first message whose nonce does not extend the client's, or with an
    // iteration count out of range.
    let mut client = ScramClient::with_nonce_for_tests(m, "alice", "pencil", "abc");
    client.client_first();
    for bad in [
        "r=xyzdef,s=AAAA,i=4096",
        "r=abc,s=AAAA,i=4096",
        "r=abcdef,s=AAAA,i=4095",
        "r=abcdef,s=AAAA,i=16385",
    ] {
        client.client_first();
        assert!(
            matches!(
                client.client_final(bad.as_bytes()),
                Err(SaslError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn debug_prints_no_secrets() {
    let client = ScramClient::new(ScramMechanism::Sha256, "alice", "hunter2");
    let debug = format!("{client:?}");
    assert!(
        debug.contains("alice") && !debug.contains("hunter2"),
        "{debug}"
    );
    let server = ScramServer::new(ScramMechanism::Sha256);
    assert!(format!("{server:?}").contains("initial"));
}
