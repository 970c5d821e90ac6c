import { expect, test } from 'vitest';
import { resolveMeltanoConfig } from '../src/index.js';

test("sslmode: the URL's own sslmode counts; a setting or the env overrides it; prefer when none is given", () => {
  const sslmode = (url: string, options: { sslmode?: string; env?: Record<string, string> } = {}) =>
    resolveMeltanoConfig('seed', { url, env: options.env ?? {}, sslmode: options.sslmode }).settings.sslmode;
  expect(sslmode('postgres://u:p@db.example/d?sslmode=disable')).toBe('disable');
  expect(sslmode('postgres://u:p@db.example/d?sslmode=verify-full&sslrootcert=system')).toBe('verify-full');
  expect(sslmode('postgres://u:p@db.example/d')).toBe('prefer');
  expect(sslmode('postgres://u:p@db.example/d?sslmode=disable', { sslmode: 'require' })).toBe('require');
  expect(sslmode('postgres://u:p@db.example/d', { env: { MELTANO_STATE_BACKEND_POSTGRES_SSLMODE: 'require' } })).toBe(
    'require',
  );
});
