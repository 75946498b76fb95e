//! The gRPC adapter (tonic). Same gateway messages as REST; the principal comes from the
//! `x-hodei-principal` metadata entry and the trace id from `traceparent`, and every
//! reply, success or error, carries `x-trace-id`.

mod cluster;
mod cost;
mod jobs;
mod observability;
mod pools;
mod queues;
mod scaling;
mod tenants;

use tonic::metadata::MetadataValue;
use tracing::Instrument;

pub use self::cluster::ClusterGrpc;
pub use self::cost::CostGrpc;
pub use self::jobs::{JobGrpc, job_message, submit_input};
pub use self::observability::ObservabilityGrpc;
pub use self::pools::PoolGrpc;
pub use self::queues::QueueGrpc;
pub use self::tenants::TenantGrpc;
use crate::actors::gateway::{GatewayHandle, Handler};
use crate::gateway::principal::PRINCIPAL_HEADER;
use crate::gateway::trace::{TRACE_ID_HEADER, TRACEPARENT_HEADER};
use crate::gateway::{Consistency, GatewayError, RequestContext, TraceId};

pub type GrpcResult<T> = Result<tonic::Response<T>, tonic::Status>;

/// What every gRPC method does, written once: read the call's principal and trace id, build
/// the gateway operation from the message (a refusal is the caller's error), run it in the
/// call's span and encode the answer. Success and error alike carry the trace id.
#[derive(Clone)]
pub struct GrpcGateway {
    gateway: GatewayHandle,
    authenticator: crate::actors::authenticator::Authenticator,
}

impl GrpcGateway {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            gateway,
            authenticator,
        }
    }

    pub async fn call<M, O: Handler, R>(
        &self,
        request: tonic::Request<M>,
        operation: impl FnOnce(M) -> Result<O, GatewayError>,
        encode: impl FnOnce(O::Reply) -> R,
    ) -> GrpcResult<R> {
        let context = request_context(&request, &self.authenticator)?;
        let trace_id = context.trace_id.clone();
        let operation = operation(request.into_inner())
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let result = self
            .gateway
            .call(context, operation)
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, encode)
    }
}

/// The consistency a read asks for in its `consistency` field (empty: linearizable).
pub fn consistency(field: &str) -> Result<Consistency, GatewayError> {
    Consistency::parse(Some(field).filter(|field| !field.is_empty()))
}

/// An empty proto string is an absent value.
pub fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Reads the principal and trace id of a call.
pub fn request_context<T>(
    request: &tonic::Request<T>,
    authenticator: &crate::actors::authenticator::Authenticator,
) -> Result<RequestContext, tonic::Status> {
    let metadata = request.metadata();
    let traceparent = metadata
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok());
    let trace_id = TraceId::from_header_or_new(traceparent);
    let entry = |name: &str| {
        metadata
            .get(name)
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| GatewayError::invalid(name.to_string(), "must be ASCII"))
            })
            .transpose()
    };
    let context = entry("authorization")
        .and_then(|authorization| {
            authenticator.context(
                crate::actors::authenticator::Presented {
                    authorization,
                    principal: entry(PRINCIPAL_HEADER)?,
                },
                trace_id.clone(),
            )
        })
        .map_err(|error| with_trace_status(&error, &trace_id))?;
    let request_id = metadata
        .get(crate::gateway::REQUEST_ID_HEADER)
        .map(|value| {
            value.to_str().map_err(|_| {
                GatewayError::invalid(crate::gateway::REQUEST_ID_HEADER, "must be ASCII")
            })
        })
        .transpose()
        .map_err(|error| with_trace_status(&error, &trace_id))?;
    let resource = request
        .extensions()
        .get::<tonic::GrpcMethod>()
        .map(|method| format!("{}/{}", method.service(), method.method()))
        .unwrap_or_default();
    context
        .with_resource(resource)
        .with_request_id(request_id)
        .map_err(|error| with_trace_status(&error, &trace_id))
}

fn trace_value(trace_id: &TraceId) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    MetadataValue::try_from(trace_id.as_str()).ok()
}

/// The span a gRPC request's work runs in: its logs carry the trace id.
pub fn grpc_span(trace_id: &TraceId) -> tracing::Span {
    tracing::info_span!("grpc", trace_id = %trace_id)
}

pub fn with_trace_status(error: &GatewayError, trace_id: &TraceId) -> tonic::Status {
    let mut status = error.to_status();
    if let Some(value) = trace_value(trace_id) {
        status.metadata_mut().insert(TRACE_ID_HEADER, value);
    }
    status
}

pub fn with_trace<T>(message: T, trace_id: &TraceId) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    if let Some(value) = trace_value(trace_id) {
        response.metadata_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

/// Turns a gateway answer into a traced gRPC reply.
pub fn reply<T, U>(
    result: Result<T, GatewayError>,
    trace_id: &TraceId,
    encode: impl FnOnce(T) -> U,
) -> Result<tonic::Response<U>, tonic::Status> {
    match result {
        Ok(value) => Ok(with_trace(encode(value), trace_id)),
        Err(error) => Err(with_trace_status(&error, trace_id)),
    }
}
