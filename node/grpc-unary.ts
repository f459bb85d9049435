// Async unary handlers in grpc-js's callback style, and the one mapping of
// their errors to gRPC statuses: an RpcError keeps its code and message, a
// ServiceError from a forwarded call passes through, anything else is INTERNAL.
import * as grpc from '@grpc/grpc-js';

/** A failure with the status code and the one-line message a client sees. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

export function toServiceError(error: unknown): Partial<grpc.ServiceError> {
  if (error instanceof RpcError) return { code: error.code, details: error.message, message: error.message };
  const maybe = error as Partial<grpc.ServiceError>;
  if (typeof maybe?.code === 'number' && typeof maybe.details === 'string') return { code: maybe.code, details: maybe.details, message: maybe.details };
  const message = error instanceof Error ? error.message : String(error);
  return { code: grpc.status.INTERNAL, details: message, message };
}

/** Adapt an async handler to grpc-js's callback style, mapping errors in one place. */
export function unary<Req, Res>(handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call.request, call).then(
      (response) => callback(null, response),
      (error: unknown) => callback(toServiceError(error) as grpc.ServiceError),
    );
  };
}
