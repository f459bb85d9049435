// A gRPC server that answers debughost's KV.Put at once and does nothing else:
// the floor set by grpc-js and the load generator on this machine, for
// `npm run bench -- raft --systems noop,...`. Prints its port, then serves until killed.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { KV, PutResponseSchema } from '../proto/gen/kv_pb.ts';
import { grpcServiceFromDescriptor } from '../proto/grpc.ts';

const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
const put: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) => callback(null, create(PutResponseSchema, { succeeded: true }));
server.addService(grpcServiceFromDescriptor(KV), { put });
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error !== null) {
    process.stderr.write(`noop-kv: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${port}\n`);
});
