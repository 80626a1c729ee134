//! `flinkscale probe URL`: a health check for images that have nothing else.
//!
//! The container image is `FROM scratch`: no shell, no curl. An
//! orchestrator that checks health by running a command in the container
//! (ECS task definitions, Docker `HEALTHCHECK`) runs the agent's own binary
//! instead: `flinkscale probe http://127.0.0.1:9464/livez` exits 0 when
//! the URL answers 2xx within the timeout, 1 otherwise, saying why.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Requests `url` (plain `http://HOST:PORT/PATH`, as the agent's listener
/// serves) and reports whether it answered 2xx.
pub fn probe(url: &str, timeout: Duration) -> ExitCode {
    match get_status(url, timeout) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("probe: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("probe: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `probe`'s URL: `http://HOST:PORT[/PATH]` with a port from 1 to
/// 65535, so that a typo in a health check is a command line refused
/// (exit 2), not an agent reported unhealthy (exit 1). Whether the host
/// resolves is the world's answer, found when probing.
pub fn parse_url(text: &str) -> Result<String, String> {
    let valid = "valid: http://HOST:PORT/PATH, e.g. http://127.0.0.1:9464/livez";
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        format!("only http:// URLs can be probed, the agent's listener being plain HTTP ({valid})")
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p > 0) =>
        {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "{authority:?} is not HOST:PORT with a port from 1 to 65535 ({valid})"
        )),
    }
}

/// The status code `url` answers a GET with.
fn get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs can be probed (the agent's listener is plain HTTP)")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority:?} (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    // The status line is all that is needed; the body is small anyway.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_not_plain_http_is_refused_with_the_reason() {
        let error = get_status("https://127.0.0.1:1/livez", Duration::from_millis(100))
            .expect_err("https is refused");
        assert!(error.contains("only http://"), "{error}");
        let error =
            get_status("http://no-port/livez", Duration::from_millis(100)).expect_err("no port");
        assert!(error.contains("HOST:PORT"), "{error}");
    }

    /// A URL that cannot be probed is refused on the command line (exit
    /// 2), saying what is valid; a host that may not resolve is not.
    #[test]
    fn the_url_is_checked_as_the_command_line_is() {
        for bad in [
            "",
            "ftp://x",
            "https://127.0.0.1:9464/livez",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:+80/",
            "http://:9464/livez",
            "http://host/livez",
        ] {
            let error = parse_url(bad).expect_err(bad);
            assert!(
                error.contains("valid: http://HOST:PORT/PATH"),
                "{bad}: {error}"
            );
        }
        for good in [
            "http://127.0.0.1:9464/livez",
            "http://agent.internal:9464",
            "http://[::1]:9464/readyz",
        ] {
            assert_eq!(parse_url(good).as_deref(), Ok(good));
        }
    }
}
