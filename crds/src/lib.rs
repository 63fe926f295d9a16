//! Kubernetes CRDs and the controller that maps them onto the resource model in
//! `herald-core`. Not built yet.
