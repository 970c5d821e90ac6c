/** Certificates generated at run time with openssl: a CA, a server cert for `localhost` only, a client cert for mTLS. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface TlsFiles {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The user name in the client certificate's CN (PostgreSQL `cert` auth maps CN to the role). */
  clientUser: string;
}

export const MTLS_USER = 'pgstate_mtls';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Throws with openssl's message when openssl is missing or fails; callers turn that into a not-run reason. */
export function generateTlsFiles(dir: string): TlsFiles {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...key,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=pgstate conformance CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const issue = (name: string, cn: string, ext: string) => {
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  };
  // SAN is localhost only: verify-full against 127.0.0.1 must then fail, which suites use as a negative check.
  issue('server', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  issue('client', MTLS_USER, 'extendedKeyUsage=clientAuth\n');
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), f.endsWith('.key') ? 0o600 : 0o644);
  return {
    dir,
    caFile: path.join(dir, 'ca.crt'),
    serverCertFile: path.join(dir, 'server.crt'),
    serverKeyFile: path.join(dir, 'server.key'),
    clientCertFile: path.join(dir, 'client.crt'),
    clientKeyFile: path.join(dir, 'client.key'),
    clientUser: MTLS_USER,
  };
}
