import { PgStateError, isPgStateError, quoteIdentifier, validateIdentifier } from "@pgstate/core";
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import https from "node:https";
import zlib from "node:zlib";
import { XMLBuilder, XMLParser, XMLValidator } from "fast-xml-parser";
//#region src/errors.ts
/** An error answered to the client in S3's XML error format. `code` is S3's error code (clients switch on it). */
var S3Error = class extends Error {
	status;
	code;
	/** Extra elements of the error document (e.g. Key, BucketName). */
	details;
	constructor(status, code, message, details = {}) {
		super(message);
		this.name = "S3Error";
		this.status = status;
		this.code = code;
		this.details = details;
	}
};
const s3Errors = {
	accessDenied: (message = "Access Denied") => new S3Error(403, "AccessDenied", message),
	noSuchBucket: (bucket) => new S3Error(404, "NoSuchBucket", "The specified bucket does not exist", { BucketName: bucket }),
	noSuchKey: (key) => new S3Error(404, "NoSuchKey", "The specified key does not exist.", { Key: key }),
	noSuchUpload: (uploadId) => new S3Error(404, "NoSuchUpload", "The specified multipart upload does not exist.", { UploadId: uploadId }),
	preconditionFailed: (condition) => new S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", { Condition: condition }),
	invalidArgument: (message) => new S3Error(400, "InvalidArgument", message),
	invalidRequest: (message) => new S3Error(400, "InvalidRequest", message),
	invalidRange: (size) => new S3Error(416, "InvalidRange", "The requested range is not satisfiable", { ActualObjectSize: String(size) }),
	malformedXml: () => new S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."),
	entityTooLarge: (max) => new S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", { MaxSizeAllowed: String(max) }),
	entityTooSmall: () => new S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size."),
	incompleteBody: () => new S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length."),
	badDigest: (message = "The Content-MD5 or checksum value that you specified did not match what was received.") => new S3Error(400, "BadDigest", message),
	sha256Mismatch: () => new S3Error(400, "XAmzContentSHA256Mismatch", "The provided x-amz-content-sha256 header does not match what was computed."),
	keyTooLong: (max) => new S3Error(400, "KeyTooLongError", "Your key is too long", { MaxSizeAllowed: String(max) }),
	notImplemented: (what) => new S3Error(501, "NotImplemented", `A header or query you provided implies functionality that is not implemented: ${what}`),
	methodNotAllowed: () => new S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource."),
	signatureDoesNotMatch: () => new S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."),
	invalidAccessKeyId: () => new S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
	requestTimeTooSkewed: () => new S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."),
	invalidPart: (message) => new S3Error(400, "InvalidPart", message),
	invalidPartOrder: () => new S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number."),
	missingContentLength: () => new S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header."),
	requestTimeout: () => new S3Error(400, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period."),
	serviceUnavailable: () => new S3Error(503, "ServiceUnavailable", "The state database is unavailable right now; please retry."),
	internal: () => new S3Error(500, "InternalError", "We encountered an internal error. Please try again.")
};
/** PostgreSQL error classes that mean "the connection or server went away": retryable for the client. */
const RETRYABLE_SQLSTATE = /^(08|53|57P|40001|40P01|55P03)/;
/**
* Maps what a bucket handler (or PostgreSQL under it) threw to the S3 error the client sees. Anything about the
* database being unreachable becomes a retryable 503; unknown failures a retryable 500, never details.
*/
function toS3Error(error, key) {
	if (error instanceof S3Error) return error;
	if (isPgStateError(error)) switch (error.code) {
		case "PRECONDITION_FAILED": return s3Errors.preconditionFailed("If-Match");
		case "INVALID_INPUT":
		case "INVALID_IDENTIFIER": return s3Errors.invalidArgument(error.message);
		case "NOT_FOUND": return s3Errors.noSuchKey(key ?? "");
		case "CONFLICT": return new S3Error(409, "OperationAborted", "A conflicting conditional operation is in progress; please retry.");
		case "PERMISSION_DENIED": return s3Errors.accessDenied("The state database refused the operation (permission denied).");
		case "UNREACHABLE":
		case "AUTH_FAILED":
		case "TLS_FAILED":
		case "TLS_REQUIRED":
		case "DATABASE_MISSING":
		case "LOCK_TIMEOUT":
		case "LOCK_LOST":
		case "QUERY_FAILED": return s3Errors.serviceUnavailable();
		default: return s3Errors.internal();
	}
	const sqlState = error?.code;
	if (typeof sqlState === "string" && RETRYABLE_SQLSTATE.test(sqlState)) return s3Errors.serviceUnavailable();
	const message = error instanceof Error ? error.message : "";
	if (/Connection terminated|ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message)) return s3Errors.serviceUnavailable();
	return s3Errors.internal();
}
//#endregion
//#region src/checksums.ts
const CHECKSUM_ALGORITHMS = [
	"crc32",
	"crc32c",
	"sha1",
	"sha256"
];
const CRC32C_TABLE = (() => {
	const table = new Uint32Array(256);
	for (let i = 0; i < 256; i++) {
		let c = i;
		for (let k = 0; k < 8; k++) c = c & 1 ? 2197175160 ^ c >>> 1 : c >>> 1;
		table[i] = c >>> 0;
	}
	return table;
})();
function crc32c(data, previous = 0) {
	let crc = ~previous >>> 0;
	for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]) & 255] ^ crc >>> 8;
	return ~crc >>> 0;
}
function uint32Base64(value) {
	const b = Buffer.alloc(4);
	b.writeUInt32BE(value >>> 0);
	return b.toString("base64");
}
function createChecksummer(algorithm) {
	if (algorithm === "crc32" || algorithm === "crc32c") {
		let value = 0;
		const step = algorithm === "crc32" ? (d, p) => zlib.crc32(d, p) : crc32c;
		return {
			update: (data) => {
				value = step(data, value);
			},
			digest: () => uint32Base64(value)
		};
	}
	const hash = createHash(algorithm);
	return {
		update: (data) => {
			hash.update(data);
		},
		digest: () => hash.digest("base64")
	};
}
function checksum(algorithm, data) {
	const c = createChecksummer(algorithm);
	c.update(data);
	return c.digest();
}
function md5Hex(data) {
	return createHash("md5").update(data).digest("hex");
}
function sha256Hex(data) {
	return createHash("sha256").update(data).digest("hex");
}
//#endregion
//#region src/sigv4.ts
/**
* AWS Signature Version 4 verification for S3 requests: the Authorization-header form, the presigned-query form and
* the per-chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies. The canonical request is rebuilt from the
* exact header list the client says it signed (a signer library decides that list itself, so it cannot verify).
*/
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ALGORITHM = "AWS4-HMAC-SHA256";
const MAX_PRESIGN_SECONDS = 168 * 3600;
/** S3's URI encoding: everything but unreserved characters is %XX-encoded (UTF-8). */
function awsUriEncode(value) {
	return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
function hmac(key, data) {
	return createHmac("sha256", key).update(data, "utf8").digest();
}
const signingKeyCache = /* @__PURE__ */ new Map();
function signingKey(secret, date, region, service) {
	const cacheKey = `${date}/${region}/${service}/${sha256Hex(secret)}`;
	let key = signingKeyCache.get(cacheKey);
	if (!key) {
		key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), "aws4_request");
		if (signingKeyCache.size > 64) signingKeyCache.clear();
		signingKeyCache.set(cacheKey, key);
	}
	return key;
}
function sameSignature(expected, given) {
	const a = Buffer.from(expected, "utf8");
	const b = Buffer.from(given.toLowerCase(), "utf8");
	return a.length === b.length && timingSafeEqual(a, b);
}
function headerValue(headers, name) {
	const value = headers[name];
	if (value === void 0) return void 0;
	return Array.isArray(value) ? value.join(",") : value;
}
function canonicalPath(rawPath) {
	return rawPath.split("/").map((segment) => awsUriEncode(decodeURIComponent(segment))).join("/");
}
function canonicalQuery(query, exclude) {
	return query.filter(([name]) => name !== exclude).map(([name, value]) => [awsUriEncode(name), awsUriEncode(value)]).sort(([an, av], [bn, bv]) => an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0).map(([name, value]) => `${name}=${value}`).join("&");
}
function canonicalHeaders(headers, signed) {
	return signed.map((name) => {
		const value = headerValue(headers, name);
		if (value === void 0) throw s3Errors.signatureDoesNotMatch();
		return `${name}:${value.trim().replace(/\s+/g, " ")}\n`;
	}).join("");
}
/** Parses `20240102T030405Z`. */
function parseAmzDate(value) {
	const m = value ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value) : null;
	if (!m) throw new S3Error(403, "AccessDenied", "AWS authentication requires a valid X-Amz-Date (YYYYMMDDTHHMMSSZ).");
	return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}
