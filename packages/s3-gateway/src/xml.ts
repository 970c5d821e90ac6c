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
  isArray: (name) => name === 'Object' || name === 'Part',
});

/** One S3 XML document: `<Root xmlns="...">...</Root>`. Undefined fields are left out. */
export function s3Xml(root: string, body: Record<string, unknown>, namespaced = true): string {
  return builder.build({
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    [root]: namespaced ? { '@_xmlns': S3_NAMESPACE, ...body } : body,
  });
}

/** Parses a request document, insisting on the expected root element; anything else is MalformedXML. */
export function parseS3Xml(text: string, root: string): Record<string, unknown> {
  // No DTDs: they are never needed by S3 requests and are the usual entity-expansion vector.
  if (/<!DOCTYPE|<!ENTITY/i.test(text) || XMLValidator.validate(text) !== true) throw s3Errors.malformedXml();
  const parsed = parser.parse(text) as Record<string, unknown>;
  const element = parsed[root];
  if (!element || typeof element !== 'object') throw s3Errors.malformedXml();
  return element as Record<string, unknown>;
}

export function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
