//! `flusher_kafka_v2` against a real Kafka-compatible broker: Tansu, started by each test on a
//! free port of 127.0.0.1 with in-memory storage, and killed at its end. The real daemon runs
//! `metric_mock` inputs into the flusher in the plugin base; the test reads every message back
//! with a consumer assigned to explicit partitions, and checks where each one went, in what
//! order, and that none is missing or doubled (metric_mock's `Index` counts 1, 2, 3, ...).
//!
//! The broker is `target/tools/tansu/bin/tansu` (`.ci/run` installs it there) or `$TANSU`.
//!
//! Tansu can neither serve TLS nor let a SASL login succeed, so the TLS and SASL tests put a
//! [`KafkaFront`] (`common/kafka_front.rs`) between the daemon and a plain Tansu: a proxy that
//! terminates TLS and answers the SASL login itself, and forwards every other request. The
//! client side — librdkafka's TLS and SASL, and our options turned into its settings — is real.

mod common;
#[path = "common/kafka_front.rs"]
mod kafka_front;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Daemon, Sandbox};
use kafka_front::{KafkaFront, User};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

/// The broker binary: `$TANSU`, or where `.ci/run` installs it.
fn tansu_bin() -> PathBuf {
    let path = std::env::var_os("TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/tansu/bin/tansu")
        });
    assert!(
        path.is_file(),
        "the Kafka-compatible broker Tansu is not at {}: run .ci/run (it installs it there) or \
         set TANSU to a tansu binary",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker, killed when dropped.
struct Broker {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker with extra arguments (`--authentication`); waits until it
    /// accepts connections.
    fn start(dir: &Path, extra: &[&str]) -> Broker {
        Broker::start_advertising(dir, None, extra)
    }

    /// [`Broker::start`], telling clients to connect to `advertised` (a [`KafkaFront`]) rather
    /// than to the broker's own address.
    fn start_advertising(dir: &Path, advertised: Option<&str>, extra: &[&str]) -> Broker {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let advertised = format!("tcp://{}", advertised.unwrap_or(&addr));
        let log = dir.join(format!("tansu-{port}.out"));
        let child = Command::new(tansu_bin())
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("tansu-{port}.err"))).unwrap())
            .spawn()
            .expect("start tansu");
        let broker = Broker { child, addr, log };
        let deadline = Instant::now() + common::WAIT;
        while std::net::TcpStream::connect(&broker.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within {:?}: {}",
                broker.addr,
                common::WAIT,
                std::fs::read_to_string(&broker.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} tansu failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client settings of the tests' own admin client and consumer.
fn client(addr: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

impl Broker {
    /// What the broker printed (for failure messages).
    fn output(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "--- tansu stdout ---\n{}\n--- tansu stderr ---\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

/// Creates topics of `partitions` partitions (CreateTopics through rdkafka's AdminClient).
fn create_topics(broker: &Broker, config: &ClientConfig, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = rt
        .block_on(admin.create_topics(&topics, &options))
        .unwrap_or_else(|e| panic!("CreateTopics: {e}\n{}", broker.output()));
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("create topic {topic}: {e}"));
    }
}

/// One message read back.
#[derive(Debug, Clone)]
struct Received {
    partition: i32,
    offset: i64,
    key: Option<String>,
    body: Value,
}

impl Received {
    fn content(&self, key: &str) -> &str {
        self.body["contents"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no contents.{key} in {}", self.body))
    }

    fn index(&self) -> u64 {
        self.content("Index").parse().unwrap()
    }
}

/// Every message of `topic` (all its partitions, from the start), read until `done` says the
/// set is complete or the deadline passes (then returns what it has).
/// Reads `topic` (3 partitions) until it holds at least `n` messages, failing with the
/// daemon's diagnostics when it does not within `common::WAIT`.
fn consume_at_least(cc: &ClientConfig, topic: &str, n: usize, daemon: &Daemon) -> Vec<Received> {
    let got = consume(cc, topic, 3, common::WAIT, |g| g.len() >= n);
    assert!(
        got.len() >= n,
        "{topic}: {} of {n} messages\n{}",
        got.len(),
        daemon.diagnostics()
    );
    got
}

fn consume(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    limit: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "tailrace-kafka-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !done(&got) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                body: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_else(|e| {
                    panic!(
                        "not JSON ({e}): {:?}",
                        String::from_utf8_lossy(m.payload().unwrap_or_default())
                    )
                }),
            }),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    got.sort_by_key(|r| (r.partition, r.offset));
    got
}

