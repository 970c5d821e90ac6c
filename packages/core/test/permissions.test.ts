import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { checkHealth, createPool, parseConnectionSettings, withClient } from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';
import { expectNoSecret, rejectionOf } from './helpers.js';

// An admin creates the schema and table; a DML-only role and a role without rights then use them.
const suffix = randomBytes(4).toString('hex');
const dmlRole = `dml_${suffix}`;
const noneRole = `none_${suffix}`;
const password = `S3cr3t-${randomBytes(6).toString('hex')}`;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Client;

const urlFor = (role: string) => {
  const url = new URL(db.url);
  url.username = role;
  url.password = password;
  return url.toString();
};

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'perm');
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`CREATE ROLE ${dmlRole} LOGIN PASSWORD '${password}';
    CREATE ROLE ${noneRole} LOGIN PASSWORD '${password}';
    CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text);
    GRANT USAGE ON SCHEMA app TO ${dmlRole};
    GRANT SELECT, INSERT, UPDATE, DELETE ON app.items TO ${dmlRole};`);
});

afterAll(async () => {
  await admin?.end();
  await db?.drop();
  const cleanup = new pg.Client({ connectionString: inject('pgUrl') });
  await cleanup.connect();
  await cleanup.query(`DROP ROLE IF EXISTS ${dmlRole}; DROP ROLE IF EXISTS ${noneRole}`);
  await cleanup.end();
});

describe('least privilege', () => {
  test('a DML-only role reads and writes, and its health report says it may use but not create', async () => {
    const pool = createPool(parseConnectionSettings(urlFor(dmlRole)));
    try {
      await withClient(pool, (c) => c.query(`INSERT INTO app.items VALUES (1, 'a')`));
      const { rows } = await pool.query('SELECT v FROM app.items');
      expect(rows).toEqual([{ v: 'a' }]);
      const health = await checkHealth(pool, { schema: 'app' });
      expect(health).toMatchObject({
        currentUser: dmlRole,
        server: { version: expect.stringMatching(/^\d+/) },
        schema: { name: 'app', exists: true, usage: true, create: false },
        tls: { inUse: false },
      });
      expect((await checkHealth(pool, { schema: 'missing_schema' })).schema).toMatchObject({
        exists: false,
        usage: false,
      });
      const error = await rejectionOf(withClient(pool, (c) => c.query('CREATE TABLE app.more (id int)')));
      expect(error).toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/schema app/) });
      expect((error as { fix: string }).fix).toMatch(/GRANT USAGE ON SCHEMA app TO/);
      expectNoSecret(error, password);
    } finally {
      await pool.end();
    }
  });

  test('a role without rights gets PERMISSION_DENIED naming the GRANT to run', async () => {
    const settings = parseConnectionSettings(urlFor(noneRole));
    expect((await checkHealth(settings, { schema: 'app' })).schema).toMatchObject({
      exists: true,
      usage: false,
      create: false,
    });
    const error = await rejectionOf(withClient(settings, (c) => c.query('SELECT * FROM app.items')));
    expect(error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((error as { fix: string }).fix).toBe(
      `Ask an administrator to run: GRANT USAGE ON SCHEMA app TO "${noneRole}"; (add CREATE only if pgstate should create tables itself; otherwise run pgstate migrate as an admin).`,
    );
    expectNoSecret(error, password);
  });

  test('a role that may not connect to the database gets PERMISSION_DENIED at connect time', async () => {
    await admin.query(`REVOKE CONNECT ON DATABASE ${db.name} FROM PUBLIC`);
    try {
      const error = await rejectionOf(checkHealth(parseConnectionSettings(urlFor(noneRole))));
      expect(error).toMatchObject({ code: 'PERMISSION_DENIED' });
      expect((error as { fix: string }).fix).toMatch(/GRANT CONNECT ON DATABASE/);
      expectNoSecret(error, password);
    } finally {
      await admin.query(`GRANT CONNECT ON DATABASE ${db.name} TO PUBLIC`);
    }
  });

  test('server errors pgstate does not classify reach the caller unchanged (SQLSTATE intact)', async () => {
    const pool = createPool(parseConnectionSettings(urlFor(dmlRole)));
    try {
      const error = await rejectionOf(withClient(pool, (c) => c.query(`INSERT INTO app.items VALUES (1, 'dup')`)));
      expect(error).toBeInstanceOf(pg.DatabaseError);
      expect(error).toMatchObject({ code: '23505' });
    } finally {
      await pool.end();
    }
  });
});
