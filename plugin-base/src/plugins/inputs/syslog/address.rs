//! `Address`: where `service_syslog` listens, as iLogtail writes it: `tcp://127.0.0.1:9999`,
//! `udp://0.0.0.0:514`, `tcp6://[::1]:514`, `unixgram:///dev/log`. A missing port is 6514 and a
//! missing host means every interface, as in iLogtail. Host names are resolved when the config
//! loads, so that a bad one is an error then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// iLogtail's port when the address has none.
const DEFAULT_PORT: u16 = 6514;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    /// A Unix datagram socket (`/dev/log`); its file is removed when the input stops.
    Unixgram(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Udp(a) => write!(f, "udp://{a}"),
            Listen::Unixgram(p) => write!(f, "unixgram://{}", p.display()),
        }
    }
}

/// Which addresses a scheme may bind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// Parses `Address`; the error says what is wrong with the value (the caller names the field).
pub fn parse(address: &str) -> Result<Listen, String> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("{address:?} has no protocol: expected tcp://host:port, udp://host:port or unixgram:///path"))?;
    let scheme = scheme.to_ascii_lowercase();
    let (datagram, family) = match scheme.as_str() {
        "tcp" => (false, Family::Any),
        "tcp4" => (false, Family::V4),
        "tcp6" => (false, Family::V6),
        "udp" => (true, Family::Any),
        "udp4" => (true, Family::V4),
        "udp6" => (true, Family::V6),
        "unixgram" => {
            if rest.is_empty() {
                return Err(format!("{address:?} has no socket path"));
            }
            return Ok(Listen::Unixgram(PathBuf::from(rest)));
        }
        _ => {
            return Err(format!(
                "{address:?}: unknown protocol {scheme:?} (expected tcp, tcp4, tcp6, udp, udp4, udp6 or unixgram)"
            ))
        }
    };
    // Anything after the authority (a path, a query) means nothing here.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| format!("{address:?}: {authority:?} is not host:port"))?;
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{address:?}: {p:?} is not a port (0 to 65535)"))?,
    };
    let ip = resolve(host, port, family).map_err(|e| format!("{address:?}: {e}"))?;
    let socket = SocketAddr::new(ip, port);
    Ok(if datagram {
        Listen::Udp(socket)
    } else {
        Listen::Tcp(socket)
    })
}

/// `host:port`, `[v6]:port`, `host`, `[v6]`, `:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some(_) if authority.parse::<Ipv6Addr>().is_ok() => Some((authority, None)),
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

fn resolve(host: &str, port: u16, family: Family) -> Result<IpAddr, String> {
    let fits = |ip: &IpAddr| match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    };
    if host.is_empty() {
        // Every interface, as Go's net.Listen(":port") does.
        return Ok(match family {
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if fits(&ip) {
            Ok(ip)
        } else {
            Err(format!("{ip} is not of the protocol's address family"))
        };
    }
    let found: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?
        .map(|a| a.ip())
        .filter(fits)
        .collect();
    // IPv4 first, as Go's resolver prefers it for listening.
    found
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| format!("host {host:?} has no address of the protocol's family"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Listen {
        Listen::Tcp(s.parse().unwrap())
    }

    #[test]
    fn addresses_as_ilogtail_writes_them() {
        assert_eq!(
            parse("tcp://127.0.0.1:9999").unwrap(),
            tcp("127.0.0.1:9999")
        );
        assert_eq!(
            parse("udp://0.0.0.0:514").unwrap(),
            Listen::Udp("0.0.0.0:514".parse().unwrap())
        );
        assert_eq!(parse("TCP://127.0.0.1").unwrap(), tcp("127.0.0.1:6514"));
        assert_eq!(parse("tcp://:1514").unwrap(), tcp("0.0.0.0:1514"));
        assert_eq!(parse("tcp6://[::1]:1514").unwrap(), tcp("[::1]:1514"));
        assert_eq!(parse("tcp://::1").unwrap(), tcp("[::1]:6514"));
        assert_eq!(
            parse("tcp://localhost:1514/").unwrap(),
            tcp("127.0.0.1:1514")
        );
        assert_eq!(
            parse("unixgram:///dev/log").unwrap(),
            Listen::Unixgram("/dev/log".into())
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (address, says) in [
            ("127.0.0.1:9999", "no protocol"),
            ("http://127.0.0.1:80", "unknown protocol"),
            ("tcp://127.0.0.1:99999", "not a port"),
            ("tcp://127.0.0.1:x", "not a port"),
            ("tcp4://[::1]:514", "family"),
            ("tcp://no-such-host.invalid:514", "cannot resolve"),
            ("tcp://a:b:c", "not host:port"),
            ("unixgram://", "no socket path"),
        ] {
            let e = parse(address).unwrap_err();
            assert!(e.contains(says), "{address}: {e}");
            assert!(e.contains(address), "{address}: {e}");
        }
    }
}
