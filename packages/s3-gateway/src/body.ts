/**
 * Reads a request body into one exactly-sized buffer, decoding `aws-chunked` framing (signed chunks, unsigned chunks
 * with trailing checksums), and verifies every integrity claim the client made before anything is written:
 * x-amz-content-sha256, Content-MD5, x-amz-checksum-* headers or trailers, chunk and trailer signatures.
 */
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm, type Checksummer, createChecksummer } from './checksums.js';
import { S3Error, s3Errors } from './errors.js';
import { type AuthResult, UNSIGNED_PAYLOAD } from './sigv4.js';

export interface ReadBodyOptions {
  maxBytes: number;
  /** Called once right before the first body byte is wanted (answers `Expect: 100-continue`). */
  onStart?: () => void;
  /** Reserves room for the decoded body before any of it is read (the gateway's in-flight byte budget). */
  reserve?: (bytes: number) => Promise<void>;
}

export interface DecodedBody {
  body: Buffer;
  /** Base64 checksums computed for the algorithms the client asked about (echoed in responses). */
  checksums: Partial<Record<ChecksumAlgorithm, string>>;
}

const MAX_LINE = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;
const ALGORITHM_NAMES: Record<ChecksumAlgorithm, string> = {
  crc32: 'CRC32',
  crc32c: 'CRC32C',
  sha1: 'SHA1',
  sha256: 'SHA256',
};

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function malformedChunks(detail: string): S3Error {
  return new S3Error(400, 'InvalidRequest', `Malformed aws-chunked body: ${detail}.`);
}

function checksumAlgorithmOf(name: string): ChecksumAlgorithm {
  const alg = name.toLowerCase().replace(/^x-amz-checksum-/, '') as ChecksumAlgorithm;
  if (!CHECKSUM_ALGORITHMS.includes(alg)) {
    throw s3Errors.invalidRequest(
      `Checksum algorithm "${name}" is not supported by this endpoint; use CRC32, CRC32C, SHA1 or SHA256.`,
    );
  }
  return alg;
}

/** Incremental parser of the aws-chunked framing; writes decoded bytes straight into `out`. */
class AwsChunkedDecoder {
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'done' = 'size';
  private line: Buffer[] = [];
  private lineLength = 0;
  private remaining = 0;
  private chunkSignature: string | undefined;
  private chunkHash: Hash | undefined;
  private trailerBytes = 0;
  private crlfSeen = 0;
  offset = 0;
  readonly trailers = new Map<string, string>();
  trailerSignature: string | undefined;

  constructor(
    private readonly out: Buffer,
    private readonly signed: boolean,
    private readonly auth: AuthResult,
    private readonly onData: (data: Buffer) => void,
  ) {}

  push(input: Buffer): void {
    let pos = 0;
    while (pos < input.length) {
      switch (this.state) {
        case 'size':
        case 'trailer': {
          const nl = input.indexOf(10, pos);
          const end = nl === -1 ? input.length : nl + 1;
          this.lineLength += end - pos;
          if (this.lineLength > MAX_LINE) throw malformedChunks('line too long');
          this.line.push(input.subarray(pos, end));
          pos = end;
          if (nl !== -1) this.endLine();
          break;
        }
        case 'data': {
          const n = Math.min(this.remaining, input.length - pos);
          const slice = input.subarray(pos, pos + n);
          slice.copy(this.out, this.offset);
          this.offset += n;
          this.chunkHash?.update(slice);
          this.onData(slice);
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.state = 'data-crlf';
          break;
        }
        case 'data-crlf': {
          const expected = this.crlfSeen === 0 ? 13 : 10;
          if (input[pos] !== expected) throw malformedChunks('chunk data not followed by CRLF');
          pos++;
          this.crlfSeen++;
          if (this.crlfSeen === 2) {
            this.crlfSeen = 0;
            this.finishChunk();
            this.state = 'size';
          }
          break;
        }
        case 'done':
          throw malformedChunks('bytes after the final chunk');
      }
    }
  }

  private takeLine(): string {
    const text = Buffer.concat(this.line).toString('latin1');
    this.line = [];
    this.lineLength = 0;
    if (!text.endsWith('\r\n')) throw malformedChunks('line not terminated by CRLF');
    return text.slice(0, -2);
  }

