//! A **security front** for the Kafka tests: a TCP proxy on 127.0.0.1, started by a test,
//! between the daemon's `flusher_kafka_v2` and a plain Tansu broker. It stands in for the part
//! of a real Kafka broker that Tansu 0.6.0 cannot play: its TLS listener (its CLI makes
//! `--cert` and `--key` mutually exclusive and its listener never uses the acceptor it builds)
//! and a SASL login that can succeed (its PLAIN accepts any password, and its SCRAM users
//! cannot be created on an in-memory broker).
//!
//! What is real in a test through the front: librdkafka's own TLS client (OpenSSL: certificate
//! chain and host name checks, client certificates) and SASL client (PLAIN; SCRAM-SHA-256/512
//! with its nonce, proof and check of the server's signature), fed with the librdkafka settings
//! that our `Authentication` options become; and every Kafka request after the login
//! (ApiVersions, Metadata, Produce …), which the front forwards to Tansu byte for byte.
//!
//! What the front stands in for, and nothing more: the broker's TLS termination (rustls, with a
//! certificate the test made; optionally asking for a client certificate signed by the test's
//! CA) and the broker's SASL server — `SaslHandshake` (api key 17, v1) and `SaslAuthenticate`
//! (api key 36, v0–v2; v2 is a flexible version) for PLAIN and SCRAM-SHA-256/512 (RFC 5802 and
//! 7677 server side: salt, 4096 iterations, client proof checked, `ServerSignature` sent) with
//! one user and password, answering Kafka's error 58 (SASL_AUTHENTICATION_FAILED) and its message
//! to a wrong password, and closing a connection that sends anything but ApiVersions before it
//! logged in, as a Kafka broker does. It has no ACLs, no re-authentication, no delegation
//! tokens, no SaslHandshake v0 (the unframed pre-KIP-152 login), and one user.
//!
//! Tansu must advertise the front's address (`--advertised-listener-url`), so that the clients
//! reconnect through the front after reading the metadata. What the front saw (logins, refused
//! TLS handshakes, requests before a login) is kept in [`KafkaFront::seen`], for the tests to
//! check that a delivery really went through the login they configured.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request or response frame the front reads (Kafka's default socket limit).
const MAX_FRAME: usize = 100 * 1024 * 1024;
/// SCRAM's iteration count (Kafka's minimum and default).
const SCRAM_ITERATIONS: u32 = 4096;
/// SaslHandshake, SaslAuthenticate and ApiVersions.
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const API_VERSIONS: i16 = 18;
/// Kafka's error codes the front answers with.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_VERSION: i16 = 35;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The SASL mechanisms the front offers (as a broker's `sasl.enabled.mechanisms`).
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The one user that may log in.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// What the front saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// A SASL login, by a client (its `client.id`), and whether it was let in.
    Login {
        client_id: String,
        mechanism: String,
        username: String,
        ok: bool,
    },
    /// A TLS handshake that failed, with rustls's reason (`received fatal alert: UnknownCA`,
    /// `peer sent no certificates` …).
    TlsFailed(String),
    /// A request other than ApiVersions before a login: the connection was closed.
    Unauthenticated { client_id: String, api_key: i16 },
}

/// A running front; stops (and drops its connections) when dropped.
pub struct KafkaFront {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl KafkaFront {
    /// Serves `listener` (bound by the caller first, so that Tansu can be told to advertise its
    /// address), forwarding to the plain broker at `upstream`: TLS first when `tls` is given,
    /// then a SASL login of `user` when given.
    pub fn start(
        listener: TcpListener,
        upstream: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        user: Option<User>,
    ) -> KafkaFront {
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            user,
            seen: seen.clone(),
        });
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = shared.serve(socket).await {
                        eprintln!("kafka front: a connection ended: {e}");
                    }
                });
            }
        });
        KafkaFront {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    /// Everything seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether a login of `client_id` with `mechanism` was seen, let in (`ok`) or refused.
    pub fn saw_login(&self, client_id: &str, mechanism: &str, ok: bool) -> bool {
        self.seen().iter().any(|s| {
            matches!(s, Seen::Login { client_id: c, mechanism: m, ok: o, .. }
                if c == client_id && m == mechanism && *o == ok)
        })
    }
}

