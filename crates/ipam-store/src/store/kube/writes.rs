//! The writes of [`KubeStore`], each recognising its own earlier attempt: a create answered
//! `AlreadyExists` or a replace answered `Conflict` is read back, and if the object is exactly
//! what this writer wrote, the write had succeeded and only its answer was lost.

use isthmus_api::{IpamStorage, IpamStorageSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

use super::{BUCKET, KubeStore, LABEL_BUCKET, LABEL_IPAM, LABEL_ROLE};
use crate::StoreError;

fn is_status(e: &kube::Error, f: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if f(s))
}

impl KubeStore {
    fn object(
        &self,
        name: &str,
        spec: IpamStorageSpec,
        role: &str,
        bucket: Option<String>,
    ) -> IpamStorage {
        let mut labels = std::collections::BTreeMap::from([
            (LABEL_IPAM.to_owned(), self.name.clone()),
            (LABEL_ROLE.to_owned(), role.to_owned()),
        ]);
        if let Some(b) = bucket {
            labels.insert(LABEL_BUCKET.to_owned(), b);
        }
        let mut obj = IpamStorage::new(name, spec);
        obj.metadata = ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            resource_version: self.versions.get(name).cloned(),
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

    /// Creates journal segment `name` (commit `commit`): one atomic write.
    pub(super) fn create_segment(
        &mut self,
        name: &str,
        commit: u64,
        spec: IpamStorageSpec,
    ) -> Result<(), StoreError> {
        // The first segment of this writer is kept by compaction: a stale writer's next create
        // of the same commit then collides instead of succeeding after a deletion.
        let bucket = match self.first_commit {
            None => "keep".to_owned(),
            Some(_) => (commit / BUCKET).to_string(),
        };
        let obj = self.object(name, spec.clone(), "segment", Some(bucket));
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

    /// Creates or replaces `name` (root or block) at its last seen version.
    pub(super) fn put(
        &mut self,
        name: &str,
        spec: IpamStorageSpec,
        role: &str,
    ) -> Result<(), StoreError> {
        let obj = self.object(name, spec.clone(), role, None);
        let api = self.api.clone();
        let pp = PostParams::default();
        let known = self.versions.contains_key(name);
        let result = self.runtime.block_on(async {
            if known {
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
        self.versions
            .insert(name.to_owned(), rv.unwrap_or_default());
        Ok(())
    }

    /// Deletes `name`; already gone is fine.
    pub(super) fn delete(&mut self, name: &str) -> Result<(), StoreError> {
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

    /// Deletes the segment buckets wholly at or before `checkpoint`, one call for all.
    pub(super) fn delete_old_segments(&mut self, checkpoint: u64) -> Result<(), StoreError> {
        let done = (checkpoint + 1) / BUCKET;
        if done <= self.deleted_buckets {
            return Ok(());
        }
        let buckets: Vec<String> = (self.deleted_buckets..done)
            .map(|b| b.to_string())
            .collect();
        let selector = format!(
            "{LABEL_IPAM}={},{LABEL_ROLE}=segment,{LABEL_BUCKET} in ({})",
            self.name,
            buckets.join(",")
        );
        let api = self.api.clone();
        let lp = ListParams::default().labels(&selector);
        self.runtime
            .block_on(api.delete_collection(&DeleteParams::default(), &lp))?;
        self.deleted_buckets = done;
        Ok(())
    }
}
