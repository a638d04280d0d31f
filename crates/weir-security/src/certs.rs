//! Certificates for a development or test set-up (`weir dev certs --out DIR`): a CA, a
//! node certificate every broker of a local cluster can present (to clients and to each
//! other), and client certificates for a client and an administrator, all signed by the
//! CA. Keys are ECDSA P-256; certificates are valid for [`VALIDITY_DAYS`] from now.
//!
//! Not for production: a real deployment's certificates come from its own CA, with the
//! CA key kept off the brokers.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How long the certificates are valid.
pub const VALIDITY_DAYS: i64 = 365;

/// The names the node certificate is valid for besides those asked for: a local cluster's.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The client certificates made besides the node's: `(file stem, principal)`.
pub const CLIENTS: [(&str, &str); 2] = [("client", "client"), ("admin", "admin")];

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("making a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("writing {}: {why}", path.display())]
    Write { path: PathBuf, why: io::Error },
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA and the certificates it signed.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca: Pem,
    /// The brokers' certificate: server and client use (brokers dial each other), valid
    /// for [`LOCAL_NAMES`] and the extra names asked for; its principal is `node`.
    pub node: Pem,
    /// `(file stem, certificate)` for each of [`CLIENTS`].
    pub clients: Vec<(String, Pem)>,
}

/// From a day ago (clocks of a local set-up may disagree a little) to [`VALIDITY_DAYS`]
/// from now.
fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Weir development");
    name.push(DnType::CommonName, common_name);
    name
}

/// The development CA's parameters: its certificate is self-signed with them, and each
/// certificate it signs names it by them.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = named("Weir development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    params
}

/// A certificate for `common_name`, valid for `names`, signed by `issuer`.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<Pem, CertsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = named(common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The node certificate, valid for [`LOCAL_NAMES`] and `extra_names`.
fn node(issuer: &Issuer<'_, KeyPair>, extra_names: &[String]) -> Result<Pem, CertsError> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    leaf(
        issuer,
        "node",
        names,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}

/// A new CA, a node certificate valid for [`LOCAL_NAMES`] and `extra_names`, and the
/// [`CLIENTS`] certificates.
pub fn generate(extra_names: &[String]) -> Result<DevCerts, CertsError> {
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params();
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = Pem {
        cert: ca_cert.pem(),
        key: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca_params, ca_key);
    let node = node(&issuer, extra_names)?;
    let clients = CLIENTS
        .iter()
        .map(|(stem, principal)| {
            let pem = leaf(
                &issuer,
                principal,
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )?;
            Ok((stem.to_string(), pem))
        })
        .collect::<Result<Vec<_>, CertsError>>()?;
    Ok(DevCerts { ca, node, clients })
}

/// A new node certificate from the development CA whose key is `ca_key` (PEM, as
/// [`generate`] wrote it): what renewing a node's certificate without a new CA gives,
/// trusted by every client that trusts the CA.
pub fn renew_node(ca_key: &str, extra_names: &[String]) -> Result<Pem, CertsError> {
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(ca_key)?);
    node(&issuer, extra_names)
}

/// A certificate of the development CA whose key is `ca_key` that expired a day ago,
/// for `client` use (a client certificate) or a node's: what the tests refuse.
#[cfg(test)]
pub(crate) fn expired(ca_key: &str, client: bool) -> Result<Pem, CertsError> {
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(ca_key)?);
    let key = KeyPair::generate()?;
    let names = if client {
        Vec::new()
    } else {
        vec!["localhost".to_owned()]
    };
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = named(if client { "late-client" } else { "node" });
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl DevCerts {
    /// Writes `ca.pem`, `ca-key.pem`, `node.pem`, `node-key.pem` and `<stem>.pem`,
    /// `<stem>-key.pem` for each client into `dir` (created if missing), keys readable by
    /// the owner only; returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, CertsError> {
        std::fs::create_dir_all(dir).map_err(|why| CertsError::Write {
            path: dir.to_owned(),
            why,
        })?;
        let mut written = Vec::new();
        let mut pairs = vec![("ca", &self.ca), ("node", &self.node)];
        pairs.extend(self.clients.iter().map(|(stem, pem)| (stem.as_str(), pem)));
        for (stem, pem) in pairs {
            written.push(write_file(
                &dir.join(format!("{stem}.pem")),
                &pem.cert,
                false,
            )?);
            written.push(write_file(
                &dir.join(format!("{stem}-key.pem")),
                &pem.key,
                true,
            )?);
        }
        Ok(written)
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<PathBuf, CertsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |why| CertsError::Write {
        path: path.to_owned(),
        why,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(path.to_owned())
}
