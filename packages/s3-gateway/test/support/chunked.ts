/** A PUT whose body is `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (64 KiB chunks, each signed in the chain). */
import { createHash, createHmac } from 'node:crypto';
import { KEY, signer } from './sign.js';

const EMPTY_SHA = createHash('sha256').update('').digest('hex');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Head and body of the request; `corrupt` flips a byte of the second chunk after it was signed. */
export async function signedChunkedRequest(
  baseUrl: string,
  path: string,
  data: Buffer,
  corrupt: boolean,
): Promise<{ head: string; body: Buffer }> {
  const url = new URL(baseUrl);
  const sizes: number[] = [];
  for (let off = 0; off < data.length; off += 65_536) sizes.push(Math.min(65_536, data.length - off));
  sizes.push(0);
  const framing = sizes.reduce((n, s) => n + s.toString(16).length + ';chunk-signature='.length + 64 + 4 + s, 0);
  const request = await signer().sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path,
    query: {},
    headers: {
      host: url.host,
      'content-encoding': 'aws-chunked',
      'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
      'x-amz-decoded-content-length': String(data.length),
      'content-length': String(framing),
    },
  });
  const headers = request.headers as Record<string, string>;
  const auth = headers.authorization ?? '';
  const seed = /Signature=([0-9a-f]{64})/.exec(auth)?.[1] ?? '';
  const scope = /Credential=[^/]+\/([^,]+)/.exec(auth)?.[1] ?? '';
  const [date = '', region = '', service = ''] = scope.split('/');
  const hmac = (key: Buffer | string, text: string) => createHmac('sha256', key).update(text).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${KEY.secretAccessKey}`, date), region), service), 'aws4_request');
  let previous = seed;
  let offset = 0;
  const parts: Buffer[] = [];
  for (const size of sizes) {
    const chunk = Buffer.from(data.subarray(offset, offset + size));
    offset += size;
    const text = `AWS4-HMAC-SHA256-PAYLOAD\n${headers['x-amz-date']}\n${scope}\n${previous}\n${EMPTY_SHA}\n${sha(chunk)}`;
    previous = hmac(key, text).toString('hex');
    if (corrupt && size > 0 && offset > 65_536) chunk[0] = (chunk[0] ?? 0) ^ 1;
    parts.push(Buffer.from(`${size.toString(16)};chunk-signature=${previous}\r\n`), chunk, Buffer.from('\r\n'));
  }
  const head = `PUT ${path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\n\r\n`;
  return { head, body: Buffer.concat(parts) };
}
