/** Test helpers: requests signed by Smithy's SigV4 signer (an implementation independent of the gateway's). */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import http from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret ? createHmac('sha256', toBuffer(secret)) : createHash('sha256');
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuffer(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

export const KEY = { accessKeyId: 'AKIDPGSTATETEST', secretAccessKey: 'test-secret-key/with+chars' };

export function signer(credentials = KEY, region = 'us-east-1') {
  return new SignatureV4({
    service: 's3',
    region,
    credentials,
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: true,
  });
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** S3 error code from an XML error document, if any. */
  code: string | undefined;
}

export interface RawRequest {
  method: string;
  /** Already-encoded path, e.g. `/bucket/a%20b`. */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Sign with these credentials (default KEY); false: send unsigned. */
  sign?: false | { accessKeyId: string; secretAccessKey: string };
  signingDate?: Date;
  /** Change the request after signing (to test tampering). */
  after?: (req: { headers: Record<string, string>; path: string; body?: Buffer | string }) => void;
}

export async function rawRequest(baseUrl: string, r: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const body = r.body;
  const headers: Record<string, string> = { host: url.host, ...r.headers };
  if (body !== undefined && headers['content-length'] === undefined)
    headers['content-length'] = String(Buffer.byteLength(body));
  let request = {
    method: r.method,
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: r.path,
    query: r.query ?? {},
    headers,
    body,
  };
  if (r.sign !== false) {
    if (headers['x-amz-content-sha256'] === undefined) {
      headers['x-amz-content-sha256'] = createHash('sha256')
        .update(body ?? '')
        .digest('hex');
    }
    request = (await signer(r.sign ?? KEY).sign(request, { signingDate: r.signingDate })) as typeof request;
  }
  const query = new URLSearchParams(request.query as Record<string, string>).toString().replace(/\+/g, '%20');
  const mutable = { headers: { ...request.headers }, path: request.path + (query ? `?${query}` : ''), body };
  r.after?.(mutable);
  return send(url, r.method, mutable.path, mutable.headers, mutable.body);
}

export function send(
  url: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer | string,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: buf,
          text,
          code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1],
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
