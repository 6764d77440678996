//! Which API servers to use, from the environment: `ISTHMUS_KUBECONFIGS` names kubeconfigs of
//! real API servers (`a=/path,b=/path`, or plain paths named a, b, … in order), else
//! `KUBEBUILDER_ASSETS` names a directory with envtest's `etcd` and `kube-apiserver` binaries
//! (one control plane is started per server asked for), else memkube, embedded. Pure parsing.

use std::path::PathBuf;

use crate::Error;

/// The variable naming kubeconfigs of real API servers.
pub const KUBECONFIGS_VAR: &str = "ISTHMUS_KUBECONFIGS";
/// envtest's variable: a directory holding `etcd` and `kube-apiserver`.
pub const ASSETS_VAR: &str = "KUBEBUILDER_ASSETS";

/// One kubeconfig of a real API server, with the name the lab or a test gives that server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKubeconfig {
    pub name: String,
    pub path: PathBuf,
    /// The context to use (none: the file's current context).
    pub context: Option<String>,
}

/// Where API servers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// memkube, in this process (the default; what CI runs).
    Memkube,
    /// Real API servers a user already runs (kind, k3d, a test cluster), one per name.
    Kubeconfigs(Vec<NamedKubeconfig>),
    /// Real API servers started here from envtest's binaries, one control plane per server.
    Envtest { assets: PathBuf },
}

impl Source {
    /// Reads the environment (see the module documentation).
    pub fn from_env() -> Result<Source, Error> {
        Self::from_vars(
            std::env::var(KUBECONFIGS_VAR).ok().as_deref(),
            std::env::var(ASSETS_VAR).ok().as_deref(),
        )
    }

    /// [`Self::from_env`] on given values.
    pub fn from_vars(kubeconfigs: Option<&str>, assets: Option<&str>) -> Result<Source, Error> {
        if let Some(list) = kubeconfigs.filter(|s| !s.trim().is_empty()) {
            return parse_kubeconfigs(list).map(Source::Kubeconfigs);
        }
        if let Some(dir) = assets.filter(|s| !s.trim().is_empty()) {
            return Ok(Source::Envtest {
                assets: PathBuf::from(dir),
            });
        }
        Ok(Source::Memkube)
    }

    /// Whether the servers are real kube-apiservers.
    pub fn is_real(&self) -> bool {
        !matches!(self, Source::Memkube)
    }

    /// One line for people: what the tests or the lab run against.
    pub fn describe(&self) -> String {
        match self {
            Source::Memkube => "memkube (embedded)".to_owned(),
            Source::Kubeconfigs(list) => format!(
                "real API servers from kubeconfigs: {}",
                list.iter()
                    .map(|k| format!("{}={}", k.name, k.path.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Source::Envtest { assets } => {
                format!("envtest control planes from {}", assets.display())
            }
        }
    }
}

/// `a=/p,b=/q` or `/p,/q` (named a, b, …); `name=path@context` picks a context.
pub fn parse_kubeconfigs(list: &str) -> Result<Vec<NamedKubeconfig>, Error> {
    let mut out: Vec<NamedKubeconfig> = Vec::new();
    for (i, item) in list.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let (name, rest) = match item.split_once('=') {
            Some((name, rest)) => (name.trim().to_owned(), rest.trim()),
            None => (default_name(i)?, item),
        };
        let (path, context) = match rest.rsplit_once('@') {
            Some((path, context)) if !context.is_empty() && !context.contains('/') => {
                (path, Some(context.to_owned()))
            }
            _ => (rest, None),
        };
        if name.is_empty() || path.is_empty() {
            return Err(Error::Source(format!(
                "{item:?}: expected NAME=PATH (e.g. a=/root/.kube/a.yaml)"
            )));
        }
        if out.iter().any(|k| k.name == name) {
            return Err(Error::Source(format!("{name} is named twice")));
        }
        out.push(NamedKubeconfig {
            name,
            path: PathBuf::from(path),
            context,
        });
    }
    if out.is_empty() {
        return Err(Error::Source("no kubeconfig named".into()));
    }
    Ok(out)
}

fn default_name(i: usize) -> Result<String, Error> {
    u8::try_from(i)
        .ok()
        .filter(|i| *i < 26)
        .map(|i| char::from(b'a' + i).to_string())
        .ok_or_else(|| Error::Source("at most 26 unnamed kubeconfigs".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_contexts() {
        let list = parse_kubeconfigs("a=/k/a.yaml, b=/k/b.yaml@kind-b").unwrap();
        assert_eq!(list[0].name, "a");
        assert_eq!(list[1].path, PathBuf::from("/k/b.yaml"));
        assert_eq!(list[1].context.as_deref(), Some("kind-b"));
        let list = parse_kubeconfigs("/k/x.yaml,/k/y.yaml").unwrap();
        assert_eq!((list[0].name.as_str(), list[1].name.as_str()), ("a", "b"));
        assert!(parse_kubeconfigs("a=/x,a=/y").is_err());
        assert!(parse_kubeconfigs("a=").is_err());
        assert!(parse_kubeconfigs(" , ").is_err());
    }

    #[test]
    fn kubeconfigs_win_over_assets_and_memkube_is_the_default() {
        assert_eq!(Source::from_vars(None, None).unwrap(), Source::Memkube);
        assert_eq!(
            Source::from_vars(Some(""), Some(" ")).unwrap(),
            Source::Memkube
        );
        assert!(matches!(
            Source::from_vars(None, Some("/assets")).unwrap(),
            Source::Envtest { .. }
        ));
        assert!(matches!(
            Source::from_vars(Some("a=/k"), Some("/assets")).unwrap(),
            Source::Kubeconfigs(_)
        ));
    }
}
