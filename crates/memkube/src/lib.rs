//! memkube: an in-memory Kubernetes API server (stub; see issue 4).
