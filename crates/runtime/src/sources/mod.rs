//! Sources fill the model's store: a folder of manifests (here) or Kubernetes (and, in KIngress mode, status goes back).

pub mod kube;
pub mod kube_status;
pub mod manifests;
pub mod watch;
