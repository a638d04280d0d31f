//! The core's authentication over accounts of the test's own: RFC 7677's SCRAM-SHA-256
//! vector and a wrong password through [`Authentication::step`], PLAIN, tokens, the
//! header forms, and what each listener requires.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use weir_security::scram::{MIN_ITERATIONS, ScramClient, salted_password};
use weir_security::token::{NewToken, bearer_header, parse_token};

use super::*;

/// Users with SCRAM-SHA-256 credentials, and tokens by id with their owner.
#[derive(Default)]
struct TestAccounts {
    users: Vec<(String, ScramCredential)>,
    tokens: Vec<(String, [u8; 32], String)>,
}

impl Accounts for TestAccounts {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users
            .iter()
            .find(|(u, c)| u == user && c.mechanism == mechanism)
            .map(|(_, c)| c.clone())
    }

    fn token_owner(&self, token: &PresentedToken) -> Result<String, TokenRefused> {
        match self.tokens.iter().find(|(id, _, _)| *id == token.id) {
            Some((_, digest, owner)) if token.secret_matches(digest) => Ok(owner.clone()),
            Some((_, _, owner)) => Err(TokenRefused {
                owner: Some(owner.clone()),
                reason: "wrong token secret",
            }),
            None => Err(TokenRefused {
                owner: None,
                reason: "no such token (never made, or revoked)",
            }),
        }
    }
}

/// The pieces an [`Authentication`] borrows.
struct Fixture {
    accounts: TestAccounts,
    config: SecurityConfig,
    passwords: PasswordChecks,
    audit: AuditLog,
}

impl Fixture {
    fn new(accounts: TestAccounts) -> Fixture {
        Fixture {
            accounts,
            config: SecurityConfig {
                require_authentication: true,
                ..SecurityConfig::default()
            },
            passwords: PasswordChecks::new(1),
            audit: AuditLog::default(),
        }
    }

    fn authentication(&self) -> Authentication<'_> {
        Authentication {
            accounts: &self.accounts,
            config: &self.config,
            passwords: &self.passwords,
            audit: &self.audit,
            failed_delay: Duration::from_millis(20),
        }
    }
}

fn ctx() -> RequestContext {
    RequestContext::anonymous(Listener::KAFKA, None)
}

/// RFC 7677's user: `user`, password `pencil`, its salt and 4096 iterations.
fn rfc_7677_user() -> TestAccounts {
    let m = ScramMechanism::Sha256;
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password(m, "pencil", &salt, 4096);
    let stored = ScramCredential::from_salted_password(m, salt, 4096, &salted).unwrap();
    TestAccounts {
        users: vec![("user".into(), stored)],
        ..TestAccounts::default()
    }
}

