use super::listeners::hostname;
use super::*;

/// What clients of `listener` are told when it bound `bound`.
fn advertised_of(config: &ServerConfig, listener: Listener, bound: &str) -> String {
    let specs = config.listeners().unwrap();
    let spec = specs.iter().find(|s| s.listener == listener).unwrap();
    spec.advertised_address(bound.parse().unwrap(), "client:1")
        .unwrap()
}

fn voters(specs: &[&str]) -> Vec<Voter> {
    specs.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn defaults_are_a_valid_single_node_voter() {
    let config = ServerConfig::default();
    config.validate().unwrap();
    assert_eq!(config.node_id, 0);
    assert!(config.controller_voters.is_empty());
    assert!(config.is_controller_voter());
}

#[test]
fn voters_parse_and_print_back() {
    for spec in [
        "1@127.0.0.1:9292",
        "2@broker-2.example.com:9392",
        "3@[::1]:9492",
    ] {
        let voter: Voter = spec.parse().unwrap();
        assert_eq!(voter.to_string(), spec);
    }
    let voter: Voter = "0@host_a:1".parse().unwrap();
    assert_eq!((voter.id, voter.addr.as_str()), (0, "host_a:1"));
}

#[test]
fn bad_voters_say_what_is_wrong() {
    for (spec, expected) in [
        ("127.0.0.1:9292", "no '@'"),
        ("x@127.0.0.1:9292", "\"x\" is not a number"),
        ("-1@127.0.0.1:9292", "negative"),
        ("1@127.0.0.1", "no port"),
        ("1@:9292", "no host"),
        ("1@host:0", "port 0"),
        ("1@host:99999", "not a number from 1 to 65535"),
        ("1@::1:9292", "needs brackets"),
        ("1@[zz]:9292", "not an IPv6 address"),
        ("1@ho st:9292", "character ' '"),
        ("1@http://h:9292", "without a scheme"),
        ("1@h/x:9292", "character '/'"),
    ] {
        let err = spec.parse::<Voter>().unwrap_err().to_string();
        assert!(err.contains(spec), "{spec}: {err}");
        assert!(err.contains(expected), "{spec}: {err}");
    }
}

#[test]
fn the_voter_list_is_checked_as_a_whole() {
    let mut config = ServerConfig {
        node_id: 1,
        controller_voters: voters(&["1@a:9292", "2@b:9392", "3@c:9492"]),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    assert!(config.is_controller_voter());

    config.controller_voters = voters(&["1@a:9292", "1@b:9392"]);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("id 1 is listed twice"), "{err}");

    config.controller_voters = voters(&["1@a:9292", "2@A:9292"]);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("same address"), "{err}");

    config.controller_voters = (0..=MAX_CONTROLLER_VOTERS)
        .map(|i| format!("{i}@h{i}:9292").parse().unwrap())
        .collect();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("at most 9"), "{err}");
    config.controller_voters.pop();
    config.validate().unwrap();

    // Built in code, so never parsed: still checked.
    config.controller_voters = vec![Voter {
        id: -2,
        addr: "a:1".into(),
    }];
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("negative")
    );
}

