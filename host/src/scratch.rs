//! A unit test's own temporary folder: a fresh, randomly named folder
//! under the system's temporary folder, removed when the test ends, passed
//! or failed. Two tests running at once in one process never share one
//! (a folder named after the process id and a test's label did, when two
//! tests used the same label), and none is left behind in `/tmp`.

use std::path::Path;

/// A folder of the test's own, removed when dropped; it reads as the
/// [`Path`] it is.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A new empty [`Scratch`] folder whose name starts with
/// `flinkscale-{label}-`.
pub fn scratch(label: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("flinkscale-{label}-"))
            .tempdir()
            .expect("a temporary folder"),
    )
}
