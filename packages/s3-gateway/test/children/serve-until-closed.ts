/**
 * A gateway in its own process: prints its URL, and when the parent sends any IPC message, lets go of the IPC
 * channel and closes the gateway and the handler's pool. It then has to exit by itself (no process.exit): whatever
 * the gateway opened, such as idle keep-alive connections, must not keep the event loop alive.
 */
import { createS3Gateway } from '../../src/index.js';
import { KEY } from '../support/sign.js';
import { createTableHandler } from '../support/table-handler.js';

const handler = await createTableHandler(process.argv[2]!, 'exit_after_close');
const gateway = await createS3Gateway({ buckets: { state: handler }, credentials: [KEY], logger: false });
process.stdout.write(`${gateway.url}\n`);
process.once('message', async () => {
  process.disconnect();
  await gateway.close();
  await handler.pool.end();
  process.stdout.write('closed\n');
});
