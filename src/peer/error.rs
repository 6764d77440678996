//! Why `isthmus peer` or `isthmus unpeer` stopped: one variant per thing the user would do
//! differently, each one sentence naming the cluster (`the remote cluster (context kind-b)`) and
//! the fix. Everything found before anything was written says so by construction: those
//! variants are returned by the preflight, which writes nothing.

use std::path::PathBuf;
use std::time::Duration;

use crate::peer::side::Label;

/// A failed `peer` or `unpeer`.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read the {role} kubeconfig {}: {message}", file.display())]
    Kubeconfig {
        role: &'static str,
        file: PathBuf,
        message: String,
    },
    #[error("the {role} kubeconfig {} has no context {context:?} (it has: {})", file.display(), known.join(", "))]
    UnknownContext {
        role: &'static str,
        file: PathBuf,
        context: String,
        known: Vec<String>,
    },
    #[error("the {role} kubeconfig {} has no current context: name one with --{flag}context", file.display())]
    NoContext {
        role: &'static str,
        flag: &'static str,
        file: PathBuf,
    },
    #[error("{side}: {message}")]
    Config { side: Label, message: String },
    #[error("{side}: the API at {server} does not answer: {message}")]
    Unreachable {
        side: Label,
        server: String,
        message: String,
    },
    #[error(
        "{side}: isthmus's CRDs are not installed (the API does not serve {}); install the Helm chart or apply crds/",
        missing.join(", ")
    )]
    NoCrds {
        side: Label,
        missing: Vec<&'static str>,
    },
    #[error(
        "{side}: namespace {namespace} does not exist; install isthmus there or name its namespace with --{flag}namespace"
    )]
    NoNamespace {
        side: Label,
        namespace: String,
        flag: &'static str,
    },
    #[error(
        "{side}: isthmus is not installed in namespace {namespace} (no ConfigMap labelled {label}; \
         chart 0.2.0 or later creates it)"
    )]
    NotInstalled {
        side: Label,
        namespace: String,
        label: &'static str,
    },
    #[error("{side}: ConfigMap {namespace}/{name} is not usable: {message}")]
    BadClusterInfo {
        side: Label,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "{side}: the network-manager's ServiceAccount {namespace}/{name} does not exist; is the \
         chart installed completely?"
    )]
    NoNetworkManagerAccount {
        side: Label,
        namespace: String,
        name: String,
    },
    #[error("both sides are the same cluster ({why}); name two different clusters")]
    SameCluster { why: String },
    #[error(
        "the namespaces differ ({local} here, {remote} there): each network-manager writes into \
         the peer's namespace of its own namespace's name, so install both releases into \
         namespaces of the same name"
    )]
    NamespaceMismatch { local: String, remote: String },
    #[error("{side}: {message}")]
    Conflict { side: Label, message: String },
    #[error("{side}: minting a token for ServiceAccount {namespace}/{account} failed: {message}")]
    Token {
        side: Label,
        namespace: String,
        account: String,
        message: String,
    },
    #[error("{side}: {what} failed: {message}")]
    Api {
        side: Label,
        what: String,
        message: String,
    },
    #[error("{message}")]
    Apply { message: String },
    #[error("not done after {}s:\n{}", after.as_secs(), reasons.join("\n"))]
    Timeout {
        after: Duration,
        reasons: Vec<String>,
    },
    #[error("cannot write to the terminal: {0}")]
    Output(#[from] std::io::Error),
}

/// `Result` with [`PeerError`].
pub type Result<T, E = PeerError> = std::result::Result<T, E>;

/// What a failed request says, on one line: the API's own message and code for an API answer
/// (`access denied: …` for a 403), the first line of the error chain otherwise.
pub fn request_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(s) if s.code == 403 => format!("access denied: {}", s.message),
        kube::Error::Api(s) if s.reason.is_empty() => format!("{} ({})", s.message, s.code),
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => first_line(crate::inspect::cause::describe(other)),
    }
}

/// The first line of an error's text: YAML errors append a quoted excerpt of the input.
pub fn first_line(text: String) -> String {
    match text.split_once('\n') {
        Some((first, _)) => first.trim_end().to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_answers_are_said_without_the_status_dump() {
        let status = |code: u16, reason: &str, message: &str| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure(message, reason).with_code(code),
            ))
        };
        assert_eq!(
            request_error(&status(
                404,
                "NotFound",
                "the server could not find the requested resource"
            )),
            "the server could not find the requested resource (404 NotFound)"
        );
        assert_eq!(
            request_error(&status(
                403,
                "Forbidden",
                "cannot create serviceaccounts/token"
            )),
            "access denied: cannot create serviceaccounts/token"
        );
    }

    #[test]
    fn only_the_first_line_of_a_yaml_error_is_kept() {
        assert_eq!(
            first_line("bad: line 1\n --> <input>\n".into()),
            "bad: line 1"
        );
        assert_eq!(first_line("one".into()), "one");
    }
}
