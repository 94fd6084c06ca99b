//! The PEM files of the plugins' TLS settings (iLogtail's `tlscommon`: `CAFile`, `CertFile`,
//! `KeyFile`), read when a config loads so that a bad file is an error at start naming its
//! field and its path: for clients (`flusher_http`), for servers (`service_syslog`,
//! `service_http_server`), and a lighter check for libraries that read the files themselves
//! (`flusher_kafka_v2`: librdkafka takes paths).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A file's bytes; the error names the field and the path.
pub fn read(field: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{field}: cannot read {path:?}: {e}"))
}

/// The certificates of a PEM file, in order (other PEM blocks are skipped); none is an error.
pub fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field}: {path:?} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field}: no PEM certificate in {path:?}"));
    }
    Ok(certs)
}

/// `certificates`, each also parsed: a PEM block that is not a certificate underneath is
/// refused now, not at the first handshake.
pub fn checked_certificates(
    field: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = certificates(field, path)?;
    for cert in &certs {
        RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| not_a_certificate(field, path, e))?;
    }
    Ok(certs)
}

fn not_a_certificate(field: &str, path: &str, e: rustls::Error) -> String {
    format!("{field}: {path:?}: not a valid certificate: {e}")
}

/// The CAs of a PEM file, as the trust anchors of a verifier.
pub fn root_store(field: &str, path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(field, path)? {
        roots
            .add(cert)
            .map_err(|e| not_a_certificate(field, path, e))?;
    }
    Ok(roots)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1; not encrypted).
pub fn private_key(field: &str, path: &str) -> Result<PrivateKeyDer<'static>, String> {
    private_key_in(field, path, &read(field, path)?)
}

/// The first private key of `pem`, the contents of `path`.
pub fn private_key_in(
    field: &str,
    path: &str,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{field}: no PEM private key in {path:?}"),
        e => format!("{field}: {path:?} is not valid PEM: {e}"),
    })
}

/// The files of a server's `TLS` block: its certificate chain and key, and the CAs that
/// client certificates must be signed by (empty: no client certificate asked).
pub struct ServerFiles<'a> {
    pub cert_file: &'a str,
    pub key_file: &'a str,
    pub ca_file: &'a str,
}

/// A rustls server config from the files of a `TLS` block (errors name `TLS.CertFile`,
/// `TLS.KeyFile`, `TLS.CAFile`), speaking `versions`.
pub fn server_config(
    files: &ServerFiles,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, String> {
    if files.cert_file.is_empty() {
        return Err("TLS.CertFile: required when TLS is set".into());
    }
    if files.key_file.is_empty() {
        return Err("TLS.KeyFile: required when TLS is set".into());
    }
    let certs = certificates("TLS.CertFile", files.cert_file)?;
    let key = private_key("TLS.KeyFile", files.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if files.ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = root_store("TLS.CAFile", files.ca_file)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS.CAFile: {:?}: {e}", files.ca_file))?;
        builder.with_client_cert_verifier(verifier)
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "TLS.KeyFile: {:?} does not go with TLS.CertFile {:?}: {e}",
            files.key_file, files.cert_file
        )
    })
}

/// A readable file holding a PEM block whose label contains `what` (`CERTIFICATE`,
/// `PRIVATE KEY`): for libraries that read the file themselves.
pub fn check_pem(field: &str, path: &str, what: &str) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{field}: cannot read {path:?}: {e}"))?;
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(what));
    if !found {
        return Err(format!("{field}: {path:?} holds no PEM {what}"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 (also usable as the CA of client
    /// certificates) in `dir`: (cert, key, another key) paths.
    pub(crate) fn pem_files(dir: &std::path::Path) -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        (
            write("cert.pem", cert.pem()),
            write("key.pem", key.serialize_pem()),
            write("other.pem", other.serialize_pem()),
        )
    }

    #[test]
    fn good_files_make_a_server_config_and_bad_ones_name_field_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, other_key) = pem_files(dir.path());
        let ca = &cert;
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let junk = junk.to_str().unwrap();
        let fake = dir.path().join("fake.pem");
        std::fs::write(
            &fake,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let fake = fake.to_str().unwrap();
        let versions = rustls::DEFAULT_VERSIONS;
        let server = |cert_file, key_file, ca_file| {
            server_config(
                &ServerFiles {
                    cert_file,
                    key_file,
                    ca_file,
                },
                versions,
            )
        };
        assert!(server(&cert, &key, "").is_ok());
        assert!(server(&cert, &key, ca).is_ok());
        let e = server("/no/such.pem", &key, "").unwrap_err();
        assert!(
            e.starts_with("TLS.CertFile: cannot read \"/no/such.pem\""),
            "{e}"
        );
        let e = server(junk, &key, "").unwrap_err();
        assert_eq!(e, format!("TLS.CertFile: no PEM certificate in {junk:?}"));
        let e = server(&cert, &cert, "").unwrap_err();
        assert_eq!(e, format!("TLS.KeyFile: no PEM private key in {cert:?}"));
        let e = server(&cert, &key, fake).unwrap_err();
        assert!(
            e.starts_with(&format!("TLS.CAFile: {fake:?}: not a valid")),
            "{e}"
        );
        let e = server(&cert, &other_key, "").unwrap_err();
        assert!(
            e.starts_with("TLS.KeyFile:") && e.contains("does not go with"),
            "{e}"
        );
        let e = server("", &key, "").unwrap_err();
        assert_eq!(e, "TLS.CertFile: required when TLS is set");
        assert_eq!(
            checked_certificates("F", fake).unwrap_err(),
            format!("F: {fake:?}: not a valid certificate: {}", {
                RootCertStore::empty()
                    .add(certificates("F", fake).unwrap().remove(0))
                    .unwrap_err()
            })
        );
        assert_eq!(checked_certificates("F", ca).unwrap().len(), 1);
        assert!(check_pem("F", &key, "PRIVATE KEY").is_ok());
        assert_eq!(
            check_pem("F", &key, "CERTIFICATE").unwrap_err(),
            format!("F: {key:?} holds no PEM CERTIFICATE")
        );
    }
}
