//! Whether a zenoh listening endpoint is reachable beyond this machine, and the rule built on it: rtchunk
//! listens beyond loopback only over TLS, unless `io.allow_insecure` says otherwise in so many words. Anyone who
//! reaches an open port could publish state, send start and stop, or query a policy server.

use rtchunk_config::IoConfig;
use std::net::IpAddr;

/// How a listening endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only from this machine: a loopback address, `localhost`, or a Unix socket.
    Local,
    /// From the network, authenticated by TLS.
    Tls,
    /// From the network, unauthenticated.
    Open,
}

impl Exposure {
    /// The exposure of `endpoint` (`proto/address[?metadata][#config]`).
    pub fn of(endpoint: &str) -> Exposure {
        let locator = endpoint.split(['?', '#']).next().unwrap_or(endpoint);
        let (protocol, address) = locator.split_once('/').unwrap_or(("", locator));
        if protocol == "tls" || protocol == "quic" {
            return Exposure::Tls;
        }
        if protocol.starts_with("unixsock") {
            return Exposure::Local;
        }
        let host = match address.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => address,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback {
            Exposure::Local
        } else {
            Exposure::Open
        }
    }
}

/// Refuses listening endpoints open to the network without TLS (unless `io.allow_insecure`), and TLS endpoints
/// without `[io.tls]`; the error names the endpoint and what to change.
pub fn check_endpoints(io: &IoConfig) -> Result<(), String> {
    for endpoint in io.listen.iter().chain(&io.connect) {
        if Exposure::of(endpoint) == Exposure::Tls && io.tls.is_none() {
            return Err(format!(
                "io: {endpoint} is a TLS endpoint, but [io.tls] (ca, certificate, key) is not set"
            ));
        }
    }
    if io.allow_insecure {
        return Ok(());
    }
    match io.listen.iter().find(|e| Exposure::of(e) == Exposure::Open) {
        Some(endpoint) => Err(format!(
            "io.listen: {endpoint} can be reached beyond this machine without TLS, so anyone who reaches it \
             could send state, start or stop the robot, or query a policy server; listen on tls/... with \
             [io.tls] (ca, certificate, key), on loopback, or set io.allow_insecure = true (command line: \
             --allow-insecure) to accept that"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unix_sockets_and_tls_are_told_from_open_endpoints() {
        for local in [
            "tcp/127.0.0.1:7447",
            "tcp/127.3.2.1:7447",
            "tcp/[::1]:7447",
            "tcp/localhost:7447",
            "udp/127.0.0.1:7447?rel=0",
            "unixsock-stream//tmp/rtchunk.sock",
        ] {
            assert_eq!(Exposure::of(local), Exposure::Local, "{local}");
        }
        for open in [
            "tcp/0.0.0.0:7448",
            "tcp/[::]:7448",
            "tcp/192.168.1.20:7447",
            "tcp/robot.local:7447",
            "tcp/10.0.0.1:7447#iface=eth0",
        ] {
            assert_eq!(Exposure::of(open), Exposure::Open, "{open}");
        }
        assert_eq!(Exposure::of("tls/0.0.0.0:7448"), Exposure::Tls);
    }

    #[test]
    fn an_open_listener_needs_tls_or_the_explicit_setting() {
        let open = IoConfig {
            listen: vec!["tcp/0.0.0.0:7448".into()],
            ..IoConfig::default()
        };
        let error = check_endpoints(&open).unwrap_err();
        assert!(
            error.contains("io.listen: tcp/0.0.0.0:7448") && error.contains("allow_insecure"),
            "{error}"
        );
        check_endpoints(&IoConfig {
            allow_insecure: true,
            ..open
        })
        .unwrap();
        check_endpoints(&IoConfig::default()).unwrap();
        let tls_without_keys = IoConfig {
            listen: vec!["tls/0.0.0.0:7448".into()],
            ..IoConfig::default()
        };
        let error = check_endpoints(&tls_without_keys).unwrap_err();
        assert!(error.contains("[io.tls]"), "{error}");
    }
}
