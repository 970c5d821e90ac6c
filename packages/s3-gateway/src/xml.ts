import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { s3Errors } from './errors.js';

const S3_NAMESPACE = 'http://s3.amazonaws.com/doc/2006-03-01/';
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_' });
const parser = new XMLParser({
  ignoreAttributes: true,
  // Keys like "007" must stay strings; whitespace inside keys is significant.
  parseTagValue: false,
  trimValues: false,
  removeNSPrefix: true,
  // Entities are decoded by `text()` in one pass, numeric references included (Go's encoder writes `&#34;`).
  processEntities: false,
  isArray: (name) => name === 'Object' || name === 'Part',
});

/** One S3 XML document: `<Root xmlns="...">...</Root>`. Undefined fields are left out. */
export function s3Xml(root: string, body: Record<string, unknown>, namespaced = true): string {
  return builder.build({
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    [root]: namespaced ? { '@_xmlns': S3_NAMESPACE, ...body } : body,
  });
}

/** S3 request documents are a few levels deep; far deeper nesting only serves to exhaust a recursive parser. */
const MAX_DEPTH = 32;

function tooDeep(text: string): boolean {
  let depth = 0;
  for (const m of text.matchAll(/<([/?!]?)[^<>]*?(\/?)>/g)) {
    if (m[1] === '/') depth--;
    else if (m[1] === '' && m[2] === '' && ++depth > MAX_DEPTH) return true;
  }
  return false;
}

/** Parses a request document, insisting on the expected root element; anything else is MalformedXML. */
export function parseS3Xml(text: string, root: string): Record<string, unknown> {
  // No DTDs: they are never needed by S3 requests and are the usual entity-expansion vector.
  if (/<!DOCTYPE|<!ENTITY/i.test(text) || tooDeep(text)) throw s3Errors.malformedXml();
  let parsed: Record<string, unknown>;
  try {
    if (XMLValidator.validate(text) !== true) throw s3Errors.malformedXml();
    parsed = parser.parse(text) as Record<string, unknown>;
  } catch {
    // Whatever the parser throws on input it cannot take is the client's document, not our failure.
    throw s3Errors.malformedXml();
  }
  const element = parsed[root];
  if (!element || typeof element !== 'object') throw s3Errors.malformedXml();
  return element as Record<string, unknown>;
}

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** A text node's value with XML entity and character references decoded; anything else is MalformedXML. */
export function text(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.replace(/&([^;&\s]{0,10});?/g, (whole, name: string) => {
    if (!whole.endsWith(';')) throw s3Errors.malformedXml();
    const named = NAMED[name];
    if (named !== undefined) return named;
    const m = /^#(x[0-9a-fA-F]{1,6}|[0-9]{1,7})$/.exec(name);
    const code = m ? (m[1]!.startsWith('x') ? Number.parseInt(m[1]!.slice(1), 16) : Number(m[1])) : Number.NaN;
    if (!(code > 0 && code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) throw s3Errors.malformedXml();
    return String.fromCodePoint(code);
  });
}
