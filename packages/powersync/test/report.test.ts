// Client connection analytics (ReportStorage), written from upstream's described behaviour (clean-room).
import { PgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, test } from 'vitest';
import {
  type ClientConnection,
  type PgStateBucketStorageFactory,
  PgStateReportStorage,
  PgStateStorageProvider,
  pgstateTestSetup,
} from '../src/index.js';

let url: string;
let dropDb: () => Promise<void>;
let factory: PgStateBucketStorageFactory;
let reports: PgStateReportStorage;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_report');
  url = db.url;
  dropDb = db.drop;
  factory = (await pgstateTestSetup({ url, schema: 'ps_report' }).factory()) as PgStateBucketStorageFactory;
  reports = new PgStateReportStorage(factory.db);
});
afterAll(async () => {
  await factory?.[Symbol.asyncDispose]();
  await dropDb?.();
});
beforeEach(async () => {
  await factory.db.query('TRUNCATE ps_report.connection_report_events');
});

const now = new Date();
const minutes = (n: number) => new Date(now.getTime() + n * 60_000);
const days = (n: number) => new Date(now.getTime() + n * 86_400_000);

const connect = (user: string, client: string, sdk: string, connected_at: Date, jwt_exp: Date) =>
  reports.reportClientConnection({
    user_id: user,
    client_id: client,
    sdk,
    user_agent: `${sdk} test`,
    connected_at,
    jwt_exp,
  });

async function rows() {
  return factory.db.query<{ user_id: string; client_id: string; sdk: string; disconnected: boolean; expired: boolean }>(
    `SELECT user_id, client_id, sdk, disconnected_at IS NOT NULL AS disconnected, jwt_exp IS NULL AS expired
     FROM ps_report.connection_report_events ORDER BY user_id, client_id, connected_at`,
  );
}

/** The fixture of upstream's report suite, in spirit: connected, disconnected, expired, old and recent clients. */
async function fixture() {
  await connect('u1', 'c1', 'powersync-dart/1.6.4', now, minutes(5));
  await connect('u2', 'c2', 'powersync-js/1.21.1', minutes(-5), minutes(5));
  await connect('u3', 'c3', 'powersync-js/1.21.2', days(-1), minutes(5));
  await reports.reportClientDisconnection({
    user_id: 'u3',
    client_id: 'c3',
    connected_at: days(-1),
    disconnected_at: days(-1),
  });
  await connect('u4', 'c4', 'powersync-js/1.21.4', now, minutes(-5)); // token already expired
  await connect('u1', '', 'unknown', minutes(-5), minutes(5)); // same user, another client
  await connect('uw', 'c1', 'powersync-js/1.24.5', days(-7), days(-7));
  await reports.reportClientDisconnection({
    user_id: 'uw',
    client_id: 'c1',
    connected_at: days(-7),
    disconnected_at: days(-7),
  });
  await connect('um', 'cm', 'powersync-js/1.23.6', days(-30), days(-30));
  await reports.reportClientDisconnection({
    user_id: 'um',
    client_id: 'cm',
    connected_at: days(-30),
    disconnected_at: days(-30),
  });
  await connect('ux', 'cx', 'powersync-js/1.23.7', days(-30), days(-30)); // expired, never disconnected
}

