// The thread that sends a node's lease heartbeats to its spawner's watchdog (started by
// actors/lease-beats.ts; plain JavaScript so that it loads the same from the sources and from
// dist/, without the TypeScript loader). It runs on its own event loop, so the node's main loop
// being busy does not stop it; it is in the node's process, so SIGSTOP or SIGKILL of the node does.
//
// It beats only while the monotonic clock is before the "lease valid until" the main thread
// published in shared memory: each beat means exactly "this node's owner lease is valid now".
// workerData: { validUntil: SharedArrayBuffer (one BigInt64, CLOCK_MONOTONIC ns; 0: not valid),
//               heartbeatMs, command (the H command without its stamp) }. Messages: { fd } is the write end of a new
// spawner's beats FIFO; the answer { using: fd } says the ones before are no longer written (the
// main thread owns and closes them all: a descriptor closed here while it reuses the number elsewhere
// would send heartbeats into some other file).
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const validUntil = new BigInt64Array(workerData.validUntil);
const { heartbeatMs, command } = workerData;
let fd = null;
/** One warning per FIFO: a spawner that stopped reading would otherwise get one every beat. */
let warned = false;

function beat() {
  const nowNs = process.hrtime.bigint();
  if (fd === null || nowNs >= Atomics.load(validUntil, 0)) return;
  try {
    // Stamped with when it was sent (CLOCK_MONOTONIC ms, the spawner's clock): a beat the spawner
    // reads late keeps the workloads running from then, not from when it was read.
    writeSync(fd, `${command} ${nowNs / 1_000_000n}\n`);
  } catch (error) {
    // EAGAIN: the spawner is not reading (its watchdog acts on the silence, as it should);
    // EPIPE: that spawner is gone and the node starts another, whose FIFO comes next.
    if (!warned && error.code !== 'EAGAIN' && error.code !== 'EPIPE') parentPort.postMessage({ warning: `lease heartbeats: ${error.message}` });
    warned = true;
  }
}

parentPort.on('message', (message) => {
  fd = message.fd;
  warned = false;
  beat();
  parentPort.postMessage({ using: fd });
});

setInterval(beat, heartbeatMs);