/// The messages of each value of `contents.<field>`, in partition order.
fn by_content<'a>(got: &'a [Received], field: &str) -> BTreeMap<String, Vec<&'a Received>> {
    let mut out: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in got {
        out.entry(r.content(field).to_owned()).or_default().push(r);
    }
    out
}

/// Indexes 1..=n, each once: nothing lost, nothing doubled.
fn assert_exactly_once(what: &str, indexes: impl IntoIterator<Item = u64>) -> u64 {
    let mut seen = BTreeSet::new();
    let mut n = 0;
    for i in indexes {
        assert!(seen.insert(i), "{what}: Index {i} arrived twice");
        n = n.max(i);
    }
    let missing: Vec<u64> = (1..=n).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{what}: Index lost: {missing:?} (of 1..={n})"
    );
    n
}

const FAST: &str = "global: {InputIntervalMs: 20, AggregatIntervalMs: 50, FlushIntervalMs: 50}\n";

/// A metric_mock input whose events carry `fields`.
fn mock(fields: &str) -> String {
    format!("  - Type: metric_mock\n    Fields: {{{fields}}}\n")
}

fn start_daemon(sandbox: &Sandbox) -> Daemon {
    Daemon::start(sandbox, Some(&common::release_plugin_libs()), &[])
}

/// Waits until the daemon logged a line containing every one of `needles`.
fn wait_log(daemon: &Daemon, what: &str, needles: &[&str]) -> String {
    daemon.wait_stderr(what, |l| needles.iter().all(|n| l.contains(n)))
}

#[test]
fn hash_keys_put_each_files_events_on_one_partition_in_order() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    create_topics(&broker, &cc, &["logs"], 3);
    let files = [
        "/var/log/a.log",
        "/var/log/b.log",
        "/var/log/c.log",
        "/var/log/d.log",
    ];
    let inputs: String = files
        .iter()
        .map(|f| mock(&format!("path: '{f}'")))
        .collect();
    sandbox.write_config(
        "kafka.yaml",
        &format!(
            "{FAST}inputs:\n{inputs}flushers:\n  - Type: flusher_kafka_v2\n    Brokers: ['{}']\n    \
             Topic: logs\n    PartitionerType: hash\n    HashKeys: [content.path]\n    RequiredAcks: -1\n",
            broker.addr
        ),
    );
    let mut daemon = start_daemon(&sandbox);
    let enough = |got: &[Received]| {
        let per = by_content(got, "path");
        files
            .iter()
            .all(|f| per.get(*f).is_some_and(|v| v.len() >= 20))
    };
    let got = consume(&cc, "logs", 3, common::WAIT, enough);
    assert!(
        enough(&got),
        "not 20 events of each file within {:?}: {} messages\n{}",
        common::WAIT,
        got.len(),
        daemon.diagnostics()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    // Everything the daemon delivered before it stopped, read again from the start.
    let all = consume(&cc, "logs", 3, Duration::from_secs(3), |_| false);
    let mut partitions_used = BTreeSet::new();
    for (path, messages) in by_content(&all, "path") {
        let partitions: BTreeSet<i32> = messages.iter().map(|r| r.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "{path} spread over partitions {partitions:?}"
        );
        partitions_used.extend(partitions);
        let indexes: Vec<u64> = messages.iter().map(|r| r.index()).collect();
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "{path}: out of order in its partition: {indexes:?}"
        );
        let n = assert_exactly_once(&path, indexes);
        assert!(n >= 20, "{path}: {n}");
        // The message key is the HashKeys value: what Kafka's hash partitioning is by.
        assert!(messages
            .iter()
            .all(|r| r.key.as_deref() == Some(path.as_str())));
    }
    assert!(
        partitions_used.len() >= 2,
        "four keys all hashed to one partition: {partitions_used:?}"
    );
    // iLogtail's custom_single layout.
    let first = &all[0].body;
    assert!(first["time"].is_u64(), "{first}");
    assert!(first["tags"].is_object(), "{first}");
    assert_eq!(first.as_object().unwrap().len(), 3, "{first}");
}