describe('ReportStorage', () => {
  test('currently connected: not disconnected and token not expired; users and clients per SDK', async () => {
    await fixture();
    expect(await reports.getConnectedClients()).toEqual({
      users: 2,
      sdks: [
        { sdk: 'powersync-dart/1.6.4', users: 1, clients: 1 },
        { sdk: 'powersync-js/1.21.1', users: 1, clients: 1 },
        { sdk: 'unknown', users: 1, clients: 1 },
      ],
    });
  });

  test('reports over a day, a week and a month count connections made in the range', async () => {
    await fixture();
    const day = await reports.getClientConnectionReports({ start: days(-1), end: now });
    expect(day.users).toBe(4); // u1, u2, u3 (connected exactly a day ago), u4
    const week = await reports.getClientConnectionReports({ start: days(-7), end: now });
    expect(week.users).toBe(5);
    expect(week.sdks.map((s) => s.sdk)).toContain('powersync-js/1.24.5');
    const month = await reports.getClientConnectionReports({ start: days(-30), end: now });
    expect(month).toMatchObject({ users: 7 });
    expect(month.sdks.find((s) => s.sdk === 'powersync-js/1.23.7')).toEqual({
      sdk: 'powersync-js/1.23.7',
      users: 1,
      clients: 1,
    });
    expect(await reports.getClientConnectionReports({ start: days(-100), end: days(-60) })).toEqual({
      users: 0,
      sdks: [],
    });
  });

  test('a reconnect the same UTC day re-uses its row (and reopens it); another day gets a new row', async () => {
    // The service's clock is pinned to noon UTC: "the same UTC day" must not depend on when the test runs (ten
    // minutes before the real clock is yesterday just after midnight).
    const noon = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), 12));
    const at = (mins: number) => new Date(noon.getTime() + mins * 60_000);
    const today = new PgStateReportStorage(factory.db, { now: () => noon });
    const report = (storage: PgStateReportStorage, sdk: string, connected_at: Date) =>
      storage.reportClientConnection({ user_id: 'u', client_id: 'c', sdk, connected_at, jwt_exp: at(24 * 60) });
    await report(today, 'sdk/1', at(-10));
    await today.reportClientDisconnection({
      user_id: 'u',
      client_id: 'c',
      connected_at: at(-10),
      disconnected_at: at(-1),
    });
    expect(await rows()).toEqual([{ user_id: 'u', client_id: 'c', sdk: 'sdk/1', disconnected: true, expired: true }]);
    await report(today, 'sdk/2', noon);
    expect(await rows()).toEqual([{ user_id: 'u', client_id: 'c', sdk: 'sdk/2', disconnected: false, expired: false }]);
    // The service's clock says tomorrow: a new row.
    await report(new PgStateReportStorage(factory.db, { now: () => at(24 * 60) }), 'sdk/3', at(24 * 60));
    expect((await rows()).map((r) => r.sdk)).toEqual(['sdk/2', 'sdk/3']);
  });

  test('a disconnect closes exactly the connection it names', async () => {
    await connect('u', 'a', 'sdk', now, minutes(5));
    await connect('u', 'b', 'sdk', now, minutes(5));
    await reports.reportClientDisconnection({
      user_id: 'u',
      client_id: 'a',
      connected_at: now,
      disconnected_at: minutes(1),
    });
    await reports.reportClientDisconnection({
      user_id: 'u',
      client_id: 'b',
      connected_at: minutes(-1),
      disconnected_at: minutes(1),
    });
    expect((await rows()).map((r) => [r.client_id, r.disconnected])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    expect(await reports.getConnectedClients()).toEqual({ users: 1, sdks: [{ sdk: 'sdk', users: 1, clients: 1 }] });
  });

  test('pages: newest first, connections at the same instant in the order recorded (as upstream), across pages', async () => {
    // Recorded in this order; ids are random, so an id tiebreak would shuffle them.
    for (const client of ['t1', 't2', 't3', 't4', 't5']) await connect('tie', client, 'sdk', minutes(-3), minutes(5));
    await connect('newer', 'n1', 'sdk', minutes(-1), minutes(5));
    // Upstream's fixture shape: rows written by SQL in one statement, ids whose order disagrees with insertion.
    await factory.db.query(
      `INSERT INTO ps_report.connection_report_events (id, user_id, client_id, sdk, user_agent, connected_at)
       VALUES ('month', 'um', 'cm', 'sdk', 'ua', $1), ('expired', 'ue', 'ce', 'sdk', 'ua', $1),
              ('x-us-3', 'us', 'c3', 'sdk', 'ua', $2::timestamptz + interval '3 microseconds'),
              ('x-us-2', 'us', 'c2', 'sdk', 'ua', $2::timestamptz + interval '2 microseconds'),
              ('x-us-1', 'us', 'c1', 'sdk', 'ua', $2::timestamptz + interval '1 microsecond')`,
      [days(-30), days(-20)],
    );
    const order: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await reports.getGeneralClientConnectionAnalytics({ limit: 2, cursor });
      order.push(...page.items.map((i) => i.client_id));
      cursor = page.cursor;
    } while (cursor != null);
    // c3, c2, c1 are a microsecond apart; a page ends at c2: c1 still comes, although a JS Date can't tell them apart.
    expect(order).toEqual(['n1', 't1', 't2', 't3', 't4', 't5', 'c3', 'c2', 'c1', 'cm', 'ce']);

    // A bare ISO date (PowerSync's own cursor) continues strictly before that instant.
    const before = await reports.getGeneralClientConnectionAnalytics({ cursor: minutes(-1).toISOString() });
    expect(before.items.map((i) => i.client_id)).toEqual(['t1', 't2', 't3', 't4', 't5', 'c3', 'c2', 'c1', 'cm', 'ce']);
  });

  test('pages: newest first, every row exactly once (also rows connected at the same instant), filters', async () => {
    await fixture();
    // Three connections at one instant: a time-only cursor would skip some of them.
    for (const client of ['s1', 's2', 's3']) await connect('same', client, 'sdk', minutes(-2), minutes(5));
    const seen: ClientConnection[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await reports.getGeneralClientConnectionAnalytics({ limit: 2, cursor });
      expect(page.count).toBe(page.items.length);
      expect(page.more).toBe(page.cursor != null);
      seen.push(...page.items);
      cursor = page.cursor;
      pages++;
    } while (cursor != null);
    expect(seen).toHaveLength(11);
    expect(new Set(seen.map((s) => s.id)).size).toBe(11);
    const times = seen.map((s) => s.connected_at.getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(pages).toBe(6);
    expect(seen.find((s) => s.user_id === 'um')).toMatchObject({
      client_id: 'cm',
      sdk: 'powersync-js/1.23.6',
      user_agent: 'powersync-js/1.23.6 test',
      jwt_exp: undefined,
      disconnected_at: days(-30),
    });

    const byClient = await reports.getGeneralClientConnectionAnalytics({ client_id: 'c1' });
    expect(byClient.items.map((i) => i.user_id).sort()).toEqual(['u1', 'uw']);
    expect(byClient).toMatchObject({ count: 2, more: false, cursor: undefined });
    const byUser = await reports.getGeneralClientConnectionAnalytics({ user_id: 'u1' });
    expect(byUser.items.map((i) => i.client_id)).toEqual(['c1', '']);
    const ranged = await reports.getGeneralClientConnectionAnalytics({
      client_id: 'c1',
      user_id: 'u1',
      date_range: { start: days(-7), end: now },
    });
    expect(ranged.items.map((i) => [i.user_id, i.client_id])).toEqual([['u1', 'c1']]);
    const week = await reports.getGeneralClientConnectionAnalytics({
      date_range: { start: days(-7), end: minutes(-5) },
    });
    expect(week.items.map((i) => i.user_id).sort()).toEqual(['u1', 'u2', 'u3', 'uw']);
  });

  test('retention: deleteOldConnectionData removes old closed or expired rows and keeps open ones', async () => {
    await fixture();
    await connect('open-old', 'c', 'sdk', days(-40), days(1)); // still connected, token valid
    await reports.deleteOldConnectionData({ date: days(-2) });
    expect((await rows()).map((r) => r.user_id).sort()).toEqual(['open-old', 'u1', 'u1', 'u2', 'u3', 'u4']);
    await reports.deleteOldConnectionData({ date: minutes(1) });
    // u3 was disconnected, u4's token had expired; the connected ones stay.
    expect((await rows()).map((r) => r.user_id).sort()).toEqual(['open-old', 'u1', 'u1', 'u2']);
  });

  test('bad input is a precise INVALID_INPUT and writes nothing', async () => {
    const bad = [
      () =>
        reports.reportClientConnection({
          user_id: 'u',
          client_id: 'c',
          sdk: 's',
          connected_at: new Date('x'),
          jwt_exp: now,
        }),
      () =>
        reports.reportClientConnection({
          user_id: 1 as unknown as string,
          client_id: 'c',
          sdk: 's',
          connected_at: now,
          jwt_exp: now,
        }),
      () => reports.getGeneralClientConnectionAnalytics({ limit: 0 }),
      () => reports.getGeneralClientConnectionAnalytics({ cursor: 'not a date' }),
      () => reports.deleteOldConnectionData({ date: 'yesterday' as unknown as Date }),
    ];
    for (const call of bad) {
      const error = await call().then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PgStateError);
      expect((error as PgStateError).code).toBe('INVALID_INPUT');
    }
    expect(await rows()).toEqual([]);
  });

  test("the provider's ActiveStorage hands out this report storage", async () => {
    const active = await new PgStateStorageProvider().getStorage({
      resolvedConfig: { storage: { type: 'pgstate', uri: url, schema: 'ps_report', sslmode: 'disable' } },
    });
    try {
      await active.reportStorage.reportClientConnection({
        user_id: 'via-provider',
        client_id: 'c',
        sdk: 'sdk',
        connected_at: now,
        jwt_exp: minutes(5),
      });
      expect((await rows()).map((r) => r.user_id)).toEqual(['via-provider']);
      expect((await active.reportStorage.getConnectedClients()).users).toBe(1);
    } finally {
      await active.shutDown();
    }
  });
});
