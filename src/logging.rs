//! The process's log: `tracing` to stderr, as text or JSON, colour only on a terminal, with the
//! filters every subcommand shares (`RUST_LOG`, defguard capped because it logs private keys at
//! debug, gotatun's per-connection chatter quietened) and one known false alarm dropped: gotatun
//! reports its own clean stop as `ERROR … Unexpected error on tun interface: … channel closed`.

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Installs the global subscriber. `quiet`: nothing unless `RUST_LOG` asks (commands that
/// report their own errors).
pub fn init(format: Format, quiet: bool) {
    let default = if quiet { "off" } else { "info" };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // defguard logs interface configuration, private key included, below info: capped always,
    // whatever RUST_LOG says.
    if let Ok(cap) = isthmus_dataplane::LOG_DIRECTIVE.parse() {
        filter = filter.add_directive(cap);
    }
    // gotatun logs every UAPI connection (each status read) at info.
    if std::env::var_os("RUST_LOG").is_none()
        && let Ok(quieter) = "gotatun=warn".parse()
    {
        filter = filter.add_directive(quieter);
    }
    // Colour only on a terminal: the lab's log and a pod's log are files, read by people and
    // quoted in error messages.
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CleanStopNoise);
    let result = match format {
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        Format::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging was already set up: {e}");
    }
}

/// Drops the one event gotatun writes when it is stopped cleanly: its outbound task finds the
/// TUN channel closed by the stop itself and reports it at ERROR.
#[derive(Debug, Clone, Copy)]
struct CleanStopNoise;

impl<S: tracing::Subscriber> Layer<S> for CleanStopNoise {
    fn event_enabled(&self, event: &tracing::Event<'_>, _: Context<'_, S>) -> bool {
        !is_clean_stop_noise(event.metadata().target(), event)
    }
}

fn is_clean_stop_noise(target: &str, event: &tracing::Event<'_>) -> bool {
    if !target.starts_with("gotatun::device") {
        return false;
    }
    let mut message = MessageText(String::new());
    event.record(&mut message);
    message.0.contains("Unexpected error on tun interface") && message.0.contains("channel closed")
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records the messages that reach it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut m = MessageText(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn only_the_clean_stop_report_is_dropped() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(CleanStopNoise)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "gotatun::device", "Unexpected error on tun interface: Custom {{ kind: UnexpectedEof, error: \"channel closed\" }}");
            tracing::error!(target: "gotatun::device", "Unexpected error on tun interface: Os {{ code: 5 }}");
            tracing::error!(target: "isthmus", "channel closed");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains("code: 5"));
        assert_eq!(seen[1], "channel closed");
    }
}
