//! Which cluster this node belongs to. The id is chosen when the cluster is initialised
//! and travels in every message between nodes; a node that has none adopts the first it
//! hears from a member, and a node of another cluster refuses the message.

use std::sync::{Arc, PoisonError, RwLock};

use crate::error::ClusterError;
use crate::storage::{Keyspace, WriteBatch};

const CLUSTER_ID_KEY: &[u8] = b"cluster_id";

#[derive(Debug)]
pub struct ClusterIdentity {
    meta: Arc<dyn Keyspace>,
    cluster_id: RwLock<Option<String>>,
}

impl ClusterIdentity {
    pub fn load(meta: Arc<dyn Keyspace>) -> Result<Self, ClusterError> {
        let stored = meta
            .get(CLUSTER_ID_KEY)
            .map_err(|error| ClusterError::Storage(error.to_string()))?
            .and_then(|bytes| String::from_utf8(bytes).ok());
        Ok(Self {
            meta,
            cluster_id: RwLock::new(stored),
        })
    }

    pub fn get(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `cluster_id` durably if this node has none; refuses another one.
    pub fn adopt(&self, cluster_id: &str) -> Result<(), ClusterError> {
        if cluster_id.is_empty() {
            return Ok(());
        }
        // Every message between members passes here: decide under the read lock.
        if let Some(own) = self
            .cluster_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
        {
            return if own == cluster_id {
                Ok(())
            } else {
                Err(ClusterError::Refused(format!(
                    "this node belongs to cluster {own}, not {cluster_id}"
                )))
            };
        }
        let mut current = self
            .cluster_id
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match current.as_deref() {
            Some(own) if own == cluster_id => Ok(()),
            Some(own) => Err(ClusterError::Refused(format!(
                "this node belongs to cluster {own}, not {cluster_id}"
            ))),
            None => {
                let mut batch = WriteBatch::new();
                batch.put(CLUSTER_ID_KEY.to_vec(), cluster_id.as_bytes().to_vec());
                self.meta
                    .write(batch)
                    .and_then(|_| self.meta.flush())
                    .map_err(|error| ClusterError::Storage(error.to_string()))?;
                *current = Some(cluster_id.to_string());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_storage::SledStorage;
    use crate::storage::Storage;

    #[test]
    fn adopts_once_then_refuses_another_cluster() {
        let storage = SledStorage::temporary().unwrap();
        let identity = ClusterIdentity::load(storage.keyspace("meta").unwrap()).unwrap();
        assert_eq!(identity.get(), None);
        identity.adopt("").unwrap();
        assert_eq!(identity.get(), None, "an empty id is no id");
        identity.adopt("a").unwrap();
        identity.adopt("a").unwrap();
        assert!(matches!(identity.adopt("b"), Err(ClusterError::Refused(_))));
        let reloaded = ClusterIdentity::load(storage.keyspace("meta").unwrap()).unwrap();
        assert_eq!(reloaded.get().as_deref(), Some("a"));
    }
}