impl Drop for KafkaFront {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A client's side of a connection, TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Shared {
    upstream: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
    user: Option<User>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Shared {
    fn record(&self, seen: Seen) {
        eprintln!("kafka front: {seen:?}");
        self.seen.lock().unwrap().push(seen);
    }

    async fn serve(&self, socket: TcpStream) -> io::Result<()> {
        let mut client: Box<dyn Io> = match &self.tls {
            Some(acceptor) => match acceptor.accept(socket).await {
                Ok(stream) => Box::new(stream),
                Err(e) => {
                    self.record(Seen::TlsFailed(e.to_string()));
                    return Ok(());
                }
            },
            None => Box::new(socket),
        };
        let mut upstream = TcpStream::connect(&self.upstream).await?;
        if let Some(user) = &self.user {
            if !self.login(&mut client, &mut upstream, user).await? {
                return Ok(());
            }
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        Ok(())
    }

    /// The login phase: ApiVersions goes to the broker, SaslHandshake and SaslAuthenticate are
    /// answered here. True once the client logged in; false when the connection is to be
    /// closed (a wrong password, or a request that needs a login).
    async fn login(
        &self,
        client: &mut Box<dyn Io>,
        upstream: &mut TcpStream,
        user: &User,
    ) -> io::Result<bool> {
        let mut mechanism: Option<String> = None;
        let mut scram: Option<ScramServer> = None;
        loop {
            let Some(frame) = read_frame(client).await? else {
                return Ok(false);
            };
            let header = RequestHeader::parse(&frame)?;
            match header.api_key {
                API_VERSIONS => {
                    write_frame(upstream, &frame).await?;
                    let Some(response) = read_frame(upstream).await? else {
                        return Ok(false);
                    };
                    write_frame(client, &response).await?;
                }
                SASL_HANDSHAKE => {
                    let mut body = Reader::new(&frame[header.body..]);
                    let wanted = body.string()?;
                    let error = if header.api_version != 1 {
                        // v0 means the unframed login of old brokers, which the front lacks.
                        UNSUPPORTED_VERSION
                    } else if MECHANISMS.contains(&wanted.as_str()) {
                        mechanism = Some(wanted);
                        0
                    } else {
                        UNSUPPORTED_SASL_MECHANISM
                    };
                    let mut out = Writer::response(header.correlation_id, false);
                    out.i16(error);
                    out.i32(MECHANISMS.len() as i32);
                    for m in MECHANISMS {
                        out.string(m);
                    }
                    write_frame(client, &out.0).await?;
                    if error != 0 {
                        return Ok(false);
                    }
                }
                SASL_AUTHENTICATE => {
                    let flexible = header.api_version >= 2;
                    let mut body = Reader::new(&frame[header.body..]);
                    let auth = if flexible {
                        body.compact_bytes()?
                    } else {
                        body.bytes()?
                    };
                    let step = match mechanism.as_deref() {
                        None => Step::Fail(
                            ILLEGAL_SASL_STATE,
                            "SaslAuthenticate before SaslHandshake".into(),
                        ),
                        Some("PLAIN") => {
                            let (username, ok) = plain_login(&auth, user);
                            self.record(Seen::Login {
                                client_id: header.client_id.clone(),
                                mechanism: "PLAIN".into(),
                                username,
                                ok,
                            });
                            if ok {
                                Step::Done(Vec::new())
                            } else {
                                Step::Fail(
                                    SASL_AUTHENTICATION_FAILED,
                                    "Authentication failed: Invalid username or password".into(),
                                )
                            }
                        }
                        Some(m) => {
                            let hash = if m == "SCRAM-SHA-256" {
                                ScramHash::Sha256
                            } else {
                                ScramHash::Sha512
                            };
                            let failed = || {
                                Step::Fail(
                                    SASL_AUTHENTICATION_FAILED,
                                    format!(
                                        "Authentication failed during authentication due to \
                                         invalid credentials with SASL mechanism {m}"
                                    ),
                                )
                            };
                            match scram.take() {
                                None => match ScramServer::first(hash, &auth, user) {
                                    Ok((server, reply)) => {
                                        scram = Some(server);
                                        Step::Continue(reply)
                                    }
                                    Err(username) => {
                                        self.record(Seen::Login {
                                            client_id: header.client_id.clone(),
                                            mechanism: m.into(),
                                            username,
                                            ok: false,
                                        });
                                        failed()
                                    }
                                },
                                Some(server) => {
                                    let verdict = server.last(&auth, user);
                                    self.record(Seen::Login {
                                        client_id: header.client_id.clone(),
                                        mechanism: m.into(),
                                        username: server.username.clone(),
                                        ok: verdict.is_some(),
                                    });
                                    match verdict {
                                        Some(reply) => Step::Done(reply),
                                        None => failed(),
                                    }
                                }
                            }
                        }
                    };
                    let (error, message, auth_bytes) = match &step {
                        Step::Continue(b) | Step::Done(b) => (0, None, b.as_slice()),
                        Step::Fail(code, message) => (*code, Some(message.as_str()), &[][..]),
                    };
                    let mut out = Writer::response(header.correlation_id, flexible);
                    out.i16(error);
                    if flexible {
                        out.compact_nullable_string(message);
                        out.compact_bytes(auth_bytes);
                    } else {
                        out.nullable_string(message);
                        out.bytes(auth_bytes);
                    }
                    if header.api_version >= 1 {
                        // session_lifetime_ms: 0, no re-authentication.
                        out.i64(0);
                    }
                    if flexible {
                        out.tagged_fields();
                    }
                    write_frame(client, &out.0).await?;
                    match step {
                        Step::Continue(_) => {}
                        Step::Done(_) => return Ok(true),
                        Step::Fail(..) => return Ok(false),
                    }
                }
                api_key => {
                    self.record(Seen::Unauthenticated {
                        client_id: header.client_id,
                        api_key,
                    });
                    return Ok(false);
                }
            }
        }
    }
}

/// Where a SaslAuthenticate leaves the login.
enum Step {
    /// A challenge; the client answers with another SaslAuthenticate.
    Continue(Vec<u8>),
    /// Logged in (with the last server message).
    Done(Vec<u8>),
    /// Refused: the error code and message.
    Fail(i16, String),
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. The user name given, and whether the
/// name and password are the user's.
fn plain_login(auth: &[u8], user: &User) -> (String, bool) {
    let parts: Vec<&[u8]> = auth.split(|b| *b == 0).collect();
    if parts.len() != 3 {
        return (String::new(), false);
    }
    let username = String::from_utf8_lossy(parts[1]).into_owned();
    let ok = username == user.name && parts[2] == user.password.as_bytes();
    (username, ok)
}

#[derive(Clone, Copy)]
enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn mac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = Hmac::<D>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha256 => mac::<Sha256>(key, data),
            ScramHash::Sha512 => mac::<Sha512>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &str, salt: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(
                    password.as_bytes(),
                    salt,
                    SCRAM_ITERATIONS,
                    &mut out,
                );
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(
                    password.as_bytes(),
                    salt,
                    SCRAM_ITERATIONS,
                    &mut out,
                );
                out
            }
        }
    }
}

