//! `TLS`: syslog over TLS (RFC 5425) on the TCP listener. iLogtail's `service_syslog` has no
//! TLS; the option block takes the names of iLogtail's common TLS settings
//! (`pkg/tlscommon`: `Enabled`, `CAFile`, `CertFile`, `KeyFile`, `MinVersion`, `MaxVersion`),
//! seen from the server's side (as `service_http_server` takes them, `Enabled` may be left out): `CertFile` and `KeyFile` are the server's certificate chain and
//! key, and a `CAFile` makes the server ask every client for a certificate signed by it.
//! Everything is read when the config loads (`plugins::tls`): a bad file is an error naming its
//! field.

use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::{ServerConfig, SupportedProtocolVersion};

use crate::plugins::tls;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TlsConfig {
    /// On when true, off when false; when absent, on when a file is given (the shape
    /// `service_http_server` takes: `TLS: {CertFile, KeyFile, CAFile}`).
    pub enabled: Option<bool>,
    /// PEM: the server's certificate, then its chain.
    pub cert_file: String,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1; not encrypted).
    pub key_file: String,
    /// PEM: the CAs a client certificate must be signed by. Empty: no client certificate asked.
    #[serde(rename = "CAFile")]
    pub ca_file: String,
    /// `1.2` (the default) or `1.3`.
    pub min_version: String,
    /// `1.2` or `1.3` (the default).
    pub max_version: String,
}

impl TlsConfig {
    /// The rustls server config, or None when TLS is not enabled.
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, String> {
        let any_file =
            !self.cert_file.is_empty() || !self.key_file.is_empty() || !self.ca_file.is_empty();
        if !self.enabled.unwrap_or(any_file) {
            return Ok(None);
        }
        let versions = versions(&self.min_version, &self.max_version)?;
        let files = tls::ServerFiles {
            cert_file: &self.cert_file,
            key_file: &self.key_file,
            ca_file: &self.ca_file,
        };
        Ok(Some(Arc::new(tls::server_config(&files, &versions)?)))
    }
}

fn versions(min: &str, max: &str) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    fn rank(field: &str, value: &str, default: u8) -> Result<u8, String> {
        match value.trim() {
            "" => Ok(default),
            "1.2" => Ok(2),
            "1.3" => Ok(3),
            "1.0" | "1.1" => Err(format!(
                "TLS.{field}: TLS {value} is not supported (too old): use 1.2 or 1.3"
            )),
            _ => Err(format!(
                "TLS.{field}: {value:?} is not a TLS version (1.2 or 1.3)"
            )),
        }
    }
    let (min, max) = (rank("MinVersion", min, 2)?, rank("MaxVersion", max, 3)?);
    if min > max {
        return Err("TLS.MinVersion: is above TLS.MaxVersion".into());
    }
    Ok([(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(rank, _)| (min..=max).contains(rank))
        .map(|(_, v)| v)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            enabled: Some(true),
            cert_file: cert.into(),
            key_file: key.into(),
            ..TlsConfig::default()
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let junk = junk.to_str().unwrap();
        let e = config("/no/such/cert.pem", "/no/such/key.pem")
            .server_config()
            .unwrap_err();
        assert!(
            e.starts_with("TLS.CertFile:") && e.contains("/no/such/cert.pem"),
            "{e}"
        );
        let e = config(junk, junk).server_config().unwrap_err();
        assert!(
            e.starts_with("TLS.CertFile:") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = TlsConfig {
            enabled: Some(true),
            ..TlsConfig::default()
        }
        .server_config()
        .unwrap_err();
        assert!(e.starts_with("TLS.CertFile:"), "{e}");
        // Files without `Enabled` turn TLS on; `Enabled: false` turns it off.
        let files = TlsConfig {
            cert_file: "/no/such/cert.pem".into(),
            key_file: "/no/such/key.pem".into(),
            ..TlsConfig::default()
        };
        let e = files.server_config().unwrap_err();
        assert!(e.starts_with("TLS.CertFile:"), "{e}");
        let off = TlsConfig {
            enabled: Some(false),
            ..files
        };
        assert!(off.server_config().unwrap().is_none());
        assert!(TlsConfig::default().server_config().unwrap().is_none());
    }

    #[test]
    fn versions_are_checked() {
        assert_eq!(versions("", "").unwrap().len(), 2);
        assert_eq!(versions("1.3", "").unwrap().len(), 1);
        assert!(versions("1.0", "").unwrap_err().contains("MinVersion"));
        assert!(versions("1.3", "1.2").is_err());
        assert!(versions("", "2").unwrap_err().contains("MaxVersion"));
    }
}