function parseCredential(value) {
	const parts = value?.split("/") ?? [];
	if (parts.length !== 5 || parts[4] !== "aws4_request" || !/^\d{8}$/.test(parts[1])) throw new S3Error(400, "AuthorizationHeaderMalformed", "The authorization credential scope is malformed.");
	if (parts[3] !== "s3") throw new S3Error(400, "AuthorizationHeaderMalformed", `The credential scope names service "${parts[3]}", not "s3".`);
	return {
		accessKeyId: parts[0],
		date: parts[1],
		region: parts[2],
		service: parts[3]
	};
}
/** Verifies the signature of each `aws-chunked` chunk and of the trailer, each chained to the one before. */
var ChunkSignatureChain = class {
	previous;
	constructor(key, amzDate, scope, seedSignature) {
		this.key = key;
		this.amzDate = amzDate;
		this.scope = scope;
		this.previous = seedSignature;
	}
	verifyChunk(dataSha256Hex, signature) {
		const expected = hmac(this.key, `${ALGORITHM}-PAYLOAD\n${this.amzDate}\n${this.scope}\n${this.previous}\n${EMPTY_SHA256}\n${dataSha256Hex}`).toString("hex");
		if (!sameSignature(expected, signature)) return false;
		this.previous = expected;
		return true;
	}
	verifyTrailer(canonicalTrailer, signature) {
		return sameSignature(hmac(this.key, `${ALGORITHM}-TRAILER\n${this.amzDate}\n${this.scope}\n${this.previous}\n${sha256Hex(canonicalTrailer)}`).toString("hex"), signature);
	}
};
/**
* Verifies a request's SigV4 signature. Throws the S3 error a real S3 would answer (AccessDenied for unsigned
* requests, InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, expired presigned URLs).
*/
function verifyRequest(target, options) {
	const open = options.credentials.size === 0;
	const authorization = headerValue(target.headers, "authorization");
	const presignAlgorithm = target.query.find(([n]) => n === "X-Amz-Algorithm")?.[1];
	const contentSha = headerValue(target.headers, "x-amz-content-sha256");
	if (!authorization && presignAlgorithm === void 0) {
		if (open) return {
			accessKeyId: void 0,
			payloadHash: contentSha ?? "UNSIGNED-PAYLOAD"
		};
		throw s3Errors.accessDenied("Anonymous requests are not allowed: sign the request with AWS Signature Version 4.");
	}
	let scope;
	let signedHeaders;
	let signature;
	let amzDate;
	let payloadHash;
	let excludeFromQuery;
	let expiresSeconds;
	if (authorization) {
		if (!authorization.startsWith(`${ALGORITHM} `)) {
			if (open) return {
				accessKeyId: void 0,
				payloadHash: contentSha ?? "UNSIGNED-PAYLOAD"
			};
			throw new S3Error(400, "InvalidRequest", "Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported.");
		}
		const fields = /* @__PURE__ */ new Map();
		for (const part of authorization.slice(17).split(",")) {
			const eq = part.indexOf("=");
			if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
		}
		scope = parseCredential(fields.get("Credential"));
		signedHeaders = (fields.get("SignedHeaders") ?? "").split(";").filter(Boolean);
		signature = fields.get("Signature") ?? "";
		amzDate = headerValue(target.headers, "x-amz-date") ?? "";
		if (!contentSha) throw new S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
		payloadHash = contentSha;
	} else {
		if (presignAlgorithm !== ALGORITHM) throw new S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".");
		const q = (name) => target.query.find(([n]) => n === name)?.[1];
		scope = parseCredential(q("X-Amz-Credential"));
		signedHeaders = (q("X-Amz-SignedHeaders") ?? "").split(";").filter(Boolean);
		signature = q("X-Amz-Signature") ?? "";
		amzDate = q("X-Amz-Date") ?? "";
		payloadHash = q("X-Amz-Content-Sha256") ?? "UNSIGNED-PAYLOAD";
		excludeFromQuery = "X-Amz-Signature";
		expiresSeconds = Number(q("X-Amz-Expires"));
		if (!Number.isInteger(expiresSeconds) || expiresSeconds < 1 || expiresSeconds > MAX_PRESIGN_SECONDS) throw new S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a whole number of seconds between 1 and 604800.");
	}
	const secret = options.credentials.get(scope.accessKeyId);
	if (open) return {
		accessKeyId: scope.accessKeyId,
		payloadHash
	};
	if (secret === void 0) throw s3Errors.invalidAccessKeyId();
	if (!signedHeaders.includes("host")) throw s3Errors.signatureDoesNotMatch();
	if (!/^[0-9a-fA-F]{64}$/.test(signature)) throw s3Errors.signatureDoesNotMatch();
	const date = parseAmzDate(amzDate);
	if (amzDate.slice(0, 8) !== scope.date) throw new S3Error(400, "AuthorizationHeaderMalformed", "The credential scope date does not match X-Amz-Date.");
	const now = options.now.getTime();
	if (expiresSeconds === void 0) {
		if (Math.abs(now - date.getTime()) > options.maxSkewMs) throw s3Errors.requestTimeTooSkewed();
	} else {
		if (date.getTime() - now > options.maxSkewMs) throw s3Errors.requestTimeTooSkewed();
		if (now > date.getTime() + expiresSeconds * 1e3) throw s3Errors.accessDenied("Request has expired");
	}
	let rest;
	let paths;
	try {
		rest = [
			canonicalQuery(target.query, excludeFromQuery),
			canonicalHeaders(target.headers, signedHeaders),
			signedHeaders.join(";"),
			payloadHash
		].join("\n");
		const normalised = canonicalPath(target.rawPath);
		paths = normalised === target.rawPath ? [normalised] : [target.rawPath, normalised];
	} catch (error) {
		if (error instanceof S3Error) throw error;
		throw new S3Error(400, "InvalidURI", "Could not parse the specified URI.");
	}
	const scopeText = `${scope.date}/${scope.region}/${scope.service}/aws4_request`;
	const key = signingKey(secret, scope.date, scope.region, scope.service);
	const expected = paths.map((path) => hmac(key, `${ALGORITHM}\n${amzDate}\n${scopeText}\n${sha256Hex(`${target.method}\n${path}\n${rest}`)}`).toString("hex")).find((candidate) => sameSignature(candidate, signature));
	if (!expected) throw s3Errors.signatureDoesNotMatch();
	return {
		accessKeyId: scope.accessKeyId,
		payloadHash,
		chunks: new ChunkSignatureChain(key, amzDate, scopeText, expected)
	};
}
//#endregion
//#region src/body.ts
/**
* Reads a request body into one exactly-sized buffer, decoding `aws-chunked` framing (signed chunks, unsigned chunks
* with trailing checksums), and verifies every integrity claim the client made before anything is written:
* x-amz-content-sha256, Content-MD5, x-amz-checksum-* headers or trailers, chunk and trailer signatures.
*/
const MAX_LINE = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;
const ALGORITHM_NAMES = {
	crc32: "CRC32",
	crc32c: "CRC32C",
	sha1: "SHA1",
	sha256: "SHA256"
};
function header(req, name) {
	const v = req.headers[name];
	return Array.isArray(v) ? v.join(",") : v;
}
function malformedChunks(detail) {
	return new S3Error(400, "InvalidRequest", `Malformed aws-chunked body: ${detail}.`);
}
function checksumAlgorithmOf(name) {
	const alg = name.toLowerCase().replace(/^x-amz-checksum-/, "");
	if (!CHECKSUM_ALGORITHMS.includes(alg)) throw s3Errors.invalidRequest(`Checksum algorithm "${name}" is not supported by this endpoint; use CRC32, CRC32C, SHA1 or SHA256.`);
	return alg;
}
/** Incremental parser of the aws-chunked framing; writes decoded bytes straight into `out`. */
var AwsChunkedDecoder = class {
	state = "size";
	line = [];
	lineLength = 0;
	remaining = 0;
	chunkSignature;
	chunkHash;
	trailerBytes = 0;
	crlfSeen = 0;
	offset = 0;
	trailers = /* @__PURE__ */ new Map();
	trailerSignature;
	constructor(out, signed, auth, onData) {
		this.out = out;
		this.signed = signed;
		this.auth = auth;
		this.onData = onData;
	}
	push(input) {
		let pos = 0;
		while (pos < input.length) switch (this.state) {
			case "size":
			case "trailer": {
				const nl = input.indexOf(10, pos);
				const end = nl === -1 ? input.length : nl + 1;
				this.lineLength += end - pos;
				if (this.lineLength > MAX_LINE) throw malformedChunks("line too long");
				this.line.push(input.subarray(pos, end));
				pos = end;
				if (nl !== -1) this.endLine();
				break;
			}
			case "data": {
				const n = Math.min(this.remaining, input.length - pos);
				const slice = input.subarray(pos, pos + n);
				slice.copy(this.out, this.offset);
				this.offset += n;
				this.chunkHash?.update(slice);
				this.onData(slice);
				this.remaining -= n;
				pos += n;
				if (this.remaining === 0) this.state = "data-crlf";
				break;
			}
			case "data-crlf": {
				const expected = this.crlfSeen === 0 ? 13 : 10;
				if (input[pos] !== expected) throw malformedChunks("chunk data not followed by CRLF");
				pos++;
				this.crlfSeen++;
				if (this.crlfSeen === 2) {
					this.crlfSeen = 0;
					this.finishChunk();
					this.state = "size";
				}
				break;
			}
			case "done": throw malformedChunks("bytes after the final chunk");
		}
	}
	takeLine() {
		const text = Buffer.concat(this.line).toString("latin1");
		this.line = [];
		this.lineLength = 0;
		if (!text.endsWith("\r\n")) throw malformedChunks("line not terminated by CRLF");
		return text.slice(0, -2);
	}
	endLine() {
		const text = this.takeLine();
		if (this.state === "size") {
			const [sizeText, ...extensions] = text.split(";");
			if (!sizeText || !/^[0-9a-fA-F]{1,12}$/.test(sizeText)) throw malformedChunks("bad chunk size");
			const size = Number.parseInt(sizeText, 16);
			if (this.offset + size > this.out.length) throw malformedChunks("chunks exceed x-amz-decoded-content-length");
			this.chunkSignature = void 0;
			for (const ext of extensions) if (ext.startsWith("chunk-signature=")) this.chunkSignature = ext.slice(16);
			if (this.signed && !this.chunkSignature) throw malformedChunks("missing chunk-signature");
			this.chunkHash = this.signed ? createHash("sha256") : void 0;
			this.remaining = size;
			if (size === 0) {
				this.finishChunk();
				this.state = "trailer";
			} else this.state = "data";
			return;
		}
		this.trailerBytes += text.length + 2;
		if (this.trailerBytes > MAX_TRAILER_BYTES) throw malformedChunks("trailer too large");
		if (text === "") {
			this.state = "done";
			return;
		}
		const colon = text.indexOf(":");
		if (colon <= 0) throw malformedChunks("bad trailer line");
		const name = text.slice(0, colon).trim().toLowerCase();
		const value = text.slice(colon + 1).trim();
		if (name === "x-amz-trailer-signature") this.trailerSignature = value;
		else this.trailers.set(name, value);
	}
	finishChunk() {
		if (!this.signed || !this.auth.chunks) return;
		const digest = (this.chunkHash ?? createHash("sha256")).digest("hex");
		if (!this.auth.chunks.verifyChunk(digest, this.chunkSignature ?? "")) throw s3Errors.signatureDoesNotMatch();
	}
	get finished() {
		return this.state === "done";
	}
};
/** The declared body length, or undefined for a body sent with HTTP chunked transfer encoding. */
function declaredLength(req, chunked) {
	const text = chunked ? header(req, "x-amz-decoded-content-length") : header(req, "content-length");
	if (text === void 0) {
		if (chunked) throw s3Errors.missingContentLength();
		if (header(req, "transfer-encoding")) return void 0;
		return 0;
	}
	if (!/^\d{1,15}$/.test(text)) throw s3Errors.invalidArgument("The body length header is not a valid number.");
	return Number(text);
}
async function readBody(req, auth, options) {
	const payloadHash = auth.payloadHash;
	const chunked = payloadHash.startsWith("STREAMING-") || (header(req, "content-encoding") ?? "").split(",").some((e) => e.trim() === "aws-chunked");
	const signedChunks = payloadHash.startsWith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
	const withTrailer = payloadHash.endsWith("-TRAILER");
	const streamingModes = [
		"STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
		"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
		"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	];
	if (chunked && !streamingModes.includes(payloadHash)) throw s3Errors.invalidRequest(`aws-chunked bodies need x-amz-content-sha256 ${streamingModes.join(", ")}.`);
	const length = declaredLength(req, chunked);
	if (length !== void 0 && length > options.maxBytes) throw s3Errors.entityTooLarge(options.maxBytes);
	const checksummers = /* @__PURE__ */ new Map();
	const headerChecksums = /* @__PURE__ */ new Map();
	for (const [name, value] of Object.entries(req.headers)) if (name.startsWith("x-amz-checksum-") && name !== "x-amz-checksum-type" && name !== "x-amz-checksum-algorithm") {
		const alg = checksumAlgorithmOf(name);
		headerChecksums.set(alg, String(value));
		checksummers.set(alg, createChecksummer(alg));
	}
	const trailerName = header(req, "x-amz-trailer")?.trim().toLowerCase();
	let trailerAlgorithm;
	if (trailerName) {
		if (!chunked || !withTrailer) throw s3Errors.invalidRequest("x-amz-trailer requires a STREAMING-*-TRAILER body.");
		trailerAlgorithm = checksumAlgorithmOf(trailerName);
		if (!checksummers.has(trailerAlgorithm)) checksummers.set(trailerAlgorithm, createChecksummer(trailerAlgorithm));
	}
	const sdkAlgorithm = header(req, "x-amz-sdk-checksum-algorithm");
	if (sdkAlgorithm) {
		const alg = checksumAlgorithmOf(sdkAlgorithm);
		if (!checksummers.has(alg)) checksummers.set(alg, createChecksummer(alg));
	}
	const contentMd5 = header(req, "content-md5");
	const md5 = contentMd5 !== void 0 ? createHash("md5") : void 0;
	const verifySha256 = !chunked && /^[0-9a-f]{64}$/i.test(payloadHash) ? createHash("sha256") : void 0;
	if (!chunked && payloadHash !== "UNSIGNED-PAYLOAD" && !verifySha256) throw s3Errors.invalidArgument("x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD or STREAMING-*.");
	const onData = (data) => {
		for (const c of checksummers.values()) c.update(data);
		md5?.update(data);
		verifySha256?.update(data);
	};
	options.onStart?.();
	let body;
	try {
		if (chunked) {
			const out = Buffer.allocUnsafe(length);
			const decoder = new AwsChunkedDecoder(out, signedChunks, auth, onData);
			let raw = 0;
			const rawLimit = length + 64 * 1024 + Math.ceil(length / 1024) * 128;
			for await (const chunk of req) {
				raw += chunk.length;
				if (raw > rawLimit) throw malformedChunks("framing larger than the decoded length allows");
				decoder.push(chunk);
			}
			if (!decoder.finished || decoder.offset !== length) throw s3Errors.incompleteBody();
			if (trailerAlgorithm && trailerName) {
				const value = decoder.trailers.get(trailerName);
				if (value === void 0) throw malformedChunks(`trailer ${trailerName} missing`);
				headerChecksums.set(trailerAlgorithm, value);
				if (signedChunks && auth.chunks) {
					if (!auth.chunks.verifyTrailer(`${trailerName}:${value}\n`, decoder.trailerSignature ?? "")) throw s3Errors.signatureDoesNotMatch();
				}
			}
			body = out;
		} else if (length !== void 0) {
			body = Buffer.allocUnsafe(length);
			let offset = 0;
			for await (const chunk of req) {
				if (offset + chunk.length > length) throw s3Errors.incompleteBody();
				chunk.copy(body, offset);
				offset += chunk.length;
				onData(chunk);
			}
			if (offset !== length) throw s3Errors.incompleteBody();
		} else {
			const parts = [];
			let total = 0;
			for await (const chunk of req) {
				total += chunk.length;
				if (total > options.maxBytes) throw s3Errors.entityTooLarge(options.maxBytes);
				parts.push(chunk);
				onData(chunk);
			}
			body = Buffer.concat(parts, total);
		}
	} catch (error) {
		if (error instanceof S3Error) throw error;
		throw s3Errors.incompleteBody();
	}
	if (verifySha256 && verifySha256.digest("hex") !== payloadHash.toLowerCase()) throw s3Errors.sha256Mismatch();
	if (md5 && contentMd5 !== void 0) {
		if (!/^[A-Za-z0-9+/]{22}==$/.test(contentMd5)) throw new S3Error(400, "InvalidDigest", "The Content-MD5 you specified is not valid.");
		if (md5.digest("base64") !== contentMd5) throw s3Errors.badDigest();
	}
	const checksums = {};
	for (const [alg, c] of checksummers) {
		const actual = c.digest();
		checksums[alg] = actual;
		const claimed = headerChecksums.get(alg);
		if (claimed !== void 0 && claimed !== actual) throw s3Errors.badDigest(`The ${ALGORITHM_NAMES[alg]} you specified did not match the calculated checksum.`);
	}
	return {
		body,
		checksums
	};
}
//#endregion
//#region src/logger.ts
/** JSON lines on stderr, one record per line. */
const jsonStderrLogger = (record) => {
	process.stderr.write(`${JSON.stringify({
		time: (/* @__PURE__ */ new Date()).toISOString(),
		...record
	})}\n`);
};
const silentLogger = () => {};
//#endregion
//#region src/uploads.ts
/**
* In-flight multipart uploads live in two gateway-owned tables, not in gateway memory: a gateway stays stateless,
* so parts uploaded through one gateway can be completed through another, and a restart loses nothing. Bucket
* handlers only ever see the finished object through one atomic `putObject`, so an upload that dies half-way leaves
* no trace in the state tables (abandoned uploads expire).
*/
var MultipartStore = class {
	pool;
	uploads;
	parts;
	lockName;
	expireAfterSeconds;
	ready;
	constructor(options) {
		this.pool = options.pool;
		const prefix = options.schema ? `${quoteIdentifier(validateIdentifier(options.schema, "schema"))}.` : "";
		this.uploads = `${prefix}pgstate_s3_uploads`;
		this.parts = `${prefix}pgstate_s3_upload_parts`;
		this.lockName = `${options.schema ?? ""}.pgstate_s3_uploads`;
		this.expireAfterSeconds = Math.round((options.expireAfterMs ?? 168 * 3600 * 1e3) / 1e3);
	}
	/** Creates the tables on first use; concurrent gateways serialise on an advisory lock so DDL never races. */
	ensureTables() {
		this.ready ??= (async () => {
			const client = await this.pool.connect();
			try {
				if ((await client.query("SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok", [this.uploads, this.parts])).rows[0]?.ok) return;
				await client.query("BEGIN");
				await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [this.lockName]);
				await client.query(`CREATE TABLE IF NOT EXISTS ${this.uploads} (
          upload_id text PRIMARY KEY,
          bucket text NOT NULL,
          key text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )`);
				await client.query(`CREATE TABLE IF NOT EXISTS ${this.parts} (
          upload_id text NOT NULL REFERENCES ${this.uploads} (upload_id) ON DELETE CASCADE,
          part_number integer NOT NULL,
          etag text NOT NULL,
          size bigint NOT NULL,
          data bytea NOT NULL,
          uploaded_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (upload_id, part_number)
        )`);
				await client.query("COMMIT");
			} catch (error) {
				await client.query("ROLLBACK").catch(() => {});
				throw new PgStateError("QUERY_FAILED", "Could not create the multipart upload tables.", {
					fix: "Grant CREATE on the schema to the gateway role once, or create the tables with `pgstate migrate`.",
					cause: error
				});
			} finally {
				client.release();
			}
		})().catch((error) => {
			this.ready = void 0;
			throw error;
		});
		return this.ready;
	}
	async create(bucket, key, uploadId) {
		await this.ensureTables();
		await this.pool.query(`DELETE FROM ${this.uploads} WHERE created_at < now() - make_interval(secs => $1)`, [this.expireAfterSeconds]);
		await this.pool.query(`INSERT INTO ${this.uploads} (upload_id, bucket, key) VALUES ($1, $2, $3)`, [
			uploadId,
			bucket,
			key
		]);
	}
	async putPart(bucket, key, uploadId, partNumber, data) {
		await this.ensureTables();
		const etag = md5Hex(data);
		try {
			if ((await this.pool.query(`INSERT INTO ${this.parts} (upload_id, part_number, etag, size, data)
         SELECT upload_id, $4, $5, $6, $7 FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3
         ON CONFLICT (upload_id, part_number)
         DO UPDATE SET etag = EXCLUDED.etag, size = EXCLUDED.size, data = EXCLUDED.data, uploaded_at = now()`, [
				uploadId,
				bucket,
				key,
				partNumber,
				etag,
				data.length,
				data
			])).rowCount !== 1) throw s3Errors.noSuchUpload(uploadId);
		} catch (error) {
			if (error.code === "23503") throw s3Errors.noSuchUpload(uploadId);
			throw error;
		}
		return etag;
	}
	async requireUpload(bucket, key, uploadId) {
		await this.ensureTables();
		if ((await this.pool.query(`SELECT 1 FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3`, [
			uploadId,
			bucket,
			key
		])).rowCount !== 1) throw s3Errors.noSuchUpload(uploadId);
	}
	async listParts(bucket, key, uploadId, afterPart, maxParts) {
		await this.requireUpload(bucket, key, uploadId);
		const result = await this.pool.query(`SELECT part_number, etag, size, uploaded_at FROM ${this.parts}
       WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3`, [
			uploadId,
			afterPart,
			maxParts + 1
		]);
		return {
			parts: result.rows.slice(0, maxParts).map((r) => ({
				partNumber: r.part_number,
				etag: r.etag,
				size: Number(r.size),
				lastModified: r.uploaded_at
			})),
			truncated: result.rows.length > maxParts
		};
	}
	async listUploads(bucket, prefix, maxUploads) {
		await this.ensureTables();
		const result = await this.pool.query(`SELECT upload_id, key, created_at FROM ${this.uploads}
       WHERE bucket = $1 AND left(key, length($2)) = $2 ORDER BY key COLLATE "C", created_at LIMIT $3`, [
			bucket,
			prefix,
			maxUploads + 1
		]);
		return {
			uploads: result.rows.slice(0, maxUploads).map((r) => ({
				uploadId: r.upload_id,
				key: r.key,
				initiated: r.created_at
			})),
			truncated: result.rows.length > maxUploads
		};
	}
	/**
	* Concatenates the listed parts into one buffer after checking them the way S3 does (ascending numbers, known
	* ETags, every part but the last at least `minPartBytes`). Parts are fetched one at a time, so only the result
	* is ever whole in memory.
	*/
	async assemble(bucket, key, uploadId, requested, limits) {
		await this.requireUpload(bucket, key, uploadId);
		if (requested.length === 0) throw s3Errors.malformedXml();
		const stored = await this.pool.query(`SELECT part_number, etag, size FROM ${this.parts} WHERE upload_id = $1`, [uploadId]);
		const byNumber = new Map(stored.rows.map((r) => [r.part_number, r]));
		let total = 0;
		let previous = 0;
		for (const want of requested) {
			if (want.partNumber <= previous) throw s3Errors.invalidPartOrder();
			previous = want.partNumber;
		}
		for (const [index, want] of requested.entries()) {
			const have = byNumber.get(want.partNumber);
			if (!have || have.etag !== want.etag) throw s3Errors.invalidPart(`One or more of the specified parts could not be found or its entity tag did not match (part ${want.partNumber}).`);
			const size = Number(have.size);
			if (index < requested.length - 1 && size < limits.minPartBytes) throw s3Errors.entityTooSmall();
			total += size;
		}
		if (total > limits.maxBytes) throw s3Errors.entityTooLarge(limits.maxBytes);
		const out = Buffer.allocUnsafe(total);
		let offset = 0;
		for (const want of requested) {
			const data = (await this.pool.query(`SELECT data FROM ${this.parts} WHERE upload_id = $1 AND part_number = $2 AND etag = $3`, [
				uploadId,
				want.partNumber,
				want.etag
			])).rows[0]?.data;
			if (!data || offset + data.length > total) throw new S3Error(409, "OperationAborted", "A part was replaced while the upload was being completed; retry.");
			data.copy(out, offset);
			offset += data.length;
		}
		if (offset !== total) throw new S3Error(409, "OperationAborted", "A part changed during completion; retry.");
		return out;
	}
	/** Deletes an upload and its parts; false when it did not exist. */
	async remove(bucket, key, uploadId) {
		await this.ensureTables();
		return (await this.pool.query(`DELETE FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3`, [
			uploadId,
			bucket,
			key
		])).rowCount === 1;
	}
};
//#endregion
//#region src/xml.ts
const S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/";
const builder = new XMLBuilder({
	ignoreAttributes: false,
	attributeNamePrefix: "@_"
});
const parser = new XMLParser({
	ignoreAttributes: true,
	parseTagValue: false,
	trimValues: false,
	removeNSPrefix: true,
	processEntities: false,
	isArray: (name) => name === "Object" || name === "Part"
});
/** One S3 XML document: `<Root xmlns="...">...</Root>`. Undefined fields are left out. */
function s3Xml(root, body, namespaced = true) {
	return builder.build({
		"?xml": {
			"@_version": "1.0",
			"@_encoding": "UTF-8"
		},
		[root]: namespaced ? {
			"@_xmlns": S3_NAMESPACE,
			...body
		} : body
	});
}
/** Parses a request document, insisting on the expected root element; anything else is MalformedXML. */
function parseS3Xml(text, root) {
	if (/<!DOCTYPE|<!ENTITY/i.test(text) || XMLValidator.validate(text) !== true) throw s3Errors.malformedXml();
	const element = parser.parse(text)[root];
	if (!element || typeof element !== "object") throw s3Errors.malformedXml();
	return element;
}
const NAMED = {
	amp: "&",
	lt: "<",
	gt: ">",
	quot: "\"",
	apos: "'"
};
/** A text node's value with XML entity and character references decoded; anything else is MalformedXML. */
function text(value) {
	if (typeof value !== "string") return void 0;
	return value.replace(/&([^;&\s]{0,10});?/g, (whole, name) => {
		if (!whole.endsWith(";")) throw s3Errors.malformedXml();
		const named = NAMED[name];
		if (named !== void 0) return named;
		const m = /^#(x[0-9a-fA-F]{1,6}|[0-9]{1,7})$/.exec(name);
		const code = m ? m[1].startsWith("x") ? Number.parseInt(m[1].slice(1), 16) : Number(m[1]) : NaN;
		if (!(code > 0 && code <= 1114111) || code >= 55296 && code <= 57343) throw s3Errors.malformedXml();
		return String.fromCodePoint(code);
	});
}
//#endregion
//#region src/gateway.ts
/**
* An S3-compatible HTTP endpoint whose buckets are served by `BucketHandler`s (the adapters' view of their tables).
* The gateway owns transport concerns only: addressing, SigV4, body framing and checksums, S3 XML, limits and
* multipart bookkeeping. It keeps no state of its own in memory, so any number of gateways may serve one database.
*/
const DEFAULT_LIMITS = {
	maxObjectBytes: 256 * 1024 * 1024,
	maxKeyBytes: 1024,
	maxParts: 1e4,
	minPartBytes: 5 * 1024 * 1024,
	maxHeaderBytes: 16 * 1024,
	maxXmlBytes: 2 * 1024 * 1024,
	headersTimeoutMs: 2e4,
	requestTimeoutMs: 15 * 6e4,
	idleTimeoutMs: 6e4,
	maxClockSkewMs: 15 * 6e4,
	shutdownGraceMs: 3e4
};
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
function decodeQuery(raw) {
	if (!raw) return [];
	return raw.split("&").filter(Boolean).map((pair) => {
		const eq = pair.indexOf("=");
		const name = eq === -1 ? pair : pair.slice(0, eq);
		const value = eq === -1 ? "" : pair.slice(eq + 1);
		return [decodeURIComponent(name.replace(/\+/g, " ")), decodeURIComponent(value.replace(/\+/g, " "))];
	});
}
function headerText(req, name) {
	const value = req.headers[name];
	return Array.isArray(value) ? value.join(",") : value;
}
function quoted(etag) {
	return `"${etag}"`;
}
function unquote(etag) {
	return etag.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}
