//! The conformance tool that checks a broker URL against the Knative data-plane contract.
//! Not built yet.
