//! The signals that stop a long-running command (`run`, `emulate`,
//! `demo`): ctrl-c (SIGINT) and SIGTERM.
//!
//! They are listened for from the moment a [`Signals`] is made, and a
//! signal that arrives before anyone waits is kept for the next
//! [`Signals::recv`]. A command makes one first thing, before the slow
//! parts of its start (AWS configuration, plugin compiles): from then on a
//! SIGTERM (systemd, Kubernetes) or a ctrl-c ends it gracefully instead of
//! by the signal's default action (status 143 or 130), whenever it comes.

use tracing::warn;

/// Ctrl-c and SIGTERM, listened for since [`Signals::listen`].
#[derive(Debug)]
pub struct Signals {
    /// SIGTERM, when it could be listened for.
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    /// SIGINT (ctrl-c), when it could be listened for.
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening for ctrl-c and SIGTERM, replacing their default
    /// action (ending the process) for good. One that cannot be listened
    /// for is logged and keeps its default action. Must be called on a
    /// tokio runtime with its signal driver enabled.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|error| {
                        warn!(
                            message = "Cannot listen for a stop signal; it ends the process at once.",
                            signal = name,
                            %error,
                        );
                    })
                    .ok()
            };
            Self {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next ctrl-c or SIGTERM, or at once for one that
    /// came since the last call (or since [`Signals::listen`]). Never
    /// resolves when neither can be listened for.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            /// The next signal of `signal`, or never.
            async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(self.terminate.as_mut()) => {}
                () = next(self.interrupt.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