  private endLine(): void {
    const text = this.takeLine();
    if (this.state === 'size') {
      const [sizeText, ...extensions] = text.split(';');
      if (!sizeText || !/^[0-9a-fA-F]{1,12}$/.test(sizeText)) throw malformedChunks('bad chunk size');
      const size = Number.parseInt(sizeText, 16);
      if (this.offset + size > this.out.length) throw malformedChunks('chunks exceed x-amz-decoded-content-length');
      this.chunkSignature = undefined;
      for (const ext of extensions) {
        if (ext.startsWith('chunk-signature=')) this.chunkSignature = ext.slice('chunk-signature='.length);
      }
      if (this.signed && !this.chunkSignature) throw malformedChunks('missing chunk-signature');
      this.chunkHash = this.signed ? createHash('sha256') : undefined;
      this.remaining = size;
      if (size === 0) {
        this.finishChunk();
        this.state = 'trailer';
      } else {
        this.state = 'data';
      }
      return;
    }
    // Trailer section: header lines until an empty line.
    this.trailerBytes += text.length + 2;
    if (this.trailerBytes > MAX_TRAILER_BYTES) throw malformedChunks('trailer too large');
    if (text === '') {
      this.state = 'done';
      return;
    }
    const colon = text.indexOf(':');
    if (colon <= 0) throw malformedChunks('bad trailer line');
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).trim();
    if (name === 'x-amz-trailer-signature') this.trailerSignature = value;
    else this.trailers.set(name, value);
  }

  private finishChunk(): void {
    if (!this.signed || !this.auth.chunks) return;
    const digest = (this.chunkHash ?? createHash('sha256')).digest('hex');
    if (!this.auth.chunks.verifyChunk(digest, this.chunkSignature ?? '')) throw s3Errors.signatureDoesNotMatch();
  }

  get finished(): boolean {
    return this.state === 'done';
  }
}

/** The declared body length, or undefined for a body sent with HTTP chunked transfer encoding. */
function declaredLength(req: IncomingMessage, chunked: boolean): number | undefined {
  const text = chunked ? header(req, 'x-amz-decoded-content-length') : header(req, 'content-length');
  if (text === undefined) {
    if (chunked) throw s3Errors.missingContentLength();
    if (header(req, 'transfer-encoding')) return undefined;
    return 0;
  }
  if (!/^\d{1,15}$/.test(text)) throw s3Errors.invalidArgument('The body length header is not a valid number.');
  return Number(text);
}