#[test]
fn dynamic_topics_and_round_robin_over_three_partitions() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    create_topics(&broker, &cc, &["app_web", "app_db"], 3);
    sandbox.write_config(
        "kafka.yaml",
        &format!(
            "{FAST}inputs:\n{}{}flushers:\n  - Type: flusher_kafka_v2\n    Brokers: ['{}']\n    \
             Topic: 'app_%{{content.app}}'\n    PartitionerType: roundrobin\n",
            mock("app: web"),
            mock("app: db"),
            broker.addr
        ),
    );
    let mut daemon = start_daemon(&sandbox);
    for app in ["web", "db"] {
        let topic = format!("app_{app}");
        let got = consume(&cc, &topic, 3, common::WAIT, |g| g.len() >= 30);
        assert!(
            got.len() >= 30,
            "{topic}: {} messages within {:?}\n{}",
            got.len(),
            common::WAIT,
            daemon.diagnostics()
        );
        for r in &got {
            assert_eq!(r.content("app"), app, "in {topic}: {}", r.body);
        }
    }
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    for app in ["web", "db"] {
        let topic = format!("app_{app}");
        let all = consume(&cc, &topic, 3, Duration::from_secs(3), |_| false);
        assert_exactly_once(&topic, all.iter().map(Received::index));
        // Round robin: message i goes to partition i mod 3, so the three partitions have as
        // many messages, give or take one.
        let counts: Vec<usize> = (0..3)
            .map(|p| all.iter().filter(|r| r.partition == p).count())
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *min > 0 && max - min <= 1,
            "{topic}: uneven round robin {counts:?}"
        );
    }
}

#[test]
fn every_codec_delivers() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    let topics: Vec<String> = codecs.iter().map(|c| format!("codec_{c}")).collect();
    create_topics(
        &broker,
        &cc,
        &topics.iter().map(String::as_str).collect::<Vec<_>>(),
        3,
    );
    for codec in codecs {
        sandbox.write_config(
            &format!("{codec}.yaml"),
            &format!(
                "{FAST}inputs:\n{}flushers:\n  - Type: flusher_kafka_v2\n    Brokers: ['{}']\n    \
                 Topic: codec_{codec}\n    Compression: {codec}\n    BulkFlushFrequency: 20\n",
                mock(&format!(
                    "codec: {codec}, text: '{}'",
                    "compressible ".repeat(20)
                )),
                broker.addr
            ),
        );
    }
    let daemon = start_daemon(&sandbox);
    for codec in codecs {
        let topic = format!("codec_{codec}");
        let got = consume(&cc, &topic, 3, common::WAIT, |g| g.len() >= 10);
        assert!(
            got.len() >= 10,
            "{topic}: {} messages within {:?}\n{}",
            got.len(),
            common::WAIT,
            daemon.diagnostics()
        );
        for r in &got {
            assert_eq!(r.content("codec"), codec);
            assert_eq!(r.content("text"), "compressible ".repeat(20));
        }
    }
}

#[test]
fn the_broker_stopped_for_30_seconds_loses_nothing() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    create_topics(&broker, &cc, &["pause"], 3);
    sandbox.write_config(
        "kafka.yaml",
        &format!(
            "{FAST}inputs:\n{}flushers:\n  - Type: flusher_kafka_v2\n    Brokers: ['{}']\n    \
             Topic: pause\n    PartitionerType: hash\n    HashKeys: [content.path]\n    \
             RequiredAcks: -1\n    Timeout: 60\n",
            mock("path: /var/log/p.log"),
            broker.addr
        ),
    );
    let mut daemon = start_daemon(&sandbox);
    let before = consume(&cc, "pause", 3, common::WAIT, |g| g.len() >= 10);
    assert!(before.len() >= 10, "{}", daemon.diagnostics());
    // Frozen for 30 s, as the issue asks (within the flusher's Timeout: the producer waits
    // rather than giving the messages up).
    broker.signal("STOP");
    std::thread::sleep(Duration::from_secs(30));
    broker.signal("CONT");
    // Events made while the broker was stopped arrive after it resumed.
    let n_before = before.iter().map(Received::index).max().unwrap();
    let target = n_before + 150 + 50;
    let got = consume(&cc, "pause", 3, Duration::from_secs(20), |g| {
        g.iter().any(|r| r.index() >= target)
    });
    assert!(
        got.iter().any(|r| r.index() >= target),
        "no Index {target} after the broker resumed: last {:?}\n{}",
        got.iter().map(Received::index).max(),
        daemon.diagnostics()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    let all = consume(&cc, "pause", 3, Duration::from_secs(3), |_| false);
    let indexes: Vec<u64> = all.iter().map(Received::index).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_exactly_once("pause", indexes);
}

