/** The conformance servers' certificates: core's test certificates (CA, server cert for `localhost` only, client cert). */
import { generateTestCertificates, type TestCertificates } from '@pgstate/core/testing';

export type TlsFiles = TestCertificates;

/** The role the client certificate names; `hostssl ... cert` maps the certificate's CN to it. */
export const MTLS_USER = 'pgstate_mtls';

/** Throws with openssl's message when openssl is missing or fails; callers turn that into a not-run reason. */
export function generateTlsFiles(dir: string): TlsFiles {
  return generateTestCertificates(dir, MTLS_USER);
}
