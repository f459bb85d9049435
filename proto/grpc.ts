// The one bridge between protobuf-es service descriptors and @grpc/grpc-js:
// a descriptor becomes a grpc-js service definition (for Server.addService and
// client constructors), with types that follow each method's kind.
import * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import type { DescMessage, DescService, MessageShape } from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';

type MethodShape = GenServiceMethods[string];
type Input<Method extends MethodShape> = MessageShape<Method['input']>;
type Output<Method extends MethodShape> = MessageShape<Method['output']>;

/** grpc-js method definitions keyed by each method's localName (`sendOne`, `status`). */
export type GrpcServiceDefinition<Methods extends GenServiceMethods> = {
  readonly [Name in keyof Methods]: grpc.MethodDefinition<Input<Methods[Name]>, Output<Methods[Name]>>;
};

/** The grpc-js handler type for one method, chosen by its kind. */
export type Handler<Method extends MethodShape> = Method['methodKind'] extends 'unary'
  ? grpc.handleUnaryCall<Input<Method>, Output<Method>>
  : Method['methodKind'] extends 'client_streaming'
    ? grpc.handleClientStreamingCall<Input<Method>, Output<Method>>
    : Method['methodKind'] extends 'server_streaming'
      ? grpc.handleServerStreamingCall<Input<Method>, Output<Method>>
      : grpc.handleBidiStreamingCall<Input<Method>, Output<Method>>;

/** What a server supplies for a service: one handler per method, by localName. */
export type ServiceImplementation<Methods extends GenServiceMethods> = {
  [Name in keyof Methods]: Handler<Methods[Name]>;
};

type UnaryCallback<Response> = grpc.requestCallback<Response>;

/** The client stub type for one method, with grpc-js's usual argument orders. */
export type ClientMethod<Method extends MethodShape> = Method['methodKind'] extends 'unary'
  ? {
      (request: Input<Method>, callback: UnaryCallback<Output<Method>>): grpc.ClientUnaryCall;
      (request: Input<Method>, metadata: grpc.Metadata, callback: UnaryCallback<Output<Method>>): grpc.ClientUnaryCall;
      (request: Input<Method>, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, callback: UnaryCallback<Output<Method>>): grpc.ClientUnaryCall;
    }
  : Method['methodKind'] extends 'client_streaming'
    ? {
        (callback: UnaryCallback<Output<Method>>): grpc.ClientWritableStream<Input<Method>>;
        (metadata: grpc.Metadata, callback: UnaryCallback<Output<Method>>): grpc.ClientWritableStream<Input<Method>>;
        (metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, callback: UnaryCallback<Output<Method>>): grpc.ClientWritableStream<Input<Method>>;
      }
    : Method['methodKind'] extends 'server_streaming'
      ? (request: Input<Method>, metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>) => grpc.ClientReadableStream<Output<Method>>
      : (metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>) => grpc.ClientDuplexStream<Input<Method>, Output<Method>>;

/** A grpc-js client with one typed stub per method, by localName. */
export type ServiceClient<Methods extends GenServiceMethods> = grpc.Client & {
  [Name in keyof Methods]: ClientMethod<Methods[Name]>;
};

export type ServiceClientConstructor<Methods extends GenServiceMethods> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ChannelOptions>,
) => ServiceClient<Methods>;

/**
 * Map every method of `service` to a grpc-js method definition: path
 * `/<package>.<Service>/<Method>`, streaming flags from the method kind, and
 * binary (de)serialisation through the input and output schemas.
 */
export function grpcServiceFromDescriptor<Methods extends GenServiceMethods>(service: GenService<Methods>): GrpcServiceDefinition<Methods>;
export function grpcServiceFromDescriptor(service: DescService): grpc.ServiceDefinition;
export function grpcServiceFromDescriptor(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: method.name,
    };
  }
  return definition;
}

/** Register `implementation` for `service` on `server`, type-checked against the descriptor. */
export function addService<Methods extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<Methods>,
  implementation: ServiceImplementation<Methods>,
): void {
  server.addService(grpcServiceFromDescriptor(service), implementation as grpc.UntypedServiceImplementation);
}

/** A client class for `service` (grpc-js's makeGenericClientConstructor with typed stubs). */
export function makeClientConstructor<Methods extends GenServiceMethods>(service: GenService<Methods>): ServiceClientConstructor<Methods> {
  const constructor = grpc.makeGenericClientConstructor(grpcServiceFromDescriptor(service), service.typeName);
  return constructor as unknown as ServiceClientConstructor<Methods>;
}

type UnaryMethodName<Methods extends GenServiceMethods> = {
  [Name in keyof Methods]: Methods[Name]['methodKind'] extends 'unary' ? Name : never;
}[keyof Methods] &
  string;

export interface CallInit {
  /** Cancels the call; the promise then rejects with a ServiceError of status CANCELLED. */
  readonly signal?: AbortSignal;
  readonly deadline?: grpc.Deadline;
  readonly metadata?: grpc.Metadata;
}

/** One unary call as a promise; rejects with the grpc-js ServiceError on a non-OK status. */
export function callUnary<Methods extends GenServiceMethods, Name extends UnaryMethodName<Methods>>(
  client: ServiceClient<Methods>,
  method: Name,
  request: Input<Methods[Name]>,
  init: CallInit = {},
): Promise<Output<Methods[Name]>> {
  type Stub = (
    request: Input<Methods[Name]>,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: UnaryCallback<Output<Methods[Name]>>,
  ) => grpc.ClientUnaryCall;
  const stub = client[method] as unknown as Stub;
  const { signal } = init;
  return new Promise((resolve, reject) => {
    const options: Partial<grpc.CallOptions> = init.deadline === undefined ? {} : { deadline: init.deadline };
    const onAbort = (): void => call.cancel();
    const call = stub.call(client, request, init.metadata ?? new grpc.Metadata(), options, (error, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (error !== null) reject(error);
      else if (response === undefined) reject(new Error(`${method}: OK status without a response`));
      else resolve(response);
    });
    // An already aborted signal still makes (and at once cancels) the call, so
    // every abort rejects the same way: a ServiceError with status CANCELLED.
    if (signal?.aborted === true) call.cancel();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// Both directions avoid copies: the Buffer shares toBinary's fresh bytes, and
// the reader gets a plain Uint8Array view of grpc-js's message buffer, so
// `bytes` fields decode as Uint8Array subarrays (a Buffer input would make
// them Buffers, which compare unequal to Uint8Array in deep-equality checks).
function serializer(schema: DescMessage): (message: unknown) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message as MessageShape<DescMessage>);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (buffer: Buffer) => unknown {
  return (buffer) => fromBinary(schema, new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength));
}
