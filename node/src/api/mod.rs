//! The REST (axum) and gRPC (tonic) adapters. Each handler decodes, sends one message to
//! the gateway, and encodes the reply; neither API has logic the other lacks. The
//! gateway's contract (inputs, views, errors, request context) is `crate::gateway`.

pub mod connections;
pub mod error;
pub mod grpc;
pub mod rest;
