//! [`Objects`]: the writes of the `IpamStorage` objects of one state, each recognising its own
//! earlier attempt: a create answered `AlreadyExists` or a replace answered `Conflict` is read
//! back, and if the object is exactly what this writer wrote, the write had succeeded and only
//! its answer was lost. Shared by the committer (segments) and the compactor (blocks, root,
//! deletions); it holds no state of its own besides the client.

use std::collections::HashMap;

use isthmus_api::{IpamStorage, IpamStorageSpec};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use tokio::runtime::Handle;

use super::{BUCKET, LABEL_BUCKET, LABEL_IPAM, LABEL_ROLE};
use crate::StoreError;

/// Last seen resourceVersion of each root or block object, by name.
pub(super) type Versions = HashMap<String, String>;

fn is_status(e: &kube::Error, f: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if f(s))
}

/// The objects of the state rooted at `root`, as written by `writer`. Cheap to clone.
#[derive(Clone)]
pub(super) struct Objects {
    pub api: Api<IpamStorage>,
    pub runtime: Handle,
    pub root: String,
    pub writer: String,
}

impl Objects {
    fn object(
        &self,
        name: &str,
        spec: IpamStorageSpec,
        role: &str,
        bucket: Option<String>,
        version: Option<String>,
    ) -> IpamStorage {
        let mut labels = std::collections::BTreeMap::from([
            (LABEL_IPAM.to_owned(), self.root.clone()),
            (LABEL_ROLE.to_owned(), role.to_owned()),
        ]);
        if let Some(b) = bucket {
            labels.insert(LABEL_BUCKET.to_owned(), b);
        }
        let mut obj = IpamStorage::new(name, spec);
        obj.metadata = ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            resource_version: version,
            ..Default::default()
        };
        obj
    }

    /// Reads `name` back after a write was refused: `Some(rv)` when it holds exactly `spec`.
    fn ours(&self, name: &str, spec: &IpamStorageSpec) -> Result<Option<String>, StoreError> {
        let api = self.api.clone();
        let found = self.runtime.block_on(api.get_opt(name))?;
        Ok(found
            .filter(|o| o.spec == *spec && spec.writer.as_deref() == Some(self.writer.as_str()))
            .and_then(|o| o.metadata.resource_version))
    }

    /// Creates journal segment `name` (commit `commit`): one atomic write. The first segment of
    /// a writer (`keep`) is kept by compaction: a stale writer's next create of the same commit
    /// then collides instead of succeeding after a deletion.
    pub fn create_segment(
        &self,
        name: &str,
        commit: u64,
        spec: IpamStorageSpec,
        keep: bool,
    ) -> Result<(), StoreError> {
        let bucket = if keep {
            "keep".to_owned()
        } else {
            (commit / BUCKET).to_string()
        };
        let obj = self.object(name, spec.clone(), "segment", Some(bucket), None);
        let api = self.api.clone();
        match self
            .runtime
            .block_on(api.create(&PostParams::default(), &obj))
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.is_conflict()) => {
                match self.ours(name, &spec)? {
                    Some(_) => {
                        tracing::info!(segment = name, "a retried journal write had succeeded");
                        Ok(())
                    }
                    None => Err(StoreError::Conflict {
                        name: name.to_owned(),
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or replaces `name` (root or block) at its last seen version in `versions`, and
    /// records the new one.
    pub fn put(
        &self,
        versions: &mut Versions,
        name: &str,
        spec: IpamStorageSpec,
        role: &str,
    ) -> Result<(), StoreError> {
        let known = versions.get(name).cloned();
        let replace = known.is_some();
        let obj = self.object(name, spec.clone(), role, None, known);
        let api = self.api.clone();
        let pp = PostParams::default();
        let result = self.runtime.block_on(async {
            if replace {
                api.replace(name, &pp, &obj).await
            } else {
                api.create(&pp, &obj).await
            }
        });
        let rv = match result {
            Ok(o) => o.metadata.resource_version,
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.is_conflict()) => {
                match self.ours(name, &spec)? {
                    Some(rv) => Some(rv),
                    None => {
                        return Err(StoreError::Conflict {
                            name: name.to_owned(),
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        versions.insert(name.to_owned(), rv.unwrap_or_default());
        Ok(())
    }

    /// Deletes `name`; already gone is fine.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let api = self.api.clone();
        match self
            .runtime
            .block_on(api.delete(name, &DeleteParams::default()))
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, |s| s.is_not_found()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the journal segments of buckets `from..to`, one call for all.
    pub fn delete_buckets(&self, from: u64, to: u64) -> Result<(), StoreError> {
        let buckets: Vec<String> = (from..to).map(|b| b.to_string()).collect();
        let selector = format!(
            "{LABEL_IPAM}={},{LABEL_ROLE}=segment,{LABEL_BUCKET} in ({})",
            self.root,
            buckets.join(",")
        );
        let api = self.api.clone();
        let lp = ListParams::default().labels(&selector);
        self.runtime
            .block_on(api.delete_collection(&DeleteParams::default(), &lp))?;
        Ok(())
    }
}
