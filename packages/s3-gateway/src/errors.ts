import { isConnectionLoss, isFailoverError, isPgStateError, isTransientError, pgErrorKind } from '@pgstate/core';

/** An error answered to the client in S3's XML error format. `code` is S3's error code (clients switch on it). */
export class S3Error extends Error {
  readonly status: number;
  readonly code: string;
  /** Extra elements of the error document (e.g. Key, BucketName). */
  readonly details: Record<string, string>;

  constructor(status: number, code: string, message: string, details: Record<string, string> = {}) {
    super(message);
    this.name = 'S3Error';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const s3Errors = {
  accessDenied: (message = 'Access Denied') => new S3Error(403, 'AccessDenied', message),
  noSuchBucket: (bucket: string) =>
    new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) => new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key }),
  noSuchUpload: (uploadId: string) =>
    new S3Error(404, 'NoSuchUpload', 'The specified multipart upload does not exist.', { UploadId: uploadId }),
  preconditionFailed: (condition: string) =>
    new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
      Condition: condition,
    }),
  invalidArgument: (message: string) => new S3Error(400, 'InvalidArgument', message),
  invalidRequest: (message: string) => new S3Error(400, 'InvalidRequest', message),
  invalidRange: (size: number) =>
    new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', { ActualObjectSize: String(size) }),
  malformedXml: () =>
    new S3Error(
      400,
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema.',
    ),
  entityTooLarge: (max: number) =>
    new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size', {
      MaxSizeAllowed: String(max),
    }),
  entityTooSmall: () =>
    new S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.'),
  incompleteBody: () =>
    new S3Error(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length.'),
  badDigest: (message = 'The Content-MD5 or checksum value that you specified did not match what was received.') =>
    new S3Error(400, 'BadDigest', message),
  sha256Mismatch: () =>
    new S3Error(
      400,
      'XAmzContentSHA256Mismatch',
      'The provided x-amz-content-sha256 header does not match what was computed.',
    ),
  keyTooLong: (max: number) =>
    new S3Error(400, 'KeyTooLongError', 'Your key is too long', { MaxSizeAllowed: String(max) }),
  notImplemented: (what: string) =>
    new S3Error(
      501,
      'NotImplemented',
      `A header or query you provided implies functionality that is not implemented: ${what}`,
    ),
  methodNotAllowed: () =>
    new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.'),
  signatureDoesNotMatch: () =>
    new S3Error(
      403,
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    ),
  invalidAccessKeyId: () =>
    new S3Error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'),
  requestTimeTooSkewed: () =>
    new S3Error(
      403,
      'RequestTimeTooSkewed',
      'The difference between the request time and the current time is too large.',
    ),
  invalidPart: (message: string) => new S3Error(400, 'InvalidPart', message),
  invalidPartOrder: () =>
    new S3Error(
      400,
      'InvalidPartOrder',
      'The list of parts was not in ascending order. Parts must be ordered by part number.',
    ),
  missingContentLength: () =>
    new S3Error(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.'),
  requestTimeout: () =>
    new S3Error(
      400,
      'RequestTimeout',
      'Your socket connection to the server was not read from or written to within the timeout period.',
    ),
  serviceUnavailable: () =>
    new S3Error(503, 'ServiceUnavailable', 'The state database is unavailable right now; please retry.'),
  internal: () => new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.'),
};

/**
 * Maps what a bucket handler (or PostgreSQL under it) threw to the S3 error the client sees. Anything about the
 * database being unreachable becomes a retryable 503; unknown failures a retryable 500, never details.
 */
export function toS3Error(error: unknown, key?: string): S3Error {
  if (error instanceof S3Error) return error;
  // A lost or refused database connection (`write EPIPE`, "Connection terminated", 57P01...) is retryable, and so is
  // a read-only server (25006): during a failover, until the new primary is found.
  if (isConnectionLoss(error) || isFailoverError(error)) return s3Errors.serviceUnavailable();
  if (isPgStateError(error)) {
    switch (error.code) {
      case 'PRECONDITION_FAILED':
        return s3Errors.preconditionFailed('If-Match');
      case 'INVALID_INPUT':
      case 'INVALID_IDENTIFIER':
        return s3Errors.invalidArgument(error.message);
      case 'NOT_FOUND':
        return s3Errors.noSuchKey(key ?? '');
      case 'CONFLICT':
        return new S3Error(
          409,
          'OperationAborted',
          'A conflicting conditional operation is in progress; please retry.',
        );
      case 'PERMISSION_DENIED':
        return s3Errors.accessDenied('The state database refused the operation (permission denied).');
      case 'UNREACHABLE':
      case 'AUTH_FAILED':
      case 'TLS_FAILED':
      case 'TLS_REQUIRED':
      case 'DATABASE_MISSING':
      case 'LOCK_TIMEOUT':
      case 'LOCK_LOST':
      case 'QUERY_FAILED':
        return s3Errors.serviceUnavailable();
      default:
        return s3Errors.internal();
    }
  }
  // A race lost, a busy lock, a server short of resources or read-only (core's pgErrorKind): retrying may pass.
  if (isTransientError(error)) return s3Errors.serviceUnavailable();
  if (pgErrorKind(error) === 'undefined-table') {
    return new S3Error(
      500,
      'InternalError',
      'The state tables do not exist in this database yet: run `pgstate migrate`.',
    );
  }
  return s3Errors.internal();
}
