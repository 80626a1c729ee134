//! What the build pulls in: one HTTP and TLS stack. The AWS SDK crates'
//! default `rustls` feature brings a second, legacy one (hyper 0.14,
//! rustls 0.21) beside the default HTTPS client; `host/Cargo.toml` turns it
//! off, and this test keeps it off (a dependency update or a new feature
//! could bring it back silently).

use std::path::Path;

#[test]
fn the_lock_file_holds_one_version_of_each_http_and_tls_crate() {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"))
        .expect("the workspace's Cargo.lock");
    let versions = |name: &str| -> Vec<String> {
        let header = format!("name = \"{name}\"\n");
        lock.match_indices(&header)
            .filter_map(|(at, _)| {
                lock[at + header.len()..]
                    .lines()
                    .next()
                    .and_then(|line| line.strip_prefix("version = "))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .collect()
    };
    for name in ["rustls", "hyper", "hyper-rustls", "h2", "tokio-rustls"] {
        let found = versions(name);
        assert_eq!(
            found.len(),
            1,
            "{name}: {found:?} in Cargo.lock; one TLS stack only"
        );
    }
}