#[tokio::test]
async fn scram_sha_256_follows_rfc_7677() {
    let fixture = Fixture::new(rfc_7677_user());
    let auth = fixture.authentication();
    let mut exchange =
        Exchange::scram_with_nonce(ScramMechanism::Sha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    let server_first = auth
        .step(&ctx(), &mut exchange, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .await
        .unwrap();
    assert_eq!(
        server_first,
        Step::Continue(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        )
    );
    let done = auth
        .step(
            &ctx(),
            &mut exchange,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .await
        .unwrap();
    assert_eq!(
        done,
        Step::Done {
            authenticated: Authenticated {
                user: "user".into(),
                mechanism: Mechanism::Scram(ScramMechanism::Sha256),
            },
            message: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
        }
    );
    // The exchange is over: another message is out of order.
    let again = auth.step(&ctx(), &mut exchange, b"n,,n=user,r=x").await;
    assert_eq!(
        again.unwrap_err().reason,
        Reason::IllegalAuthenticationState
    );
}

#[tokio::test]
async fn scram_with_a_wrong_password_is_refused_late_and_ends_the_exchange() {
    let fixture = Fixture::new(rfc_7677_user());
    let auth = fixture.authentication();
    let mut exchange = auth.start(&ctx(), "SCRAM-SHA-256", false).unwrap();
    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", "not-pencil");
    let Step::Continue(server_first) = auth
        .step(&ctx(), &mut exchange, &client.client_first())
        .await
        .unwrap()
    else {
        panic!("SCRAM's first step continues");
    };
    let client_final = client.client_final(&server_first).unwrap();
    let started = std::time::Instant::now();
    let err = auth
        .step(&ctx(), &mut exchange, &client_final)
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(20), "held back");
    assert_eq!(err.reason, Reason::AuthenticationFailed);
    assert_eq!(
        err.message,
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism SCRAM-SHA-256"
    );
    let after = auth.step(&ctx(), &mut exchange, &client_final).await;
    assert_eq!(
        after.unwrap_err().reason,
        Reason::IllegalAuthenticationState
    );

    // The right password, in a new exchange, gets in.
    let mut exchange = auth.start(&ctx(), "SCRAM-SHA-256", false).unwrap();
    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", "pencil");
    let Ok(Step::Continue(server_first)) = auth
        .step(&ctx(), &mut exchange, &client.client_first())
        .await
    else {
        panic!("SCRAM's first step continues");
    };
    let client_final = client.client_final(&server_first).unwrap();
    let Ok(Step::Done {
        authenticated,
        message,
    }) = auth.step(&ctx(), &mut exchange, &client_final).await
    else {
        panic!("the right password authenticates");
    };
    assert_eq!(authenticated.user, "user");
    client.verify_server_final(&message).unwrap();
}

#[tokio::test]
async fn mechanisms_offered_depend_on_tls() {
    let fixture = Fixture::new(TestAccounts::default());
    let auth = fixture.authentication();
    assert_eq!(
        sasl_mechanisms(false),
        ["SCRAM-SHA-256", "SCRAM-SHA-512"],
        "no PLAIN in the clear"
    );
    assert_eq!(sasl_mechanisms(true).last(), Some(&"PLAIN"));
    let err = auth.start(&ctx(), "PLAIN", false).unwrap_err();
    assert_eq!(err.reason, Reason::UnsupportedMechanism);
    assert!(err.message.contains("SCRAM-SHA-512"), "{}", err.message);
    assert_eq!(
        auth.start(&ctx(), "GSSAPI", true).unwrap_err().reason,
        Reason::UnsupportedMechanism
    );
    assert_eq!(
        auth.start(&ctx(), "PLAIN", true).unwrap().mechanism(),
        Mechanism::Plain
    );
}

#[tokio::test]
async fn plain_and_basic_check_the_password() {
    let credential = ScramCredential::new(ScramMechanism::Sha256, "pw", MIN_ITERATIONS).unwrap();
    let fixture = Fixture::new(TestAccounts {
        users: vec![("alice".into(), credential)],
        ..TestAccounts::default()
    });
    let auth = fixture.authentication();

    let mut exchange = auth.start(&ctx(), "PLAIN", true).unwrap();
    let done = auth
        .step(&ctx(), &mut exchange, b"\0alice\0pw")
        .await
        .unwrap();
    assert!(
        matches!(&done, Step::Done { authenticated, message }
            if authenticated.user == "alice" && message.is_empty()),
        "{done:?}"
    );
    let mut exchange = auth.start(&ctx(), "PLAIN", true).unwrap();
    let err = auth
        .step(&ctx(), &mut exchange, b"\0alice\0wrong")
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::AuthenticationFailed);
    assert!(err.message.contains("mechanism PLAIN"), "{}", err.message);
    let mut exchange = auth.start(&ctx(), "PLAIN", true).unwrap();
    let err = auth
        .step(&ctx(), &mut exchange, b"no separators")
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::AuthenticationFailed);
    assert!(err.message.contains("malformed"), "{}", err.message);

    let basic = weir_security::sasl::basic_auth_header("alice", "pw");
    let who = auth.authenticate_header(&ctx(), &basic).await.unwrap();
    assert_eq!(
        (who.user.as_str(), who.mechanism),
        ("alice", Mechanism::Basic)
    );
    assert!(!who.by_token());
    // A wrong password and an unknown user read the same.
    for (user, password) in [("alice", "nope"), ("mallory", "pw")] {
        let header = weir_security::sasl::basic_auth_header(user, password);
        let err = auth.authenticate_header(&ctx(), &header).await.unwrap_err();
        assert_eq!(err.reason, Reason::AuthenticationFailed);
        assert_eq!(
            err.message,
            format!("authentication failed for user {user:?}: wrong password or unknown user")
        );
    }
    let err = auth
        .authenticate_header(&ctx(), "Digest abc")
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::AuthenticationFailed);
    assert!(
        err.message.starts_with("bad authorization header"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn tokens_prove_their_owner_and_mark_the_context() {
    let token = NewToken::generate();
    let fixture = Fixture::new(TestAccounts {
        tokens: vec![(token.id.clone(), token.secret_sha256, "alice".into())],
        ..TestAccounts::default()
    });
    let auth = fixture.authentication();
    let who = auth
        .authenticate_header(&ctx(), &bearer_header(&token.token))
        .await
        .unwrap();
    assert_eq!(who.user, "alice");
    assert!(who.by_token());
    let mut request = ctx();
    who.apply(&mut request);
    assert_eq!(request.principal, Principal::User("alice".into()));
    assert!(request.authenticated_by_token);

    let other = NewToken::generate();
    let err = auth
        .authenticate(
            &ctx(),
            Credentials::Token(parse_token(&other.token).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, Reason::AuthenticationFailed);
    assert!(err.message.contains(&other.id), "{}", err.message);
}

#[test]
fn what_each_listener_requires() {
    let mut fixture = Fixture::new(TestAccounts::default());
    fixture.config = SecurityConfig {
        authorization: true,
        super_users: vec!["User:broker-1".into()],
        ..SecurityConfig::default()
    };
    let auth = fixture.authentication();
    assert!(!auth.required(Listener::KAFKA));
    assert!(!auth.required(Listener::GRPC));
    assert!(auth.required(Listener::HTTP), "the console asks who she is");
    assert!(auth.check_internal_caller(Some("broker-1")).is_ok());
    assert_eq!(
        auth.check_internal_caller(Some("alice"))
            .unwrap_err()
            .reason,
        Reason::AuthenticationFailed
    );
    assert!(auth.check_internal_caller(None).is_err());

    let open = Fixture {
        config: SecurityConfig::default(),
        ..Fixture::new(TestAccounts::default())
    };
    let auth = open.authentication();
    assert!(!auth.required(Listener::HTTP));
    assert!(auth.check_internal_caller(None).is_ok());
}