export async function readBody(req: IncomingMessage, auth: AuthResult, options: ReadBodyOptions): Promise<DecodedBody> {
  const payloadHash = auth.payloadHash;
  const chunked =
    payloadHash.startsWith('STREAMING-') ||
    (header(req, 'content-encoding') ?? '').split(',').some((e) => e.trim() === 'aws-chunked');
  const signedChunks = payloadHash.startsWith('STREAMING-AWS4-HMAC-SHA256-PAYLOAD');
  const withTrailer = payloadHash.endsWith('-TRAILER');
  const streamingModes = [
    'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
    'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
  ];
  if (chunked && !streamingModes.includes(payloadHash)) {
    throw s3Errors.invalidRequest(`aws-chunked bodies need x-amz-content-sha256 ${streamingModes.join(', ')}.`);
  }
  const length = declaredLength(req, chunked);
  if (length !== undefined && length > options.maxBytes) throw s3Errors.entityTooLarge(options.maxBytes);

  // Checksums the client will let us verify: headers now, or the one trailer it announces.
  const checksummers = new Map<ChecksumAlgorithm, Checksummer>();
  const headerChecksums = new Map<ChecksumAlgorithm, string>();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('x-amz-checksum-') && name !== 'x-amz-checksum-type' && name !== 'x-amz-checksum-algorithm') {
      const alg = checksumAlgorithmOf(name);
      headerChecksums.set(alg, String(value));
      checksummers.set(alg, createChecksummer(alg));
    }
  }
  const trailerName = header(req, 'x-amz-trailer')?.trim().toLowerCase();
  let trailerAlgorithm: ChecksumAlgorithm | undefined;
  if (trailerName) {
    if (!chunked || !withTrailer) throw s3Errors.invalidRequest('x-amz-trailer requires a STREAMING-*-TRAILER body.');
    trailerAlgorithm = checksumAlgorithmOf(trailerName);
    if (!checksummers.has(trailerAlgorithm)) checksummers.set(trailerAlgorithm, createChecksummer(trailerAlgorithm));
  }
  const sdkAlgorithm = header(req, 'x-amz-sdk-checksum-algorithm');
  if (sdkAlgorithm) {
    const alg = checksumAlgorithmOf(sdkAlgorithm);
    if (!checksummers.has(alg)) checksummers.set(alg, createChecksummer(alg));
  }
  const contentMd5 = header(req, 'content-md5');
  const md5 = contentMd5 !== undefined ? createHash('md5') : undefined;
  const verifySha256 = !chunked && /^[0-9a-f]{64}$/i.test(payloadHash) ? createHash('sha256') : undefined;
  if (!chunked && payloadHash !== UNSIGNED_PAYLOAD && !verifySha256) {
    throw s3Errors.invalidArgument('x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD or STREAMING-*.');
  }
  const onData = (data: Buffer) => {
    for (const c of checksummers.values()) c.update(data);
    md5?.update(data);
    verifySha256?.update(data);
  };

  // A body of unknown length (HTTP chunked) may grow to the limit: reserve that much.
  await options.reserve?.(length ?? options.maxBytes);
  options.onStart?.();
  let body: Buffer;
  try {
    if (chunked) {
      const out = Buffer.allocUnsafe(length!);
      const decoder = new AwsChunkedDecoder(out, signedChunks, auth, onData);
      let raw = 0;
      // Framing overhead is small; a raw body much larger than the decoded length is an abuse, not a client.
      const rawLimit = length! + 64 * 1024 + Math.ceil(length! / 1024) * 128;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        raw += chunk.length;
        if (raw > rawLimit) throw malformedChunks('framing larger than the decoded length allows');
        decoder.push(chunk);
      }
      if (!decoder.finished || decoder.offset !== length) throw s3Errors.incompleteBody();
      if (trailerAlgorithm && trailerName) {
        const value = decoder.trailers.get(trailerName);
        if (value === undefined) throw malformedChunks(`trailer ${trailerName} missing`);
        headerChecksums.set(trailerAlgorithm, value);
        if (signedChunks && auth.chunks) {
          if (!auth.chunks.verifyTrailer(`${trailerName}:${value}\n`, decoder.trailerSignature ?? '')) {
            throw s3Errors.signatureDoesNotMatch();
          }
        }
      }
      body = out;
    } else if (length !== undefined) {
      body = Buffer.allocUnsafe(length);
      let offset = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        if (offset + chunk.length > length) throw s3Errors.incompleteBody();
        chunk.copy(body, offset);
        offset += chunk.length;
        onData(chunk);
      }
      if (offset !== length) throw s3Errors.incompleteBody();
    } else {
      const parts: Buffer[] = [];
      let total = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > options.maxBytes) throw s3Errors.entityTooLarge(options.maxBytes);
        parts.push(chunk);
        onData(chunk);
      }
      body = Buffer.concat(parts, total);
    }
  } catch (error) {
    if (error instanceof S3Error) throw error;
    // The client went away or the socket timed out mid-body.
    throw s3Errors.incompleteBody();
  }

  if (verifySha256 && verifySha256.digest('hex') !== payloadHash.toLowerCase()) throw s3Errors.sha256Mismatch();
  if (md5 && contentMd5 !== undefined) {
    if (!/^[A-Za-z0-9+/]{22}==$/.test(contentMd5)) {
      throw new S3Error(400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.');
    }
    if (md5.digest('base64') !== contentMd5) throw s3Errors.badDigest();
  }
  const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
  for (const [alg, c] of checksummers) {
    const actual = c.digest();
    checksums[alg] = actual;
    const claimed = headerChecksums.get(alg);
    if (claimed !== undefined && claimed !== actual) {
      throw s3Errors.badDigest(`The ${ALGORITHM_NAMES[alg]} you specified did not match the calculated checksum.`);
    }
  }
  return { body, checksums };
}