/// A pipeline of one metric_mock (`Fields: {who: <name>}`) into `topic`, with extra flusher
/// options (indented by four spaces).
fn secured_pipeline(addr: &str, name: &str, topic: &str, options: &str) -> String {
    format!(
        "{FAST}inputs:\n{}flushers:\n  - Type: flusher_kafka_v2\n    Brokers: ['{addr}']\n    \
         Topic: {topic}\n    Timeout: 3\n{options}",
        mock(&format!("who: {name}"))
    )
}

/// Tansu's own SASL: with `--authentication` it asks every client to log in, and offers
/// SCRAM-SHA-256/512 only (a PLAIN login fails with `NoSharedMechanism` in its log); its SCRAM
/// users live in its storage, which an in-memory broker that requires a login cannot be given
/// (`tansu user create` must log in itself: `NotAuthenticated`). So no login can succeed against
/// Tansu itself — the logins that succeed are tested through the [`KafkaFront`] (the `sasl_*`
/// tests below). What is tested here, against a real broker's refusal: a pipeline without a
/// login, one with a SCRAM login of an unknown user and one with a PLAIN login the broker does
/// not offer are each refused, with an alarm that says why, and keep their data.
#[test]
fn refused_sasl_logins_alarm_and_keep_the_data() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &["--authentication"]);
    sandbox.write_config(
        "nologin.yaml",
        &secured_pipeline(&broker.addr, "nologin", "t", ""),
    );
    sandbox.write_config(
        "scram.yaml",
        &secured_pipeline(
            &broker.addr,
            "scram",
            "t",
            "    Authentication:\n      SASL: {SaslMechanism: SCRAM-SHA-512, Username: mallory, \
             Password: guess}\n",
        ),
    );
    sandbox.write_config(
        "plain.yaml",
        &secured_pipeline(
            &broker.addr,
            "plain",
            "t",
            "    Authentication:\n      PlainText: {Username: alice, Password: alice-secret}\n",
        ),
    );
    let daemon = start_daemon(&sandbox);
    for config in ["nologin", "scram", "plain"] {
        let alarm = wait_log(
            &daemon,
            &format!("the alarm of {config}"),
            &[
                "FLUSH_DATA_ALARM",
                &format!("config={config}"),
                "kept for retry",
            ],
        );
        if config != "nologin" {
            assert!(
                alarm.contains("SASL") || alarm.contains("uthentication"),
                "{config}: the alarm must say the login failed: {alarm}\n{}",
                broker.output()
            );
        }
    }
    // The broker saw the logins and refused them.
    let log = broker.output();
    assert!(log.contains("NotAuthenticated"), "{log}");
}

/// A CA made by the test: its certificate is `<name>.pem` in the sandbox.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        Ca { issuer, pem }
    }

    /// A certificate for `names` signed by this CA, written as `<file>.pem` and `<file>.key`;
    /// returns the paths and the DER forms.
    fn leaf(&self, dir: &Path, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}.key")),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A TLS server for 127.0.0.1 with a certificate of this CA; with `client_certs`, it asks
    /// for a client certificate signed by this CA and refuses a client without one.
    fn server(&self, dir: &Path, client_certs: bool) -> Arc<rustls::ServerConfig> {
        let leaf = self.leaf(dir, "server", &["127.0.0.1", "localhost"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_certs {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.issuer.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![leaf.der],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key_der.into()),
            )
            .unwrap();
        Arc::new(config)
    }
}

struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// Tansu 0.6.0 cannot serve TLS: its CLI puts `--cert` and `--key` in one exclusive group
/// ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'") though it needs both, and
/// its listener never uses the TLS acceptor it builds. TLS sessions that complete are tested
/// through the [`KafkaFront`] (`tls_with_the_tests_ca_…` and `sasl_ssl_…` below).
/// What is tested here: a flusher with TLS enabled never falls back to plain text — its handshake
/// with the plain broker fails and the batch is refused with an alarm — while a plain one
/// delivers; and a CA file that holds no certificate stops the pipeline from loading, with an
/// error naming the option.
#[test]
fn tls_never_falls_back_to_plain_text_and_a_bad_ca_file_is_a_start_error() {
    let sandbox = Sandbox::new();
    let ca = Ca::new(&sandbox.path(""), "ca").pem;
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    create_topics(&broker, &cc, &["tls_on", "tls_off"], 3);
    sandbox.write_config(
        "tls.yaml",
        &secured_pipeline(
            &broker.addr,
            "tls",
            "tls_on",
            &format!(
                "    Authentication:\n      TLS: {{Enabled: true, CAFile: '{}'}}\n",
                ca.display()
            ),
        ),
    );
    sandbox.write_config(
        "plain.yaml",
        &secured_pipeline(&broker.addr, "plain", "tls_off", ""),
    );
    let bad_ca = sandbox.path("not-a-ca.pem");
    std::fs::write(&bad_ca, "this is no certificate\n").unwrap();
    sandbox.write_config(
        "badca.yaml",
        &secured_pipeline(
            &broker.addr,
            "badca",
            "tls_off",
            &format!(
                "    Authentication:\n      TLS: {{Enabled: true, CAFile: '{}'}}\n",
                bad_ca.display()
            ),
        ),
    );
    let daemon = start_daemon(&sandbox);
    let got = consume_at_least(&cc, "tls_off", 5, &daemon);
    assert!(
        got.iter().all(|r| r.content("who") == "plain"),
        "the pipeline with the bad CA file must not run"
    );
    let alarm = wait_log(
        &daemon,
        "the TLS pipeline's alarm",
        &["FLUSH_DATA_ALARM", "config=tls", "SSL"],
    );
    assert!(
        alarm.contains("SSL"),
        "the alarm must say TLS failed: {alarm}\n{}",
        daemon.diagnostics()
    );
    wait_log(
        &daemon,
        "the bad CA file's error",
        &[
            "badca",
            "Authentication.TLS.CAFile",
            "holds no PEM CERTIFICATE",
        ],
    );
    let got = consume(&cc, "tls_on", 3, Duration::from_secs(2), |g| !g.is_empty());
    assert!(got.is_empty(), "TLS fell back to plain text: {got:?}");
}

/// Files read by the host's input_file, delivered by flusher_kafka_v2 in the plugin base with
/// `HashKeys: [tag.__path__]`: each file's lines reach one partition, in the order they were
/// written, each once, and name their file in `tags."log.file.path"`.
#[test]
fn a_files_lines_reach_one_partition_in_the_order_written() {
    let sandbox = Sandbox::new();
    let broker = Broker::start(&sandbox.path(""), &[]);
    let cc = client(&broker.addr, &[]);
    create_topics(&broker, &cc, &["files"], 3);
    let logs = sandbox.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let names = ["a", "b", "c", "d"];
    const LINES: usize = 300;
    for name in names {
        let text: String = (1..=LINES).map(|i| format!("{name} {i}\n")).collect();
        std::fs::write(logs.join(format!("{name}.log")), text).unwrap();
    }
    sandbox.write_config(
        "files.yaml",
        &format!(
            "inputs:\n  - Type: input_file\n    FilePaths: ['{}/*.log']\nflushers:\n  \
             - Type: flusher_kafka_v2\n    Brokers: ['{}']\n    Topic: files\n    \
             PartitionerType: hash\n    HashKeys: [tag.__path__]\n    RequiredAcks: -1\n",
            logs.display(),
            broker.addr
        ),
    );
    let daemon = start_daemon(&sandbox);
    let total = names.len() * LINES;
    let all = consume(&cc, "files", 3, common::WAIT, |g| g.len() >= total);
    assert_eq!(all.len(), total, "{}", daemon.diagnostics());
    let mut per_file: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &all {
        let path = r.body["tags"]["log.file.path"]
            .as_str()
            .unwrap_or_else(|| panic!("no tags.\"log.file.path\" in {}", r.body))
            .to_owned();
        per_file.entry(path).or_default().push(r);
    }
    assert_eq!(per_file.len(), names.len(), "{:?}", per_file.keys());
    for (path, messages) in per_file {
        let partitions: BTreeSet<i32> = messages.iter().map(|r| r.partition).collect();
        assert_eq!(partitions.len(), 1, "{path} spread over {partitions:?}");
        let name = Path::new(&path).file_stem().unwrap().to_str().unwrap();
        let lines: Vec<String> = messages
            .iter()
            .map(|r| r.content("content").to_owned())
            .collect();
        let expected: Vec<String> = (1..=LINES).map(|i| format!("{name} {i}")).collect();
        assert_eq!(lines, expected, "{path}: lost, doubled or out of order");
    }
}

