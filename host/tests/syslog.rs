//! `service_syslog` end to end: the real daemon with the real plugin base, a pipeline
//! `service_syslog` → `flusher_stdout`, messages sent over real sockets on 127.0.0.1 (TCP with
//! both framings, UDP, TLS), every parsed field read back from the daemon's stdout.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Daemon, Line, Sandbox};

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon (in UTC, so that RFC 3164 times read as the test writes them) running one syslog
/// pipeline with `options` (YAML lines of the input), once it listens on `address`.
fn start(sandbox: &Sandbox, address: &str, options: &str) -> Daemon {
    sandbox.write_config(
        "syslog.yaml",
        &format!(
            "global: {{AggregatIntervalMs: 100, FlushIntervalMs: 100}}\n\
             inputs:\n  - Type: service_syslog\n    Address: {address}\n{options}\
             flushers:\n  - Type: flusher_stdout\n    OnlyStdout: true\n"
        ),
    );
    let daemon = Daemon::start(
        sandbox,
        Some(&common::release_plugin_libs()),
        &[("TZ", "UTC")],
    );
    daemon.wait_stderr("the syslog listener", |l| {
        l.contains(&format!("listening on {address}"))
    });
    daemon
}

fn wait_content(daemon: &Daemon, content: &str) -> Line {
    daemon.wait_line(content, |l| l.get("_content_") == Some(content))
}

/// Asserts `line` has each field with its value (None: the field is absent).
fn assert_fields(line: &Line, fields: &[(&str, Option<&str>)]) {
    for (key, value) in fields {
        assert_eq!(line.get(key), *value, "{key} in {}", line.text);
    }
}

const SD: &str = "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"]";

/// An RFC 5424 message with every header field.
fn rfc5424(content: &str) -> String {
    format!(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 {SD} {content}"
    )
}

fn assert_rfc5424(line: &Line, client_ip: &str) {
    assert_fields(
        line,
        &[
            ("_program_", Some("evntslog")),
            ("_priority_", Some("165")),
            ("_facility_", Some("20")),
            ("_severity_", Some("5")),
            ("_unixtimestamp_", Some("1065910455003000000")),
            ("__time__", Some("1065910455")),
            ("_hostname_", Some("mymachine.example.com")),
            ("_client_ip_", Some(client_ip)),
            ("_process_id_", Some("1234")),
            ("_message_id_", Some("ID47")),
            (
                "_structured_data_",
                Some("{\"exampleSDID@32473\":{\"eventSource\":\"Application\",\"iut\":\"3\"}}"),
            ),
        ],
    );
    assert!(line.get("_ip_").is_some(), "_ip_ in {}", line.text);
}