#[test]
fn a_node_outside_a_non_empty_voter_list_is_an_observer() {
    let config = ServerConfig {
        node_id: 4,
        controller_voters: voters(&["1@a:9292", "2@b:9392", "3@c:9492"]),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    assert!(!config.is_controller_voter());
}

#[test]
fn node_id_advertise_and_internal_listen_are_checked() {
    let config = ServerConfig {
        node_id: -1,
        ..ServerConfig::default()
    };
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("negative")
    );

    for bad in [
        "localhost",
        "host:",
        ":9292",
        "h:0",
        "0.0.0.0:9292",
        "[::]:9292",
    ] {
        let config = ServerConfig {
            advertise: Some(bad.into()),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
    }

    for bad in [String::new(), "a\nb".into(), "r".repeat(MAX_RACK_BYTES + 1)] {
        let config = ServerConfig {
            rack: Some(bad.clone()),
            ..ServerConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("rack "), "{bad:?}: {err}");
    }
    let config = ServerConfig {
        rack: Some("eu-west-1a".into()),
        ..ServerConfig::default()
    };
    config.validate().expect("a plain rack name");

    let config = ServerConfig {
        internal_listen: Some(DEFAULT_LISTEN),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("gRPC listen address"), "{err}");
    let config = ServerConfig {
        internal_listen: Some(DEFAULT_ADMIN_LISTEN),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("admin HTTP"), "{err}");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        internal_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::default()
    };
    config.validate().unwrap();

    let config = ServerConfig {
        external_listen: Some(DEFAULT_LISTEN),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "127.0.0.1:9292 is both the gRPC listen address and the external listen address; \
         give each listener its own port"
    );
    let config = ServerConfig {
        external_advertise: Some("127.0.0.1:19292".into()),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("--external-listen"), "{err}");
    let config = ServerConfig {
        external_listen: Some("0.0.0.0:19292".parse().unwrap()),
        external_advertise: Some("http://127.0.0.1:19292".into()),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("without a scheme"), "{err}");
    let config = ServerConfig {
        external_listen: Some("0.0.0.0:19292".parse().unwrap()),
        external_advertise: Some("127.0.0.1:19292".into()),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    assert_eq!(
        advertised_of(&config, Listener::GRPC_EXTERNAL, "0.0.0.0:19292"),
        "127.0.0.1:19292"
    );

    let config = ServerConfig {
        kafka_external_advertise: Some("127.0.0.1:19092".into()),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("--kafka-external-listen"), "{err}");
    let config = ServerConfig {
        kafka_external_listen: Some(DEFAULT_KAFKA_LISTEN),
        ..ServerConfig::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("external Kafka listen address"), "{err}");
    let config = ServerConfig {
        kafka_external_listen: Some("0.0.0.0:19092".parse().unwrap()),
        kafka_external_advertise: Some("127.0.0.1:19092".into()),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    assert_eq!(
        advertised_of(&config, Listener::KAFKA_EXTERNAL, "0.0.0.0:19092"),
        "127.0.0.1:19092"
    );
}

#[test]
fn the_advertised_address_prefers_the_setting_then_a_specific_ip_then_the_host_name() {
    let bound: SocketAddr = "0.0.0.0:4242".parse().unwrap();
    let config = ServerConfig {
        advertise: Some("broker-1.example.com:9292".into()),
        ..ServerConfig::default()
    };
    assert_eq!(
        config.advertised_address(bound).to_string(),
        "broker-1.example.com:9292"
    );

    let config = ServerConfig::default();
    let specific: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    assert_eq!(
        config.advertised_address(specific).to_string(),
        "127.0.0.1:4242"
    );
    let v6: SocketAddr = "[::1]:4242".parse().unwrap();
    assert_eq!(config.advertised_address(v6).to_string(), "[::1]:4242");

    for any in [bound, "[::]:4242".parse().unwrap()] {
        let advertised = config.advertised_address(any);
        assert_eq!(advertised.host, hostname().unwrap());
        assert_eq!(advertised.port, 4242);
    }
}
#[test]
fn tls_settings_apply_to_every_listener_and_the_specific_ones_win() {
    let path = |name: &str| Some(PathBuf::from(name));
    let config = ServerConfig {
        tls_cert: path("node.pem"),
        tls_key: path("node-key.pem"),
        tls_client_ca: path("ca.pem"),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    let grpc = config.tls().unwrap().unwrap();
    assert_eq!(grpc.client_ca, path("ca.pem"));
    assert_eq!(config.kafka_tls().unwrap(), Some(grpc.clone()));
    let admin = config.admin_tls().unwrap().unwrap();
    assert_eq!((admin.cert, admin.client_ca), (grpc.cert.clone(), None));
    assert_eq!(
        config.peer_tls().unwrap().unwrap().ca,
        PathBuf::from("ca.pem")
    );

    let config = ServerConfig {
        kafka_tls_cert: path("kafka.pem"),
        kafka_tls_key: path("kafka-key.pem"),
        admin_tls_cert: path("admin.pem"),
        admin_tls_key: path("admin-key.pem"),
        tls_ca: path("cluster-ca.pem"),
        ..config
    };
    assert_eq!(
        config.kafka_tls().unwrap().unwrap().cert,
        PathBuf::from("kafka.pem")
    );
    assert_eq!(
        config.admin_tls().unwrap().unwrap().cert,
        PathBuf::from("admin.pem")
    );
    assert_eq!(
        config.peer_tls().unwrap().unwrap().ca,
        PathBuf::from("cluster-ca.pem")
    );

    for (config, names) in [
        (
            ServerConfig {
                tls_cert: path("node.pem"),
                ..ServerConfig::default()
            },
            ["--tls-cert", "--tls-key"],
        ),
        (
            ServerConfig {
                tls_ca: path("ca.pem"),
                ..ServerConfig::default()
            },
            ["--tls-cert", "--tls-ca"],
        ),
        (
            ServerConfig {
                admin_tls_key: path("admin-key.pem"),
                ..ServerConfig::default()
            },
            ["--admin-tls-cert", "--admin-tls-key"],
        ),
        (
            ServerConfig {
                tls_cert: path("node.pem"),
                tls_key: path("node-key.pem"),
                ..ServerConfig::default()
            },
            ["--tls-ca", "--tls-client-ca"],
        ),
    ] {
        let err = config.validate().unwrap_err().to_string();
        for name in names {
            assert!(err.contains(name), "{name}: {err}");
        }
    }
}

#[test]
fn a_secured_broker_needs_certificates_brokers_know_each_other_by() {
    let path = |name: &str| Some(PathBuf::from(name));
    let secured = ServerConfig {
        authorization: true,
        ..ServerConfig::default()
    };
    assert_eq!(
        secured.validate(),
        Err(ServerConfigError::SecuredWithoutBrokerIdentity)
    );
    let without_client_ca = ServerConfig {
        authentication: Authentication::Required,
        tls_cert: path("node.pem"),
        tls_key: path("node-key.pem"),
        tls_ca: path("ca.pem"),
        ..ServerConfig::default()
    };
    let err = without_client_ca.validate().unwrap_err().to_string();
    assert!(err.contains("--tls-client-ca"), "{err}");
    let whole = ServerConfig {
        tls_client_ca: path("ca.pem"),
        admin_user: Some("admin".into()),
        admin_password: Some(Secret("s".into())),
        super_users: vec!["User:ops".into()],
        ..without_client_ca
    };
    whole.validate().unwrap();
    let security = whole.security(Some("weir-node"));
    assert_eq!(
        security.super_users,
        ["User:ops", "User:admin", "User:weir-node"]
    );
    assert!(security.require_authentication && !security.authorization);
    let bad = ServerConfig {
        super_users: vec!["ops".into()],
        ..whole
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("User:NAME")
    );
}

#[test]
fn the_listen_settings_make_one_list_of_listeners() {
    let names = |config: &ServerConfig| -> Vec<(&'static str, &'static str, String)> {
        config
            .listeners()
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.listener.name,
                    s.listener.protocol.name,
                    s.bind.to_string(),
                )
            })
            .collect()
    };
    // The defaults: gRPC, admin HTTP and Kafka on loopback.
    let config = ServerConfig::default();
    assert_eq!(
        names(&config),
        [
            ("client", "grpc", "127.0.0.1:9292".to_owned()),
            ("admin", "http", "127.0.0.1:9293".to_owned()),
            ("kafka", "kafka", "127.0.0.1:9092".to_owned()),
        ]
    );
    let kafka = &config.listeners().unwrap()[2];
    assert!(kafka.also_ipv6_loopback);
    assert_eq!(kafka.advertised, Advertised::Given(None));
    assert_eq!(
        kafka.authentication,
        ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
    );
    assert_eq!(config.listeners().unwrap()[1].advertised, Advertised::Not);

    // Every flag, with `none` (None) turning the admin and Kafka ones off.
    let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
    let config = ServerConfig {
        listen: "0.0.0.0:9292".parse().unwrap(),
        advertise: Some("weir-1:9292".into()),
        internal_listen: addr("10.0.0.1:9392"),
        external_listen: addr("0.0.0.0:19292"),
        external_advertise: Some("localhost:19292".into()),
        admin_listen: None,
        kafka_listen: None,
        kafka_external_listen: addr("0.0.0.0:19092"),
        kafka_external_advertise: Some("localhost:19092".into()),
        ..ServerConfig::default()
    };
    config.validate().unwrap();
    assert_eq!(
        names(&config),
        [
            ("client", "grpc", "0.0.0.0:9292".to_owned()),
            ("internal", "grpc", "10.0.0.1:9392".to_owned()),
            ("external", "grpc", "0.0.0.0:19292".to_owned()),
            ("kafka_external", "kafka", "0.0.0.0:19092".to_owned()),
        ]
    );
    let specs = config.listeners().unwrap();
    let advertised: Vec<Option<String>> = specs
        .iter()
        .map(|s| s.advertised_address(s.bind, "weir-1:9292"))
        .collect();
    assert_eq!(
        advertised,
        [
            Some("weir-1:9292".to_owned()),
            Some("10.0.0.1:9392".to_owned()),
            Some("localhost:19292".to_owned()),
            Some("localhost:19092".to_owned()),
        ]
    );
    // An internal listener on every interface is reached at the client address.
    let internal = &specs[1];
    assert_eq!(
        internal.advertised_address("0.0.0.0:9392".parse().unwrap(), "weir-1:9292"),
        Some("weir-1:9292".to_owned())
    );
    // Two listeners on one fixed address are refused whichever they are.
    let config = ServerConfig {
        kafka_external_listen: addr("10.0.0.1:9392"),
        ..config
    };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "10.0.0.1:9392 is both the internal listen address and the external Kafka \
         listen address; give each listener its own port"
    );
}

