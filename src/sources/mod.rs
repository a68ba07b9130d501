//! Sources fill the model's store: a folder of manifests (here) or, later, Kubernetes.

pub mod kube;
pub mod manifests;
pub mod watch;