/// Now, whole seconds, and as an RFC 3164 header writes it (`Mmm dd hh:mm:ss`, UTC).
fn rfc3164_now() -> (u64, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let rem = secs % 86_400;
    let stamp = format!(
        "{} {day:>2} {:02}:{:02}:{:02}",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (secs, stamp)
}

fn rfc3164(stamp: &str, content: &str) -> String {
    format!("<34>{stamp} web-1 nginx[99]: {content}")
}

fn assert_rfc3164(line: &Line, secs: u64, client_ip: &str) {
    let nanos = format!("{secs}000000000");
    assert_fields(
        line,
        &[
            ("_program_", Some("nginx")),
            ("_priority_", Some("34")),
            ("_facility_", Some("4")),
            ("_severity_", Some("2")),
            ("_unixtimestamp_", Some(&nanos)),
            ("__time__", Some(&secs.to_string())),
            ("_hostname_", Some("web-1")),
            ("_client_ip_", Some(client_ip)),
            ("_process_id_", None),
            ("_structured_data_", None),
        ],
    );
}

fn octet_counted(message: &str) -> String {
    format!("{} {message}", message.len())
}

/// Writes `bytes` in small pieces, so that messages and their framing arrive split anywhere.
fn write_in_pieces(stream: &mut impl Write, bytes: &[u8], piece: usize) {
    for chunk in bytes.chunks(piece) {
        stream.write_all(chunk).unwrap();
        stream.flush().unwrap();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn tcp_messages_in_both_framings_give_every_field() {
    let sandbox = Sandbox::new();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let mut daemon = start(&sandbox, &address, "    ParseProtocol: auto\n");
    let addr = address.trim_start_matches("tcp://");
    let (secs, stamp) = rfc3164_now();

    // RFC 5424, octet-counted (one message holding a newline); RFC 3164, newline-framed.
    let mut first = TcpStream::connect(addr).unwrap();
    let multi_line = rfc5424("5424 octet-counted\nsecond line");
    first
        .write_all(octet_counted(&multi_line).as_bytes())
        .unwrap();
    first
        .write_all(format!("{}\n", rfc3164(&stamp, "3164 newline")).as_bytes())
        .unwrap();
    // One connection mixing both framings and both protocols, written in 7-byte pieces, the
    // last message without its newline (the connection's end closes it).
    let mut mixed = TcpStream::connect(addr).unwrap();
    let stream = format!(
        "{}{}\n{}\n{}not syslog at all",
        octet_counted(&rfc5424("mixed 5424 octet")),
        rfc3164(&stamp, "mixed 3164 newline"),
        rfc5424("mixed 5424 newline"),
        octet_counted(&rfc3164(&stamp, "mixed 3164 octet")),
    );
    write_in_pieces(&mut mixed, stream.as_bytes(), 7);
    drop(mixed);

    for content in [
        "5424 octet-counted\nsecond line",
        "mixed 5424 octet",
        "mixed 5424 newline",
    ] {
        assert_rfc5424(&wait_content(&daemon, content), "127.0.0.1");
    }
    for content in ["3164 newline", "mixed 3164 newline", "mixed 3164 octet"] {
        assert_rfc3164(&wait_content(&daemon, content), secs, "127.0.0.1");
    }
    // Not syslog: kept whole (IgnoreParseFailure is true by default), this host's name, the
    // time it arrived.
    let raw = wait_content(&daemon, "not syslog at all");
    assert_fields(
        &raw,
        &[
            ("_priority_", Some("-1")),
            ("_facility_", Some("-1")),
            ("_severity_", Some("-1")),
            ("_program_", Some("")),
            ("_hostname_", Some(&hostname())),
            ("_client_ip_", Some("127.0.0.1")),
        ],
    );
    let arrived: u64 = raw.get("__time__").unwrap().parse().unwrap();
    assert!(arrived >= secs, "{}", raw.text);
    drop(first);
    let (status, took) = daemon.terminate();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    // Each message exactly once.
    let lines = daemon.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.get("_content_").is_some())
            .count(),
        7,
        "{:#?}",
        lines.iter().map(|l| &l.text).collect::<Vec<_>>()
    );
}

#[test]
fn udp_datagrams_of_both_protocols_and_several_lines() {
    let sandbox = Sandbox::new();
    let address = format!("udp://127.0.0.1:{}", free_udp_port());
    let daemon = start(&sandbox, &address, "    ParseProtocol: auto\n");
    let (secs, stamp) = rfc3164_now();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = address.trim_start_matches("udp://");
    client.send_to(rfc5424("udp 5424").as_bytes(), to).unwrap();
    client
        .send_to(rfc3164(&stamp, "udp 3164").as_bytes(), to)
        .unwrap();
    let two = format!(
        "{}\n{}\n",
        rfc3164(&stamp, "udp line one"),
        rfc5424("udp line two")
    );
    client.send_to(two.as_bytes(), to).unwrap();
    assert_rfc5424(&wait_content(&daemon, "udp 5424"), "127.0.0.1");
    assert_rfc3164(&wait_content(&daemon, "udp 3164"), secs, "127.0.0.1");
    assert_rfc3164(&wait_content(&daemon, "udp line one"), secs, "127.0.0.1");
    assert_rfc5424(&wait_content(&daemon, "udp line two"), "127.0.0.1");
}

#[test]
fn many_tcp_connections_at_once_deliver_every_message_exactly_once() {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 200;
    let sandbox = Sandbox::new();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let mut daemon = start(&sandbox, &address, "    ParseProtocol: rfc5424\n");
    let addr = address.trim_start_matches("tcp://").to_owned();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                let mut bytes = Vec::new();
                for seq in 0..MESSAGES {
                    let message = format!("<14>1 - host app - - - c{client}-s{seq}");
                    // Half the clients count octets, half end lines.
                    if client % 2 == 0 {
                        bytes.extend_from_slice(octet_counted(&message).as_bytes());
                    } else {
                        bytes.extend_from_slice(message.as_bytes());
                        bytes.push(b'\n');
                    }
                    // Several writes per connection, split mid-message.
                    if bytes.len() > 1500 {
                        stream.write_all(&bytes[..1000]).unwrap();
                        bytes.drain(..1000);
                    }
                }
                stream.write_all(&bytes).unwrap();
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    daemon.wait_lines(CLIENTS * MESSAGES, "every message", |l| {
        l.get("_content_").is_some_and(|c| c.starts_with('c'))
    });
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in daemon.lines() {
        if let Some(content) = line.get("_content_") {
            *seen.entry(content.to_owned()).or_default() += 1;
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(seen.len(), CLIENTS * MESSAGES, "unique messages");
    for client in 0..CLIENTS {
        for seq in 0..MESSAGES {
            assert!(seen.contains_key(&format!("c{client}-s{seq}")));
        }
    }
}

/// A test CA, and a certificate for `names` signed by it: (cert PEM, key PEM).
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tailrace test CA");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client trusting `ca`, with a client certificate when given.
fn tls_client(ca: &str, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Sends `data` over TLS and waits (1 s at most) for the server to answer or close: Ok(())
/// when the connection stayed up (a syslog server never answers), Err when TLS failed.
fn send_tls(addr: &str, config: Arc<rustls::ClientConfig>, data: &str) -> Result<(), String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(data.as_bytes())
        .and_then(|_| tls.flush())
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    match tls.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(0) => Err("closed by the server".into()),
        Ok(n) => Err(format!("the server answered {n} bytes")),
    }
}

#[test]
fn tls_with_client_certificates_refuses_the_wrong_ca_and_no_certificate() {
    let sandbox = Sandbox::new();
    let ca = Ca::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let client_identity = ca.issue(&["client"]);
    let other_ca = Ca::new();
    let stranger_identity = other_ca.issue(&["client"]);
    for (file, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", cert),
        ("server.key", key),
    ] {
        std::fs::write(sandbox.path(file), text).unwrap();
    }
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let options = format!(
        "    ParseProtocol: rfc5424\n    TLS:\n      Enabled: true\n      CertFile: {}\n      KeyFile: {}\n      CAFile: {}\n",
        sandbox.path("server.pem").display(),
        sandbox.path("server.key").display(),
        sandbox.path("ca.pem").display(),
    );
    let daemon = start(&sandbox, &address, &options);
    let addr = address.trim_start_matches("tcp://");

    // A client that trusts another CA refuses the server's certificate.
    let wrong_ca = tls_client(&other_ca.pem(), Some(&client_identity));
    let e = send_tls(addr, wrong_ca, &octet_counted(&rfc5424("wrong CA"))).unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
    // The server refuses a client without a certificate, or with one of another CA.
    let anonymous = tls_client(&ca.pem(), None);
    let e = send_tls(addr, anonymous, &format!("{}\n", rfc5424("no client cert"))).unwrap_err();
    assert!(!e.is_empty());
    let stranger = tls_client(&ca.pem(), Some(&stranger_identity));
    let e = send_tls(addr, stranger, &format!("{}\n", rfc5424("stranger cert"))).unwrap_err();
    assert!(!e.is_empty());
    // The right client is heard, in both framings.
    let good = tls_client(&ca.pem(), Some(&client_identity));
    let data = format!(
        "{}{}\n",
        octet_counted(&rfc5424("over TLS octet")),
        rfc5424("over TLS newline")
    );
    send_tls(addr, good, &data).unwrap();
    assert_rfc5424(&wait_content(&daemon, "over TLS octet"), "127.0.0.1");
    assert_rfc5424(&wait_content(&daemon, "over TLS newline"), "127.0.0.1");
    for refused in ["wrong CA", "no client cert", "stranger cert"] {
        assert!(
            daemon
                .lines()
                .iter()
                .all(|l| l.get("_content_") != Some(refused)),
            "{refused} was received"
        );
    }
    daemon.wait_stderr("the refused handshakes", |l| {
        l.contains("TLS handshake with 127.0.0.1")
    });
}

#[test]
fn a_bad_address_or_certificate_file_is_an_error_naming_the_field() {
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.write_config(
        "bad_address.yaml",
        "inputs:\n  - Type: service_syslog\n    Address: tcp//127.0.0.1:1514\n\
         flushers:\n  - Type: flusher_stdout\n",
    );
    sandbox.write_config(
        "bad_cert.yaml",
        &format!(
            "inputs:\n  - Type: service_syslog\n    Address: tcp://127.0.0.1:{port}\n\
             \x20   TLS: {{Enabled: true, CertFile: /no/such/server.pem, KeyFile: /no/such/server.key}}\n\
             flushers:\n  - Type: flusher_stdout\n"
        ),
    );
    let daemon = Daemon::start(&sandbox, Some(&common::release_plugin_libs()), &[]);
    let line = daemon.wait_stderr("the Address error", |l| {
        l.contains("bad_address") && l.contains("Address:")
    });
    assert!(
        line.contains("Address: \\\"tcp//127.0.0.1:1514\\\" has no protocol")
            || line.contains("Address: \"tcp//127.0.0.1:1514\" has no protocol"),
        "{line}"
    );
    let line = daemon.wait_stderr("the certificate error", |l| {
        l.contains("bad_cert") && l.contains("TLS.CertFile")
    });
    assert!(line.contains("/no/such/server.pem"), "{line}");
    // Neither listens: nothing is bound on the port of the one with a good address.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn an_edited_config_listens_again_on_the_same_port_with_its_new_options() {
    let sandbox = Sandbox::new();
    let address = format!("tcp://127.0.0.1:{}", free_port());
    let daemon = start(&sandbox, &address, "    ParseProtocol: rfc5424\n");
    let addr = address.trim_start_matches("tcp://");
    let message = |content: &str| format!("<14>1 - h app - - - {content}\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(message("before").as_bytes()).unwrap();
    assert_eq!(
        wait_content(&daemon, "before").get("_program_"),
        Some("app")
    );

    // No parsing from now on: the new instance binds the port the old one let go of.
    sandbox.write_config(
        "syslog.yaml",
        &format!(
            "global: {{AggregatIntervalMs: 100, FlushIntervalMs: 100}}\n\
             inputs:\n  - Type: service_syslog\n    Address: {address}\n\
             flushers:\n  - Type: flusher_stdout\n    OnlyStdout: true\n"
        ),
    );
    let listening = format!("listening on {address}");
    let deadline = std::time::Instant::now() + common::WAIT;
    while daemon
        .stderr_lines()
        .iter()
        .filter(|l| l.contains(&listening))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the edited pipeline does not listen\n{}",
            daemon.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(message("after").as_bytes()).unwrap();
    let raw = wait_content(&daemon, message("after").trim_end());
    assert_eq!(raw.get("_program_"), Some(""), "{}", raw.text);
    assert_eq!(raw.get("_priority_"), Some("-1"), "{}", raw.text);
}