#[test]
fn each_listener_carries_its_tls_and_the_mechanisms_it_offers() {
    let path = |p: &str| Some(PathBuf::from(p));
    let config = ServerConfig {
        tls_cert: path("node.pem"),
        tls_key: path("node-key.pem"),
        tls_client_ca: path("ca.pem"),
        kafka_tls_cert: path("kafka.pem"),
        kafka_tls_key: path("kafka-key.pem"),
        internal_listen: Some("127.0.0.1:9392".parse().unwrap()),
        ..ServerConfig::default()
    };
    let specs = config.listeners().unwrap();
    let by_name = |name: &str| specs.iter().find(|s| s.listener.name == name).unwrap();
    let client = by_name("client");
    assert_eq!(client.tls, config.tls().unwrap());
    assert_eq!(client.authentication, ["basic", "bearer", "mTLS"]);
    assert_eq!(by_name("internal").authentication, ["mTLS"]);
    let kafka = by_name("kafka");
    assert_eq!(kafka.tls.as_ref().unwrap().cert, PathBuf::from("kafka.pem"));
    // The Kafka listener's own files name no client CA: no client certificates.
    assert!(!kafka.authentication.contains(&"mTLS"));
    let admin = by_name("admin");
    assert_eq!(admin.tls.as_ref().unwrap().cert, PathBuf::from("node.pem"));
    assert_eq!(admin.authentication, ["basic", "bearer"]);
}