/// A plain Tansu behind a [`KafkaFront`] that serves TLS (`tls`) and/or asks for a SASL login
/// of `user`: Tansu advertises the front, so every connection of every client goes through it.
fn behind_front(
    sandbox: &Sandbox,
    tls: Option<Arc<rustls::ServerConfig>>,
    user: Option<User>,
) -> (KafkaFront, Broker) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = listener.local_addr().unwrap().to_string();
    let broker = Broker::start_advertising(&sandbox.path(""), Some(&front_addr), &[]);
    let front = KafkaFront::start(listener, &broker.addr, tls, user);
    (front, broker)
}

fn alice() -> User {
    User {
        name: "alice".into(),
        password: "alice-secret".into(),
    }
}

/// The flusher's `client.id` (its `ClientID` default), by which the front tells its logins from
/// the test's own clients (`rdkafka`).
const FLUSHER: &str = "LogtailPlugin";

/// The SASL options of a flusher, as iLogtail writes them.
fn sasl_options(mechanism: &str, password: &str) -> String {
    format!(
        "    Authentication:\n      SASL: {{SaslMechanism: {mechanism}, Username: alice, \
         Password: {password}}}\n"
    )
}

/// SASL_PLAINTEXT with PLAIN, through the front: the right password logs in and delivers every
/// event once; a wrong one is refused (error 58, an alarm naming SASL) and its events are kept,
/// then delivered once the config has the right password — from Index 1, none lost or doubled.
#[test]
fn sasl_plain_logs_in_and_a_wrong_password_keeps_the_data_until_fixed() {
    let sandbox = Sandbox::new();
    let (front, broker) = behind_front(&sandbox, None, Some(alice()));
    let cc = client(
        &front.addr,
        &[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    );
    create_topics(&broker, &cc, &["plain_right", "plain_wrong"], 3);
    let plain = |password: &str| {
        format!("    Authentication:\n      PlainText: {{Username: alice, Password: {password}}}\n")
    };
    sandbox.write_config(
        "right.yaml",
        &secured_pipeline(&front.addr, "right", "plain_right", &plain("alice-secret")),
    );
    sandbox.write_config(
        "wrong.yaml",
        &secured_pipeline(&front.addr, "wrong", "plain_wrong", &plain("guess")),
    );
    let mut daemon = start_daemon(&sandbox);
    consume_at_least(&cc, "plain_right", 10, &daemon);
    let alarm = wait_log(
        &daemon,
        "the wrong password's alarm",
        &["FLUSH_DATA_ALARM", "config=wrong", "kept for retry", "SASL"],
    );
    assert!(
        alarm.contains("Invalid username or password"),
        "the alarm must carry the broker's reason: {alarm}"
    );
    assert!(
        front.saw_login(FLUSHER, "PLAIN", true),
        "{:?}",
        front.seen()
    );
    assert!(
        front.saw_login(FLUSHER, "PLAIN", false),
        "{:?}",
        front.seen()
    );
    let early = consume(&cc, "plain_wrong", 3, Duration::from_millis(500), |g| {
        !g.is_empty()
    });
    assert!(
        early.is_empty(),
        "delivered with a wrong password: {early:?}"
    );
    // The password fixed: what was kept is delivered, and what follows.
    sandbox.write_config(
        "wrong.yaml",
        &secured_pipeline(&front.addr, "wrong", "plain_wrong", &plain("alice-secret")),
    );
    let got = consume(&cc, "plain_wrong", 3, common::WAIT, |g| {
        g.iter().any(|r| r.index() == 1) && g.len() >= 20
    });
    assert!(
        got.iter().any(|r| r.index() == 1) && got.len() >= 20,
        "after the fix: {} messages, Index 1 {}\n{}",
        got.len(),
        if got.iter().any(|r| r.index() == 1) {
            "delivered"
        } else {
            "missing"
        },
        daemon.diagnostics()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    for topic in ["plain_right", "plain_wrong"] {
        let all = consume(&cc, topic, 3, Duration::from_secs(3), |_| false);
        assert_exactly_once(topic, all.iter().map(Received::index));
    }
}

/// SASL_PLAINTEXT with SCRAM-SHA-512 and SCRAM-SHA-256 through the front (RFC 5802: librdkafka
/// proves the password without sending it, and checks the front's ServerSignature): the right
/// password delivers every event once with either hash; a wrong one is refused with an alarm
/// naming SASL and the mechanism, and so is a pipeline without a login; nothing of either
/// reaches the topic.
#[test]
fn sasl_scram_logs_in_with_either_hash_and_a_wrong_password_is_refused() {
    let sandbox = Sandbox::new();
    let (front, broker) = behind_front(&sandbox, None, Some(alice()));
    let cc = client(
        &front.addr,
        &[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    );
    let topics = ["scram_512", "scram_256", "scram_wrong"];
    create_topics(&broker, &cc, &topics, 3);
    for (name, topic, mechanism, password) in [
        ("s512", "scram_512", "SCRAM-SHA-512", "alice-secret"),
        ("s256", "scram_256", "SCRAM-SHA-256", "alice-secret"),
        ("wrong", "scram_wrong", "SCRAM-SHA-512", "guess"),
    ] {
        sandbox.write_config(
            &format!("{name}.yaml"),
            &secured_pipeline(&front.addr, name, topic, &sasl_options(mechanism, password)),
        );
    }
    sandbox.write_config(
        "nologin.yaml",
        &secured_pipeline(&front.addr, "nologin", "scram_wrong", ""),
    );
    let mut daemon = start_daemon(&sandbox);
    for topic in ["scram_512", "scram_256"] {
        consume_at_least(&cc, topic, 10, &daemon);
    }
    let alarm = wait_log(
        &daemon,
        "the wrong password's alarm",
        &["FLUSH_DATA_ALARM", "config=wrong", "kept for retry", "SASL"],
    );
    assert!(
        alarm.contains("SCRAM-SHA-512"),
        "the alarm must name the mechanism: {alarm}"
    );
    // No login at all: the front closes the connection at the first request past ApiVersions.
    wait_log(
        &daemon,
        "the alarm of the pipeline without a login",
        &["FLUSH_DATA_ALARM", "config=nologin", "kept for retry"],
    );
    assert!(
        front.seen().iter().any(|s| matches!(s,
            kafka_front::Seen::Unauthenticated { client_id, .. } if client_id == FLUSHER)),
        "{:?}",
        front.seen()
    );
    assert!(
        front.saw_login(FLUSHER, "SCRAM-SHA-512", true),
        "{:?}",
        front.seen()
    );
    assert!(
        front.saw_login(FLUSHER, "SCRAM-SHA-256", true),
        "{:?}",
        front.seen()
    );
    assert!(
        front.saw_login(FLUSHER, "SCRAM-SHA-512", false),
        "{:?}",
        front.seen()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    for topic in ["scram_512", "scram_256"] {
        let all = consume(&cc, topic, 3, Duration::from_secs(3), |_| false);
        assert!(all.iter().all(|r| r.index() > 0));
        assert_exactly_once(topic, all.iter().map(Received::index));
    }
    let wrong = consume(&cc, "scram_wrong", 3, Duration::from_millis(500), |g| {
        !g.is_empty()
    });
    assert!(
        wrong.is_empty(),
        "delivered with a wrong password: {wrong:?}"
    );
}

/// TLS through the front, which asks for a client certificate of the test's CA: a flusher
/// with that CA (`CAFile`) and a client certificate (`CertFile`, `KeyFile`) delivers every event
/// once; one that trusts another CA refuses the front's certificate (OpenSSL's "unknown CA"
/// alert reaches the front), and one without a client certificate is refused by the front —
/// each with an alarm, and neither falls back to plain text.
#[test]
fn tls_with_the_tests_ca_delivers_and_a_wrong_ca_or_no_client_certificate_is_refused() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("");
    let ca = Ca::new(&dir, "ca");
    let other = Ca::new(&dir, "other-ca");
    let client_cert = ca.leaf(&dir, "client", &["tailrace"]);
    let (front, broker) = behind_front(&sandbox, Some(ca.server(&dir, true)), None);
    let cert = client_cert.cert.display().to_string();
    let key = client_cert.key.display().to_string();
    let cc = client(
        &front.addr,
        &[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", ca.pem.to_str().unwrap()),
            ("ssl.certificate.location", &cert),
            ("ssl.key.location", &key),
        ],
    );
    create_topics(&broker, &cc, &["tls_ok", "tls_wrong_ca", "tls_no_cert"], 3);
    let tls = |ca: &Path, with_cert: bool| {
        let cert = if with_cert {
            format!(", CertFile: '{cert}', KeyFile: '{key}'")
        } else {
            String::new()
        };
        format!(
            "    Authentication:\n      TLS: {{Enabled: true, CAFile: '{}'{cert}}}\n",
            ca.display()
        )
    };
    for (name, topic, options) in [
        ("ok", "tls_ok", tls(&ca.pem, true)),
        ("wrongca", "tls_wrong_ca", tls(&other.pem, true)),
        ("nocert", "tls_no_cert", tls(&ca.pem, false)),
    ] {
        sandbox.write_config(
            &format!("{name}.yaml"),
            &secured_pipeline(&front.addr, name, topic, &options),
        );
    }
    let mut daemon = start_daemon(&sandbox);
    consume_at_least(&cc, "tls_ok", 10, &daemon);
    for config in ["wrongca", "nocert"] {
        wait_log(
            &daemon,
            &format!("the alarm of {config}"),
            &[
                "FLUSH_DATA_ALARM",
                &format!("config={config}"),
                "kept for retry",
                "SSL",
            ],
        );
    }
    let seen = front.seen();
    let failed = |needle: &str| {
        seen.iter()
            .any(|s| matches!(s, kafka_front::Seen::TlsFailed(e) if e.contains(needle)))
    };
    assert!(
        failed("UnknownCA"),
        "no 'unknown CA' alert from the client: {seen:?}"
    );
    assert!(
        failed("no certificates"),
        "no refused client without a certificate: {seen:?}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    let all = consume(&cc, "tls_ok", 3, Duration::from_secs(3), |_| false);
    assert_exactly_once("tls_ok", all.iter().map(Received::index));
    for topic in ["tls_wrong_ca", "tls_no_cert"] {
        let got = consume(&cc, topic, 3, Duration::from_millis(500), |g| !g.is_empty());
        assert!(got.is_empty(), "{topic}: delivered: {got:?}");
    }
}

/// SASL_SSL: TLS with the test's CA, then a SCRAM-SHA-512 login inside it, through the front:
/// every event delivered once.
#[test]
fn sasl_ssl_scram_over_tls_delivers() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("");
    let ca = Ca::new(&dir, "ca");
    let (front, broker) = behind_front(&sandbox, Some(ca.server(&dir, false)), Some(alice()));
    let cc = client(
        &front.addr,
        &[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca.pem.to_str().unwrap()),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ],
    );
    create_topics(&broker, &cc, &["sasl_ssl"], 3);
    sandbox.write_config(
        "sasl_ssl.yaml",
        &secured_pipeline(
            &front.addr,
            "sasl_ssl",
            "sasl_ssl",
            &format!(
                "{}      TLS: {{Enabled: true, CAFile: '{}'}}\n",
                sasl_options("SCRAM-SHA-512", "alice-secret"),
                ca.pem.display()
            ),
        ),
    );
    let mut daemon = start_daemon(&sandbox);
    consume_at_least(&cc, "sasl_ssl", 10, &daemon);
    assert!(
        front.saw_login(FLUSHER, "SCRAM-SHA-512", true),
        "{:?}",
        front.seen()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");
    let all = consume(&cc, "sasl_ssl", 3, Duration::from_secs(3), |_| false);
    assert_exactly_once("sasl_ssl", all.iter().map(Received::index));
}
