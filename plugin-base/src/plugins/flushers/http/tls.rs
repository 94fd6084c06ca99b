//! `Authentication.TLS` of `flusher_http`: iLogtail's `tlscommon.TLSConfig` (the block its
//! HTTP-based flushers share), turned into ureq's rustls settings. Every file is read and
//! parsed when the flusher is built (`plugins::tls`), so a bad file is an error at start naming
//! the field.

use serde::Deserialize;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::plugins::tls;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Authentication {
    #[serde(rename = "TLS")]
    pub tls: Option<TlsOptions>,
}

/// iLogtail's `tlscommon.TLSConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TlsOptions {
    /// TLS settings apply only when true (iLogtail's rule); an `https` URL without them uses
    /// the Mozilla roots.
    pub enabled: bool,
    /// PEM file of the CA(s) the server's certificate must be signed by.
    #[serde(rename = "CAFile")]
    pub ca_file: String,
    /// PEM client certificate (chain) and its key, for servers that ask for one.
    pub cert_file: String,
    pub key_file: String,
    /// Encrypts but does not verify the server's certificate.
    pub insecure_skip_verify: bool,
    /// `1.0` .. `1.3`; rustls speaks TLS 1.2 and 1.3 only, so older versions are never used.
    pub min_version: String,
    pub max_version: String,
}

const FIELD: &str = "Authentication.TLS";

/// A PEM file's certificates, each checked, as ureq takes them.
fn certificates(field: &str, path: &str) -> Result<Vec<Certificate<'static>>, String> {
    let certs = tls::checked_certificates(&format!("{FIELD}.{field}"), path)?;
    Ok(certs
        .iter()
        .map(|cert| Certificate::from_der(cert.as_ref()).to_owned())
        .collect())
}

/// A PEM file's private key, as ureq takes it.
fn private_key(path: &str) -> Result<PrivateKey<'static>, String> {
    let field = format!("{FIELD}.KeyFile");
    let pem = tls::read(&field, path)?;
    tls::private_key_in(&field, path, &pem)?;
    // The same PEM parser underneath: the key just found (ureq's `KeyKind` is not public).
    PrivateKey::from_pem(&pem).map_err(|e| format!("{field}: {path:?} is not valid PEM: {e}"))
}

fn check_version(field: &str, v: &str) -> Result<(), String> {
    match v {
        "" | "1.0" | "1.1" | "1.2" | "1.3" => Ok(()),
        other => Err(format!(
            "{FIELD}.{field}: unknown TLS version {other:?} (1.0, 1.1, 1.2 or 1.3)"
        )),
    }
}

/// The TLS settings to use, or None for ureq's defaults.
pub fn tls_config(auth: &Authentication) -> Result<Option<TlsConfig>, String> {
    let Some(opts) = auth.tls.as_ref().filter(|t| t.enabled) else {
        return Ok(None);
    };
    check_version("MinVersion", &opts.min_version)?;
    check_version("MaxVersion", &opts.max_version)?;
    let mut builder = TlsConfig::builder().disable_verification(opts.insecure_skip_verify);
    if !opts.ca_file.is_empty() {
        let roots = certificates("CAFile", &opts.ca_file)?;
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    }
    match (opts.cert_file.is_empty(), opts.key_file.is_empty()) {
        (true, true) => {}
        (false, false) => {
            let chain = certificates("CertFile", &opts.cert_file)?;
            let key = private_key(&opts.key_file)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (false, true) => return Err(format!("{FIELD}.KeyFile: required with CertFile")),
        (true, false) => return Err(format!("{FIELD}.CertFile: required with KeyFile")),
    }
    Ok(Some(builder.build()))
}