/// The server side of one SCRAM login, between its two client messages.
struct ScramServer {
    hash: ScramHash,
    username: String,
    /// The client's nonce followed by the front's.
    nonce: String,
    salt: Vec<u8>,
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// Takes the client-first message (`n,,n=user,r=nonce`); returns the server-first one
    /// (`r=nonce,s=salt,i=4096`), or the user name when the user is unknown or the message bad.
    fn first(
        hash: ScramHash,
        message: &[u8],
        user: &User,
    ) -> Result<(ScramServer, Vec<u8>), String> {
        let text = std::str::from_utf8(message).map_err(|_| String::new())?;
        // GS2 header: no channel binding ("n" or "y"), no authzid other than empty.
        let bare = text
            .strip_prefix("n,,")
            .or_else(|| text.strip_prefix("y,,"))
            .ok_or_else(String::new)?;
        let username = attribute(bare, 'n')
            .map(|n| n.replace("=2C", ",").replace("=3D", "="))
            .ok_or_else(String::new)?;
        let client_nonce = attribute(bare, 'r').ok_or_else(|| username.clone())?;
        if username != user.name {
            return Err(username);
        }
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(18)));
        let salt = random_bytes(16);
        let server_first = format!("r={nonce},s={},i={SCRAM_ITERATIONS}", B64.encode(&salt));
        let reply = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                hash,
                username,
                nonce,
                salt,
                client_first_bare: bare.to_owned(),
                server_first,
            },
            reply,
        ))
    }

    /// Takes the client-final message (`c=biws,r=nonce,p=proof`): the server-final one
    /// (`v=signature`) when the proof shows the user's password, else None.
    fn last(&self, message: &[u8], user: &User) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(message).ok()?;
        let (without_proof, proof) = text.rsplit_once(",p=")?;
        if attribute(without_proof, 'r')? != self.nonce {
            return None;
        }
        let binding = B64.decode(attribute(without_proof, 'c')?).ok()?;
        if binding != b"n,," && binding != b"y,," {
            return None;
        }
        let proof = B64.decode(proof).ok()?;
        let h = self.hash;
        let salted = h.salted_password(&user.password, &self.salt);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return None;
        }
        // ClientProof = ClientKey XOR ClientSignature: recover the key, check its hash.
        let recovered: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if h.hash(&recovered) != stored_key {
            return None;
        }
        let server_key = h.hmac(&salted, b"Server Key");
        let server_signature = h.hmac(&server_key, auth_message.as_bytes());
        Some(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The value of `<name>=` in a SCRAM message's comma-separated attributes.
fn attribute(message: &str, name: char) -> Option<&str> {
    message
        .split(',')
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

/// Unpredictable bytes (from the standard library's randomly keyed hasher): nonces and salts.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// One Kafka frame (a 4-byte big-endian length, then that many bytes), or None at the end of
/// the stream.
async fn read_frame<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut frame = vec![0; len as usize];
    r.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(&(frame.len() as i32).to_be_bytes()).await?;
    w.write_all(frame).await?;
    w.flush().await
}

/// A request header (v1, or v2 for flexible versions: then tagged fields follow the client id).
struct RequestHeader {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: String,
    /// Where the request's body starts in the frame (known for the SASL requests only).
    body: usize,
}

impl RequestHeader {
    fn parse(frame: &[u8]) -> io::Result<RequestHeader> {
        let mut r = Reader::new(frame);
        let api_key = r.i16()?;
        let api_version = r.i16()?;
        let correlation_id = r.i32()?;
        let client_id = r.nullable_string()?.unwrap_or_default();
        if api_key == SASL_AUTHENTICATE && api_version >= 2 {
            r.skip_tagged_fields()?;
        }
        Ok(RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id,
            body: r.at,
        })
    }
}

