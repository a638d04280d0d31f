//! Ctrl-C (SIGINT) and SIGTERM: how a person at a terminal and a supervisor (systemd,
//! Docker, Kubernetes) ask a command to stop.
//!
//! Both are listened for from the moment [`StopSignals::listen`] returns. A signal that
//! comes before [`StopSignals::recv`] is awaited is kept for it; without a listener the
//! signal's default action ends the process at once. That matters to `weir serve`,
//! whose start (every partition's log opened, the coordinators loaded) can take seconds:
//! a SIGTERM meanwhile must stop the broker cleanly once it has started, not kill it.

use std::io;

/// Which stop signal came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    /// SIGINT, what Ctrl-C sends.
    Interrupt,
    /// SIGTERM, what supervisors send.
    Terminate,
}

impl StopSignal {
    /// How the logs name it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The exit status of a process this signal ended: 128 + its number, as shells
    /// report it (130 for Ctrl-C, 143 for SIGTERM).
    pub(crate) fn exit_code(self) -> i32 {
        128 + match self {
            StopSignal::Interrupt => libc::SIGINT,
            StopSignal::Terminate => libc::SIGTERM,
        }
    }
}

/// Listeners for both stop signals.
#[derive(Debug)]
pub(crate) struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening. Must run within a tokio runtime, whose signal driver the
    /// listeners then belong to.
    pub(crate) fn listen() -> io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// The next stop signal: one that came since [`StopSignals::listen`] (or since the
    /// last call) is returned at once.
    pub(crate) async fn recv(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => StopSignal::Interrupt,
                _ = self.terminate.recv() => StopSignal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            // Registered on the first poll here: no SIGTERM to keep off these systems.
            match tokio::signal::ctrl_c().await {
                Ok(()) => StopSignal::Interrupt,
                Err(_) => std::future::pending().await,
            }
        }
    }
}