/** S3's `encoding-type=url` form: keys percent-encoded, "/" kept readable. */
function urlEncodeKey(value) {
	return encodeURIComponent(value).replace(/%2F/g, "/");
}
function encodeToken(startAfter) {
	return Buffer.from(`v1:${startAfter}`, "utf8").toString("base64url");
}
function decodeToken(token) {
	const decoded = Buffer.from(token, "base64url").toString("utf8");
	if (!decoded.startsWith("v1:")) throw s3Errors.invalidArgument("The continuation token provided is incorrect.");
	return decoded.slice(3);
}
function parseMaxKeys(value, name) {
	if (value === void 0) return 1e3;
	if (!/^\d{1,9}$/.test(value)) throw s3Errors.invalidArgument(`Provided ${name} not an integer or within integer range`);
	return Math.min(Number(value), 1e3);
}
/** Parses a single-range `Range` header. Returns undefined for headers S3 would ignore. */
function parseRange(value) {
	if (!value) return void 0;
	const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
	if (!m || m[1] === "" && m[2] === "") return void 0;
	if (m[1] === "") return { suffix: Number(m[2]) };
	const start = Number(m[1]);
	const end = m[2] === "" ? void 0 : Number(m[2]);
	if (end !== void 0 && end < start) return void 0;
	return {
		start,
		end
	};
}
async function createS3Gateway(options) {
	const limits = {
		...DEFAULT_LIMITS,
		...options.limits
	};
	const host = options.host ?? "127.0.0.1";
	const log = options.logger === false ? silentLogger : options.logger ?? jsonStderrLogger;
	const now = options.now ?? (() => /* @__PURE__ */ new Date());
	const credentials = /* @__PURE__ */ new Map();
	for (const c of options.credentials) {
		if (!c.accessKeyId || !c.secretAccessKey) throw new PgStateError("BAD_SETTING", "An access key needs both an access key id and a secret access key.", { fix: "Pass --access-key and --secret-key together (or PGSTATE_S3_ACCESS_KEY_ID / PGSTATE_S3_SECRET_ACCESS_KEY)." });
		credentials.set(c.accessKeyId, c.secretAccessKey);
	}
	if (credentials.size === 0 && !LOOPBACK.test(host)) throw new PgStateError("BAD_SETTING", `Refusing to listen on ${host} without access keys.`, { fix: "Configure an access key and secret (--access-key/--secret-key), or listen on 127.0.0.1." });
	for (const name of Object.keys(options.buckets)) if (!BUCKET_NAME.test(name) || name.includes("..")) throw new PgStateError("BAD_SETTING", `"${name}" is not a valid S3 bucket name.`, { fix: "Use 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit." });
	const buckets = new Map(Object.entries(options.buckets));
	const store = options.uploads ? new MultipartStore(options.uploads) : void 0;
	const startedAt = /* @__PURE__ */ new Date();
	let inFlight = 0;
	let idleWaiters = [];
	function requireStore() {
		if (!store) throw s3Errors.notImplemented("multipart upload (the gateway was started without an uploads database)");
		return store;
	}
	function validateKey(key) {
		if (Buffer.byteLength(key, "utf8") > limits.maxKeyBytes) throw s3Errors.keyTooLong(limits.maxKeyBytes);
		if (/[\u0000-\u001f\u007f]/.test(key)) throw s3Errors.invalidArgument("Object keys may not contain control characters.");
		if (key.split("/").some((segment) => segment === "." || segment === "..")) throw s3Errors.invalidArgument("Object keys may not contain \".\" or \"..\" path segments.");
	}
	function handlerFor(bucket) {
		const handler = buckets.get(bucket);
		if (!handler) throw s3Errors.noSuchBucket(bucket);
		return handler;
	}
	function route(req) {
		const url = req.url ?? "/";
		const q = url.indexOf("?");
		const rawPath = q === -1 ? url : url.slice(0, q);
		if (!rawPath.startsWith("/")) throw new S3Error(400, "InvalidURI", "Could not parse the specified URI.");
		let queryList;
		let segments;
		try {
			queryList = decodeQuery(q === -1 ? "" : url.slice(q + 1));
			segments = rawPath.slice(1).split("/");
			segments = segments.map((s) => decodeURIComponent(s));
		} catch {
			throw new S3Error(400, "InvalidURI", "Could not parse the specified URI.");
		}
		const hostName = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
		const firstLabel = hostName.split(".")[0] ?? "";
		const virtual = hostName.includes(".") && !/^[\d.]+$/.test(hostName) && buckets.has(firstLabel);
		let bucket;
		let key;
		if (virtual) {
			bucket = firstLabel;
			key = segments.join("/");
		} else {
			bucket = segments[0] || void 0;
			key = segments.length > 1 ? segments.slice(1).join("/") : void 0;
		}
		if (key === "") key = void 0;
		return {
			method: req.method ?? "GET",
			bucket,
			key,
			query: new Map(queryList),
			queryList,
			rawPath
		};
	}
	function send(res, status, body, headers = {}) {
		const payload = typeof body === "string" ? Buffer.from(body, "utf8") : body;
		res.statusCode = status;
		for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
		if (payload && typeof body === "string") res.setHeader("Content-Type", "application/xml");
		res.setHeader("Content-Length", String(payload?.length ?? 0));
		res.end(payload);
	}
	function sendXml(res, root, body, status = 200) {
		send(res, status, s3Xml(root, body));
	}
	function objectHeaders(info) {
		return {
			ETag: quoted(info.etag),
			"Last-Modified": info.lastModified.toUTCString(),
			"Accept-Ranges": "bytes"
		};
	}
	/** GET/HEAD conditionals; returns the status to answer instead, if any. */
	function conditionalStatus(req, info) {
		const ifMatch = req.headers["if-match"];
		const ifNoneMatch = req.headers["if-none-match"];
		const modified = Math.floor(info.lastModified.getTime() / 1e3) * 1e3;
		if (ifMatch !== void 0 && ifMatch.trim() !== "*" && !ifMatch.split(",").some((e) => unquote(e) === info.etag)) return 412;
		const ifUnmodified = req.headers["if-unmodified-since"];
		if (ifMatch === void 0 && ifUnmodified && modified > Date.parse(ifUnmodified)) return 412;
		if (ifNoneMatch !== void 0 && (ifNoneMatch.trim() === "*" || ifNoneMatch.split(",").some((e) => unquote(e) === info.etag))) return 304;
		const ifModified = req.headers["if-modified-since"];
		if (ifNoneMatch === void 0 && ifModified && modified <= Date.parse(ifModified)) return 304;
	}
	async function readXml(req, auth, res, root) {
		const { body } = await readBody(req, auth, {
			maxBytes: limits.maxXmlBytes,
			onStart: () => continueIfExpected(req, res)
		});
		return parseS3Xml(body.toString("utf8"), root);
	}
	function continueIfExpected(req, res) {
		if ((req.headers.expect ?? "").toLowerCase() === "100-continue") res.writeContinue();
	}
	function checksumHeaders(checksums) {
		const headers = {};
		for (const [alg, value] of Object.entries(checksums)) headers[`x-amz-checksum-${alg}`] = value;
		return headers;
	}
	function putConditions(req) {
		const ifNoneMatch = req.headers["if-none-match"];
		const ifMatch = req.headers["if-match"];
		if (ifNoneMatch === void 0 && ifMatch === void 0) return void 0;
		const conditions = {};
		if (ifNoneMatch !== void 0) {
			if (ifNoneMatch.trim() !== "*") throw s3Errors.notImplemented("If-None-Match other than \"*\" on writes");
			conditions.ifNoneMatch = "*";
		}
		if (ifMatch !== void 0) {
			if (ifMatch.trim() === "*") throw s3Errors.notImplemented("If-Match: * on writes");
			conditions.ifMatch = unquote(ifMatch);
		}
		return conditions;
	}
	async function withCondition(req, work) {
		try {
			return await work();
		} catch (error) {
			if (error instanceof PgStateError && error.code === "PRECONDITION_FAILED") throw s3Errors.preconditionFailed(req.headers["if-none-match"] !== void 0 ? "If-None-Match" : "If-Match");
			throw error;
		}
	}
	/** Access is all-or-nothing per access key; clients that read ACLs (s3cmd) see the owner's full control. */
	function sendAcl(res) {
		sendXml(res, "AccessControlPolicy", {
			Owner: {
				ID: "pgstate",
				DisplayName: "pgstate"
			},
			AccessControlList: { Grant: {
				Grantee: {
					"@_xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
					"@_xsi:type": "CanonicalUser",
					ID: "pgstate",
					DisplayName: "pgstate"
				},
				Permission: "FULL_CONTROL"
			} }
		});
	}
	async function listBuckets(res) {
		sendXml(res, "ListAllMyBucketsResult", {
			Owner: {
				ID: "pgstate",
				DisplayName: "pgstate"
			},
			Buckets: { Bucket: [...buckets.keys()].sort().map((Name) => ({
				Name,
				CreationDate: startedAt.toISOString()
			})) }
		});
	}
	async function listObjects(req, res, r, bucket) {
		const handler = handlerFor(bucket);
		const v2 = r.query.get("list-type") === "2";
		const prefix = r.query.get("prefix") ?? "";
		const delimiter = r.query.get("delimiter") || void 0;
		const maxKeys = parseMaxKeys(r.query.get("max-keys"), "max-keys");
		const encodingType = r.query.get("encoding-type");
		if (encodingType !== void 0 && encodingType !== "url") throw s3Errors.invalidArgument("Invalid Encoding Method specified in Request");
		const enc = (value) => value === void 0 ? void 0 : encodingType === "url" ? urlEncodeKey(value) : value;
		const continuationToken = v2 ? r.query.get("continuation-token") : void 0;
		const startAfter = v2 ? r.query.get("start-after") : r.query.get("marker");
		const from = continuationToken !== void 0 ? decodeToken(continuationToken) : startAfter || void 0;
		const result = maxKeys === 0 ? {
			objects: [],
			commonPrefixes: [],
			isTruncated: false,
			nextStartAfter: void 0
		} : await handler.listObjects({
			prefix: prefix || void 0,
			delimiter,
			startAfter: from,
			maxKeys
		});
		const contents = result.objects.map((o) => ({
			Key: enc(o.key),
			LastModified: o.lastModified.toISOString(),
			ETag: quoted(o.etag),
			Size: o.size,
			StorageClass: "STANDARD"
		}));
		const commonPrefixes = result.commonPrefixes.map((p) => ({ Prefix: enc(p) }));
		const next = result.isTruncated ? result.nextStartAfter : void 0;
		if (v2) sendXml(res, "ListBucketResult", {
			Name: bucket,
			Prefix: enc(prefix),
			Delimiter: enc(delimiter),
			MaxKeys: maxKeys,
			EncodingType: encodingType,
			KeyCount: contents.length + commonPrefixes.length,
			IsTruncated: result.isTruncated,
			ContinuationToken: continuationToken,
			NextContinuationToken: next !== void 0 ? encodeToken(next) : void 0,
			StartAfter: enc(r.query.get("start-after")),
			Contents: contents,
			CommonPrefixes: commonPrefixes
		});
		else sendXml(res, "ListBucketResult", {
			Name: bucket,
			Prefix: enc(prefix),
			Marker: enc(r.query.get("marker") ?? ""),
			NextMarker: enc(next),
			Delimiter: enc(delimiter),
			MaxKeys: maxKeys,
			EncodingType: encodingType,
			IsTruncated: result.isTruncated,
			Contents: contents,
			CommonPrefixes: commonPrefixes
		});
	}
	async function deleteObjects(req, res, auth, bucket) {
		const handler = handlerFor(bucket);
		const doc = await readXml(req, auth, res, "Delete");
		const objects = doc.Object ?? [];
		if (objects.length === 0 || objects.length > 1e3) throw s3Errors.malformedXml();
		const keys = objects.map((o) => text(o.Key));
		if (keys.some((k) => k === void 0 || k === "")) throw s3Errors.malformedXml();
		const quiet = text(doc.Quiet)?.trim() === "true";
		const deleted = [];
		const errors = [];
		for (const key of keys) try {
			validateKey(key);
			await handler.deleteObject(key);
			if (!quiet) deleted.push({ Key: key });
		} catch (error) {
			const e = toS3Error(error, key);
			if (e.status >= 500) throw e;
			errors.push({
				Key: key,
				Code: e.code,
				Message: e.message
			});
		}
		sendXml(res, "DeleteResult", {
			Deleted: deleted,
			Error: errors
		});
	}
	async function listUploads(res, r, bucket) {
		handlerFor(bucket);
		const prefix = r.query.get("prefix") ?? "";
		const maxUploads = parseMaxKeys(r.query.get("max-uploads"), "max-uploads");
		const { uploads, truncated } = await requireStore().listUploads(bucket, prefix, maxUploads);
		sendXml(res, "ListMultipartUploadsResult", {
			Bucket: bucket,
			Prefix: prefix,
			MaxUploads: maxUploads,
			IsTruncated: truncated,
			Upload: uploads.map((u) => ({
				Key: u.key,
				UploadId: u.uploadId,
				Initiated: u.initiated.toISOString(),
				StorageClass: "STANDARD"
			}))
		});
	}
	async function bucketRequest(req, res, r, auth, bucket) {
		const sub = (name) => r.query.has(name);
		switch (r.method) {
			case "HEAD":
				handlerFor(bucket);
				return send(res, 200, void 0, { "x-amz-bucket-region": "us-east-1" });
			case "GET":
				handlerFor(bucket);
				if (sub("location")) return send(res, 200, s3Xml("LocationConstraint", {}, true));
				if (sub("versioning")) return sendXml(res, "VersioningConfiguration", {});
				if (sub("uploads")) return listUploads(res, r, bucket);
				if (sub("acl")) return sendAcl(res);
				for (const name of [
					"policy",
					"cors",
					"lifecycle",
					"tagging",
					"encryption",
					"object-lock",
					"replication",
					"website",
					"logging",
					"notification",
					"versions",
					"accelerate",
					"requestPayment",
					"ownershipControls",
					"publicAccessBlock",
					"analytics",
					"metrics",
					"inventory",
					"intelligent-tiering"
				]) if (sub(name)) throw s3Errors.notImplemented(`bucket ?${name}`);
				return listObjects(req, res, r, bucket);
			case "PUT":
				if ([...r.query.keys()].length > 0) throw s3Errors.notImplemented("bucket configuration");
				if (!buckets.has(bucket)) throw s3Errors.accessDenied("Buckets are configured on the gateway, not created by clients.");
				continueIfExpected(req, res);
				req.resume();
				return send(res, 200, void 0, { Location: `/${bucket}` });
			case "POST":
				if (sub("delete")) return deleteObjects(req, res, auth, bucket);
				throw s3Errors.methodNotAllowed();
			case "DELETE":
				handlerFor(bucket);
				throw new S3Error(409, "BucketNotEmpty", "Buckets are configured on the gateway and cannot be deleted by clients.");
			default: throw s3Errors.methodNotAllowed();
		}
	}
	async function getObject(req, res, r, bucket, key, head) {
		const handler = handlerFor(bucket);
		const range = parseRange(req.headers.range);
		if (head) {
			const info = await handler.headObject(key);
			if (!info) throw s3Errors.noSuchKey(key);
			const status = conditionalStatus(req, info);
			if (status) return send(res, status, void 0, objectHeaders(info));
			const headers = {
				...objectHeaders(info),
				"Content-Type": "application/octet-stream"
			};
			if (range) {
				const start = range.suffix !== void 0 ? Math.max(0, info.size - range.suffix) : range.start;
				if (start >= info.size) throw s3Errors.invalidRange(info.size);
				const end = Math.min(range.end ?? info.size - 1, info.size - 1);
				headers["Content-Range"] = `bytes ${start}-${end}/${info.size}`;
				res.statusCode = 206;
				res.setHeader("Content-Length", String(end - start + 1));
			} else {
				res.statusCode = 200;
				res.setHeader("Content-Length", String(info.size));
			}
			for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
			res.end();
			return;
		}
		const handlerRange = range && range.suffix === void 0 ? {
			start: range.start,
			...range.end !== void 0 ? { end: range.end } : {}
		} : void 0;
		const found = await handler.getObject(key, handlerRange);
		if (!found) throw s3Errors.noSuchKey(key);
		const { info } = found;
		const status = conditionalStatus(req, info);
		if (status) return send(res, status, void 0, objectHeaders(info));
		const headers = {
			...objectHeaders(info),
			"Content-Type": r.query.get("response-content-type") ?? "application/octet-stream"
		};
		for (const [param, name] of [
			["response-content-disposition", "Content-Disposition"],
			["response-cache-control", "Cache-Control"],
			["response-content-encoding", "Content-Encoding"],
			["response-content-language", "Content-Language"],
			["response-expires", "Expires"]
		]) {
			const value = r.query.get(param);
			if (value !== void 0) headers[name] = value;
		}
		let body = Buffer.from(found.body.buffer, found.body.byteOffset, found.body.byteLength);
		if (range) {
			let start;
			if (range.suffix !== void 0) {
				start = Math.max(0, info.size - range.suffix);
				if (range.suffix === 0 || info.size === 0) throw s3Errors.invalidRange(info.size);
				body = body.subarray(start);
			} else {
				start = range.start;
				if (start >= info.size) throw s3Errors.invalidRange(info.size);
				if (handlerRange === void 0) body = body.subarray(start);
				else if (body.length === info.size && start > 0) body = body.subarray(start, range.end === void 0 ? void 0 : range.end + 1);
				else if (range.end !== void 0 && body.length > range.end - start + 1) body = body.subarray(0, range.end - start + 1);
			}
			headers["Content-Range"] = `bytes ${start}-${start + body.length - 1}/${info.size}`;
			return send(res, 206, body, headers);
		}
		headers["x-amz-checksum-crc32"] = checksum("crc32", body);
		headers["x-amz-checksum-type"] = "FULL_OBJECT";
		send(res, 200, body, headers);
	}
	async function putObject(req, res, auth, bucket, key) {
		const handler = handlerFor(bucket);
		const conditions = putConditions(req);
		const { body, checksums } = await readBody(req, auth, {
			maxBytes: limits.maxObjectBytes,
			onStart: () => continueIfExpected(req, res)
		});
		send(res, 200, void 0, {
			ETag: quoted((await withCondition(req, () => handler.putObject(key, body, conditions))).etag),
			...checksumHeaders(checksums)
		});
	}
	function parseCopySource(value) {
		let source = value;
		const q = source.indexOf("?");
		if (q !== -1) {
			const versionId = new URLSearchParams(source.slice(q + 1)).get("versionId");
			if (versionId && versionId !== "null") throw s3Errors.notImplemented("object versions");
			source = source.slice(0, q);
		}
		let decoded;
		try {
			decoded = decodeURIComponent(source);
		} catch {
			throw s3Errors.invalidArgument("Invalid copy source encoding.");
		}
		if (decoded.startsWith("/")) decoded = decoded.slice(1);
		const slash = decoded.indexOf("/");
		if (slash <= 0 || slash === decoded.length - 1) throw s3Errors.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
		return {
			bucket: decoded.slice(0, slash),
			key: decoded.slice(slash + 1)
		};
	}
	async function copyObject(req, res, bucket, key, sourceHeader) {
		const target = handlerFor(bucket);
		const source = parseCopySource(sourceHeader);
		validateKey(source.key);
		const sourceHandler = handlerFor(source.bucket);
		req.resume();
		const ifMatch = headerText(req, "x-amz-copy-source-if-match");
		const ifNoneMatch = headerText(req, "x-amz-copy-source-if-none-match");
		if (ifMatch !== void 0 || ifNoneMatch !== void 0) {
			const info = await sourceHandler.headObject(source.key);
			if (!info) throw s3Errors.noSuchKey(source.key);
			if (ifMatch !== void 0 && unquote(ifMatch) !== info.etag) throw s3Errors.preconditionFailed("x-amz-copy-source-If-Match");
			if (ifNoneMatch !== void 0 && unquote(ifNoneMatch) === info.etag) throw s3Errors.preconditionFailed("x-amz-copy-source-If-None-Match");
		}
		let info;
		if (sourceHandler === target) info = await target.copyObject(source.key, key);
		else {
			const found = await sourceHandler.getObject(source.key);
			info = found ? await target.putObject(key, found.body) : null;
		}
		if (!info) throw s3Errors.noSuchKey(source.key);
		sendXml(res, "CopyObjectResult", {
			LastModified: info.lastModified.toISOString(),
			ETag: quoted(info.etag)
		});
	}
	function partNumber(r) {
		const value = r.query.get("partNumber") ?? "";
		const n = /^\d{1,5}$/.test(value) ? Number(value) : 0;
		if (n < 1 || n > limits.maxParts) throw s3Errors.invalidArgument(`Part number must be an integer between 1 and ${limits.maxParts}, inclusive`);
		return n;
	}
	async function createUpload(req, res, bucket, key) {
		handlerFor(bucket);
		req.resume();
		const uploadId = randomBytes(24).toString("base64url");
		await requireStore().create(bucket, key, uploadId);
		sendXml(res, "InitiateMultipartUploadResult", {
			Bucket: bucket,
			Key: key,
			UploadId: uploadId
		});
	}
	async function uploadPart(req, res, r, auth, bucket, key) {
		handlerFor(bucket);
		if (req.headers["x-amz-copy-source"] !== void 0) throw s3Errors.notImplemented("UploadPartCopy");
		const n = partNumber(r);
		const uploadId = r.query.get("uploadId") ?? "";
		const { body, checksums } = await readBody(req, auth, {
			maxBytes: limits.maxObjectBytes,
			onStart: () => continueIfExpected(req, res)
		});
		send(res, 200, void 0, {
			ETag: quoted(await requireStore().putPart(bucket, key, uploadId, n, body)),
			...checksumHeaders(checksums)
		});
	}
	async function completeUpload(req, res, r, auth, bucket, key) {
		const handler = handlerFor(bucket);
		const uploadId = r.query.get("uploadId") ?? "";
		const conditions = putConditions(req);
		const parts = ((await readXml(req, auth, res, "CompleteMultipartUpload")).Part ?? []).map((p) => {
			const number = text(p.PartNumber)?.trim() ?? "";
			const etag = text(p.ETag);
			if (!/^\d{1,5}$/.test(number) || etag === void 0) throw s3Errors.malformedXml();
			return {
				partNumber: Number(number),
				etag: unquote(etag)
			};
		});
		if (parts.length > limits.maxParts) throw s3Errors.invalidArgument(`At most ${limits.maxParts} parts are allowed.`);
		const uploads = requireStore();
		const body = await uploads.assemble(bucket, key, uploadId, parts, {
			maxBytes: limits.maxObjectBytes,
			minPartBytes: limits.minPartBytes
		});
		const info = await withCondition(req, () => handler.putObject(key, body, conditions));
		await uploads.remove(bucket, key, uploadId).catch(() => {});
		sendXml(res, "CompleteMultipartUploadResult", {
			Location: `/${bucket}/${key}`,
			Bucket: bucket,
			Key: key,
			ETag: quoted(info.etag)
		});
	}
	async function listParts(res, r, bucket, key) {
		handlerFor(bucket);
		const uploadId = r.query.get("uploadId") ?? "";
		const marker = r.query.get("part-number-marker");
		const after = marker && /^\d{1,5}$/.test(marker) ? Number(marker) : 0;
		const maxParts = parseMaxKeys(r.query.get("max-parts"), "max-parts");
		const { parts, truncated } = await requireStore().listParts(bucket, key, uploadId, after, maxParts);
		sendXml(res, "ListPartsResult", {
			Bucket: bucket,
			Key: key,
			UploadId: uploadId,
			PartNumberMarker: after,
			NextPartNumberMarker: parts.length ? parts[parts.length - 1].partNumber : after,
			MaxParts: maxParts,
			IsTruncated: truncated,
			Part: parts.map((p) => ({
				PartNumber: p.partNumber,
				LastModified: p.lastModified.toISOString(),
				ETag: quoted(p.etag),
				Size: p.size
			})),
			StorageClass: "STANDARD"
		});
	}
	async function objectRequest(req, res, r, auth, bucket, key) {
		validateKey(key);
		const has = (name) => r.query.has(name);
		if (has("acl") && r.method === "GET") {
			if (!await handlerFor(bucket).headObject(key)) throw s3Errors.noSuchKey(key);
			return sendAcl(res);
		}
		for (const name of [
			"acl",
			"tagging",
			"retention",
			"legal-hold",
			"torrent",
			"restore",
			"select",
			"attributes"
		]) if (has(name)) throw s3Errors.notImplemented(`object ?${name}`);
		switch (r.method) {
			case "GET":
				if (has("uploadId")) return listParts(res, r, bucket, key);
				return getObject(req, res, r, bucket, key, false);
			case "HEAD": return getObject(req, res, r, bucket, key, true);
			case "PUT": {
				if (has("uploadId") || has("partNumber")) return uploadPart(req, res, r, auth, bucket, key);
				const copySource = req.headers["x-amz-copy-source"];
				if (typeof copySource === "string") return copyObject(req, res, bucket, key, copySource);
				return putObject(req, res, auth, bucket, key);
			}
			case "DELETE":
				if (has("uploadId")) {
					handlerFor(bucket);
					if (!await requireStore().remove(bucket, key, r.query.get("uploadId") ?? "")) throw s3Errors.noSuchUpload(r.query.get("uploadId") ?? "");
					return send(res, 204);
				}
				await handlerFor(bucket).deleteObject(key);
				return send(res, 204);
			case "POST":
				if (has("uploads")) return createUpload(req, res, bucket, key);
				if (has("uploadId")) return completeUpload(req, res, r, auth, bucket, key);
				throw s3Errors.methodNotAllowed();
			default: throw s3Errors.methodNotAllowed();
		}
	}
	async function handle(req, res) {
		const requestId = randomBytes(8).toString("hex").toUpperCase();
		const started = process.hrtime.bigint();
		res.setHeader("x-amz-request-id", requestId);
		res.setHeader("x-amz-id-2", requestId);
		res.setHeader("Server", "pgstate");
		inFlight++;
		let r;
		let accessKeyId;
		let errorCode;
		try {
			r = route(req);
			const auth = verifyRequest({
				method: r.method,
				rawPath: r.rawPath,
				query: r.queryList,
				headers: req.headers
			}, {
				credentials,
				now: now(),
				maxSkewMs: limits.maxClockSkewMs
			});
			accessKeyId = auth.accessKeyId;
			if (!r.bucket) {
				if (r.method !== "GET") throw s3Errors.methodNotAllowed();
				await listBuckets(res);
			} else if (r.key === void 0) await bucketRequest(req, res, r, auth, r.bucket);
			else await objectRequest(req, res, r, auth, r.bucket, r.key);
		} catch (error) {
			const e = toS3Error(error, r?.key);
			if (e.status >= 500 && e.status !== 501) log({
				level: "error",
				msg: "request failed",
				requestId,
				error: error instanceof Error ? error.message : String(error),
				code: error?.code
			});
			if (!res.headersSent && !res.destroyed) {
				if (!req.complete) res.setHeader("Connection", "close");
				const document = r?.method === "HEAD" ? void 0 : s3Xml("Error", {
					Code: e.code,
					Message: e.message,
					...e.details,
					Resource: r ? `/${r.bucket ?? ""}${r.key ? `/${r.key}` : ""}` : void 0,
					RequestId: requestId
				}, false);
				send(res, e.status, document);
			} else if (!res.writableEnded) res.destroy();
			errorCode = e.code;
		} finally {
			const ms = Number(process.hrtime.bigint() - started) / 1e6;
			log({
				level: res.statusCode >= 500 ? "error" : "info",
				msg: "request",
				requestId,
				method: req.method,
				bucket: r?.bucket,
				key: r?.key,
				status: res.statusCode,
				code: errorCode,
				accessKeyId,
				ms: Math.round(ms * 10) / 10
			});
			inFlight--;
			if (inFlight === 0) {
				const waiters = idleWaiters;
				idleWaiters = [];
				for (const w of waiters) w();
			}
		}
	}
	const serverOptions = {
		maxHeaderSize: limits.maxHeaderBytes,
		requestTimeout: limits.requestTimeoutMs,
		headersTimeout: limits.headersTimeoutMs,
		keepAliveTimeout: 5e3
	};
	const listener = (req, res) => {
		handle(req, res);
	};
	const server = options.tls ? https.createServer({
		...serverOptions,
		cert: options.tls.cert,
		key: options.tls.key
	}, listener) : http.createServer(serverOptions, listener);
	server.on("checkContinue", listener);
	server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
	server.on("clientError", (error, socket) => {
		const code = error.code;
		if (socket.writable && !socket.destroyed) {
			const status = code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
			socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
		} else socket.destroy();
	});
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(options.port ?? 0, host, () => {
			server.off("error", reject);
			resolve();
		});
	});
	const port = server.address().port;
	const urlHost = host.includes(":") ? `[${host}]` : host;
	const url = `${options.tls ? "https" : "http"}://${urlHost}:${port}`;
	log({
		level: "info",
		msg: "listening",
		url,
		buckets: [...buckets.keys()],
		authentication: credentials.size ? "sigv4" : "open"
	});
	let closing;
	return {
		url,
		port,
		close() {
			closing ??= (async () => {
				const closed = new Promise((resolve) => server.close(() => resolve()));
				server.closeIdleConnections();
				if (inFlight > 0) {
					let timer;
					await Promise.race([new Promise((resolve) => idleWaiters.push(resolve)), new Promise((resolve) => {
						timer = setTimeout(resolve, limits.shutdownGraceMs);
					})]);
					clearTimeout(timer);
				}
				server.closeAllConnections();
				await closed;
				log({
					level: "info",
					msg: "closed",
					url
				});
			})();
			return closing;
		}
	};
}
//#endregion
//#region src/pulumi-backend.ts
/**
* For Pulumi Automation API programs: an in-process S3 endpoint over a Pulumi bucket handler, plus the backend URL
* and environment a `LocalWorkspace` needs to use it. It lives here, not in `@pgstate/pulumi`, because adapters do
* not import the gateway; the caller passes the handler (e.g. `createPulumiBucketHandler` from `@pgstate/pulumi`).
*/
async function startPulumiBackend(options) {
	const bucket = options.bucket ?? "pulumi-state";
	const owned = typeof options.handler === "function";
	const handler = typeof options.handler === "function" ? await options.handler() : options.handler;
	const accessKeyId = `PGSTATE${randomBytes(8).toString("hex").toUpperCase()}`;
	const secretAccessKey = randomBytes(30).toString("base64url");
	let gateway;
	try {
		gateway = await createS3Gateway({
			buckets: { [bucket]: handler },
			credentials: [{
				accessKeyId,
				secretAccessKey
			}],
			uploads: options.uploads,
			logger: options.logger ?? false
		});
	} catch (error) {
		if (owned) await handler.close?.();
		throw error;
	}
	const backendUrl = `s3://${bucket}?endpoint=${gateway.url}&s3ForcePathStyle=true`;
	const envVars = {
		PULUMI_BACKEND_URL: backendUrl,
		AWS_ACCESS_KEY_ID: accessKeyId,
		AWS_SECRET_ACCESS_KEY: secretAccessKey,
		AWS_REGION: "us-east-1",
		AWS_DEFAULT_REGION: "us-east-1",
		AWS_EC2_METADATA_DISABLED: "true"
	};
	let closing;
	const close = () => {
		closing ??= (async () => {
			await gateway.close();
			if (owned) await handler.close?.();
		})();
		return closing;
	};
	return {
		backendUrl,
		envVars,
		gateway,
		close,
		[Symbol.asyncDispose]: close
	};
}
//#endregion
export { DEFAULT_LIMITS, S3Error, createS3Gateway, jsonStderrLogger, silentLogger, startPulumiBackend };

//# sourceMappingURL=index.js.map