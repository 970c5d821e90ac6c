/** Routing alone: request line + headers in, route / operation / refusals out. No server, no database. */
import { describe, expect, it } from 'vitest';
import { S3Error } from '../src/errors.js';
import { operationOf, type RequestLine, refuseUnsupported, route, validateKey } from '../src/routing.js';

const served = new Set(['state', 'other']);
const at = (method: string, url: string, host = '127.0.0.1:9000'): RequestLine => ({
  method,
  url,
  headers: { host },
});
const routed = (method: string, url: string, host?: string) => route(at(method, url, host), (n) => served.has(n));

function refusal(work: () => void): string | undefined {
  try {
    work();
    return undefined;
  } catch (error) {
    return error instanceof S3Error ? `${error.status} ${error.code}: ${error.message}` : String(error);
  }
}

describe('route', () => {
  it('path style: bucket, decoded key, query pairs in order, raw path kept for SigV4', () => {
    const r = routed('GET', '/state/dir/a%20b%2Bc?list-type=2&prefix=a%2Fb&max-keys=10');
    expect(r).toMatchObject({ method: 'GET', bucket: 'state', key: 'dir/a b+c', rawPath: '/state/dir/a%20b%2Bc' });
    expect(r.queryList).toEqual([
      ['list-type', '2'],
      ['prefix', 'a/b'],
      ['max-keys', '10'],
    ]);
    expect(routed('GET', '/').bucket).toBeUndefined();
    expect(routed('GET', '/state/').key).toBeUndefined();
  });

  it('virtual-hosted style only for served buckets, never for IP literals', () => {
    expect(routed('GET', '/k/1', 'state.s3.local:9000')).toMatchObject({ bucket: 'state', key: 'k/1' });
    expect(routed('GET', '/k/1', 'unknown.s3.local')).toMatchObject({ bucket: 'k', key: '1' });
    expect(routed('GET', '/state/k', '127.0.0.1')).toMatchObject({ bucket: 'state', key: 'k' });
  });

  it('refuses what it cannot parse with 400 InvalidURI', () => {
    expect(refusal(() => routed('GET', '/state/%E0%A4%A'))).toMatch(/^400 InvalidURI/);
    expect(refusal(() => routed('GET', 'state/k'))).toMatch(/^400 InvalidURI/);
  });
});

describe('operationOf', () => {
  it('names requests as S3 does', () => {
    const name = (method: string, url: string, copy = false) => operationOf(routed(method, url), copy);
    expect(name('GET', '/')).toBe('ListBuckets');
    expect(name('GET', '/state?list-type=2')).toBe('ListObjectsV2');
    expect(name('GET', '/state')).toBe('ListObjects');
    expect(name('GET', '/state?uploads')).toBe('ListMultipartUploads');
    expect(name('POST', '/state?delete')).toBe('DeleteObjects');
    expect(name('PUT', '/state/k')).toBe('PutObject');
    expect(name('PUT', '/state/k', true)).toBe('CopyObject');
    expect(name('PUT', '/state/k?partNumber=1&uploadId=u')).toBe('UploadPart');
    expect(name('POST', '/state/k?uploads')).toBe('CreateMultipartUpload');
    expect(name('POST', '/state/k?uploadId=u')).toBe('CompleteMultipartUpload');
    expect(name('DELETE', '/state/k?uploadId=u')).toBe('AbortMultipartUpload');
    expect(name('GET', '/state/k?uploadId=u')).toBe('ListParts');
  });
});

describe('refuseUnsupported: one list for buckets and objects', () => {
  it('refuses bucket sub-resources on both, object-only ones on objects, and lists the bucket otherwise', () => {
    expect(refusal(() => refuseUnsupported(routed('GET', '/state?lifecycle'), 'bucket'))).toBe(
      '501 NotImplemented: A header or query you provided implies functionality that is not implemented: bucket ?lifecycle',
    );
    expect(refusal(() => refuseUnsupported(routed('PUT', '/state/k?lifecycle'), 'object'))).toMatch(
      /object \?lifecycle$/,
    );
    expect(refusal(() => refuseUnsupported(routed('PUT', '/state/k?tagging'), 'object'))).toMatch(/object \?tagging$/);
    expect(refusal(() => refuseUnsupported(routed('GET', '/state?tagging'), 'bucket'))).toMatch(/bucket \?tagging$/);
    // Object-only sub-resources on a bucket GET: the bucket is listed, as before the lists were merged.
    expect(refusal(() => refuseUnsupported(routed('GET', '/state?retention'), 'bucket'))).toBeUndefined();
    expect(refusal(() => refuseUnsupported(routed('PUT', '/state/k?retention'), 'object'))).toMatch(/retention$/);
    expect(refusal(() => refuseUnsupported(routed('GET', '/state?list-type=2&prefix=a'), 'bucket'))).toBeUndefined();
  });
});

describe('validateKey', () => {
  it('enforces the byte limit, no control characters, no dot segments', () => {
    expect(refusal(() => validateKey('a/b.c/..d', 1024))).toBeUndefined();
    expect(refusal(() => validateKey('é'.repeat(6), 11))).toMatch(/^400 KeyTooLongError/);
    expect(refusal(() => validateKey('a\u0000b', 1024))).toMatch(/control characters/);
    expect(refusal(() => validateKey('a/../b', 1024))).toMatch(/path segments/);
  });
});