/// Reads Kafka's primitive types.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

fn short() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a request shorter than its fields",
    )
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(short)?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self) -> io::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn uvarint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(short())
    }

    fn nullable_string(&mut self) -> io::Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn string(&mut self) -> io::Result<String> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.i32()?;
        Ok(self.take(len.max(0) as usize)?.to_vec())
    }

    /// COMPACT_BYTES: an unsigned varint of the length plus one, then the bytes.
    fn compact_bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.uvarint()?.saturating_sub(1);
        Ok(self.take(len as usize)?.to_vec())
    }

    fn skip_tagged_fields(&mut self) -> io::Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(size as usize)?;
        }
        Ok(())
    }
}

/// Writes a response (the frame's body: the header, then the fields).
struct Writer(Vec<u8>);

impl Writer {
    /// Response header v0 (the correlation id), or v1 for flexible versions (then tagged
    /// fields).
    fn response(correlation_id: i32, flexible: bool) -> Writer {
        let mut w = Writer(correlation_id.to_be_bytes().to_vec());
        if flexible {
            w.tagged_fields();
        }
        w
    }

    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn string(&mut self, s: &str) {
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
    }

    fn compact_nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.compact_bytes(s.as_bytes()),
            None => self.uvarint(0),
        }
    }

    fn compact_bytes(&mut self, b: &[u8]) {
        self.uvarint(b.len() as u64 + 1);
        self.0.extend_from_slice(b);
    }

    /// No tagged fields.
    fn tagged_fields(&mut self) {
        self.uvarint(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A request frame: header v1 (v2 when `flexible`), then `body`.
    fn request(
        api_key: i16,
        version: i16,
        correlation_id: i32,
        flexible: bool,
        body: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.i16(api_key);
        w.i16(version);
        w.i32(correlation_id);
        w.string("probe");
        if flexible {
            w.tagged_fields();
        }
        w.0.extend_from_slice(body);
        let mut frame = (w.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&w.0);
        frame
    }

    fn response(stream: &mut std::net::TcpStream) -> Vec<u8> {
        let mut len = [0; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        body
    }

    /// SaslAuthenticate v2 (the flexible version, which librdkafka 2.12 does not send yet): the
    /// front answers with a v1 response header and compact fields, refuses a wrong password with
    /// error 58 and its message, and after a right one forwards the next request to the broker
    /// unchanged.
    #[test]
    fn sasl_authenticate_v2_is_answered_in_the_flexible_encoding() {
        let broker = TcpListener::bind("127.0.0.1:0").unwrap();
        let front = KafkaFront::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            &broker.local_addr().unwrap().to_string(),
            None,
            Some(User {
                name: "alice".into(),
                password: "secret".into(),
            }),
        );
        // A connection that logged in with `password`, and the SaslAuthenticate response.
        let login = |password: &str| {
            let mut stream = std::net::TcpStream::connect(&front.addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut body = Writer(Vec::new());
            body.string("PLAIN");
            stream
                .write_all(&request(SASL_HANDSHAKE, 1, 7, false, &body.0))
                .unwrap();
            let handshake = response(&mut stream);
            // correlation id 7, no error, then the 3 mechanisms.
            assert_eq!(handshake[..10], [0, 0, 0, 7, 0, 0, 0, 0, 0, 3]);
            let mut body = Writer(Vec::new());
            body.compact_bytes(format!("\0alice\0{password}").as_bytes());
            body.tagged_fields();
            stream
                .write_all(&request(SASL_AUTHENTICATE, 2, 8, true, &body.0))
                .unwrap();
            let answer = response(&mut stream);
            (stream, answer)
        };
        let (_, refused) = login("guess");
        let message = b"Authentication failed: Invalid username or password";
        let mut expected = vec![0, 0, 0, 8, 0, 0, 58, message.len() as u8 + 1];
        expected.extend_from_slice(message);
        // No auth bytes (length 0 + 1), session lifetime 0, no tagged fields.
        expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(refused, expected);

        let (mut stream, accepted) = login("secret");
        // Correlation id 8, no tagged fields, no error, a null message, no auth bytes, session
        // lifetime 0, no tagged fields.
        assert_eq!(
            accepted,
            [0, 0, 0, 8, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let metadata = request(3, 12, 9, true, &[0, 0]);
        stream.write_all(&metadata).unwrap();
        let (mut upstream, _) = broker.accept().unwrap();
        // The refused connection reached the broker too (the front connects first): find the
        // one that carries the request.
        upstream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut got = vec![0; metadata.len()];
        if upstream.read_exact(&mut got).is_err() {
            let (mut second, _) = broker.accept().unwrap();
            second.read_exact(&mut got).unwrap();
        }
        assert_eq!(got, metadata);
        assert_eq!(
            front.seen(),
            [false, true].map(|ok| Seen::Login {
                client_id: "probe".into(),
                mechanism: "PLAIN".into(),
                username: "alice".into(),
                ok,
            })
        );
    }

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let user = User {
            name: "user".into(),
            password: "pencil".into(),
        };
        let server = ScramServer {
            hash: ScramHash::Sha256,
            username: "user".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            salt: B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                           s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .into(),
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            server.last(client_final.as_bytes(), &user).unwrap(),
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let wrong = User {
            password: "pencil2".into(),
            ..user
        };
        assert!(server.last(client_final.as_bytes(), &wrong).is_none());
    }
}
