/** @pgstate/powersync's entry in pgstate's adapter registry (also `@pgstate/powersync/adapter`, which loads nothing else). */
import {
  type AdapterDefinition,
  type AdapterDoctorContext,
  type AdapterDoctorFinding,
  PgStateError,
  validateIdentifier,
} from '@pgstate/core';

const NOTIFY = 'powersync-notify';
const NOTIFY_URL = 'powersync-notify-url';

export const powersyncAdapter: AdapterDefinition = {
  name: 'powersync',
  summary: 'PowerSync bucket storage (`storage.type: pgstate` in the PowerSync service)',
  // One layout: the storage tables in one schema.
  layouts: [{ name: 'storage', aliases: [], summary: 'PowerSync’s bucket storage tables in one schema', table: false }],
  defaultLayout: 'storage',
  urlParams: ['schema'],
  schemaPath: false,
  flags: [
    {
      flag: NOTIFY,
      value: '<mode>',
      description: 'PowerSync checkpoint notifications: listen | poll (as storage.checkpoint_notifications.mode)',
      commands: ['doctor'],
    },
    {
      flag: NOTIFY_URL,
      value: '<url>',
      description: 'PowerSync: the separate LISTEN URL (storage.checkpoint_notifications.uri)',
      commands: ['doctor'],
    },
  ],
  resolveSettings(input) {
    const layout = input.flags?.layout ?? input.urlParams?.layout;
    if (layout !== undefined && layout !== 'storage') {
      throw new PgStateError('BAD_SETTING', `Unknown Powersync layout ${JSON.stringify(layout).slice(0, 60)}.`, {
        fix: 'PowerSync has one layout (its storage tables in one schema): leave the layout out.',
      });
    }
    if (input.flags?.table !== undefined) {
      throw new PgStateError('BAD_SETTING', 'PowerSync’s tables have fixed names; a table does not apply.', {
        fix: 'Leave the table out; choose the schema instead.',
      });
    }
    const schema = input.flags?.schema ?? input.urlParams?.schema ?? input.schema;
    if (schema !== undefined) validateIdentifier(schema, 'schema name');
    return { adapter: 'powersync', layout: 'storage', ...(schema !== undefined ? { schema } : {}), extra: {} };
  },
  migrationTarget(settings) {
    return { adapter: 'powersync', ...(settings.schema ? { schema: settings.schema } : {}) };
  },
  detectLayouts: async () => [],
  async doctorChecks(context) {
    const asked = context.flags[NOTIFY] !== undefined || context.flags[NOTIFY_URL] !== undefined;
    // Watchers LISTEN for checkpoints: say how, when PowerSync is checked or its storage is installed.
    if (!context.strict && !context.installed && !asked) return [];
    return [await checkNotifications(context)];
  },
};

/**
 * Which checkpoint-notification mode the PowerSync service's settings give, and whether it works on this path:
 * LISTEN needs a session that stays on one backend, which transaction pooling (PgBouncer) does not give.
 */
async function checkNotifications(context: AdapterDoctorContext): Promise<AdapterDoctorFinding> {
  const id = 'notifications:powersync';
  const mode = context.flags[NOTIFY] ?? 'listen';
  if (mode !== 'listen' && mode !== 'poll') {
    throw new PgStateError('BAD_SETTING', `The checkpoint notification mode "${mode}" is not listen or poll.`, {
      fix: 'Use listen or poll (storage.checkpoint_notifications.mode).',
    });
  }
  if (mode === 'poll') {
    return {
      id,
      status: 'pass',
      detail:
        'checkpoint notifications by polling (storage.checkpoint_notifications.mode: poll): works through any pooler',
      data: { mode: 'poll' },
    };
  }
  const url = context.flags[NOTIFY_URL];
  if (url === undefined) {
    if (context.transactionPooling) {
      return {
        id,
        status: 'warn',
        detail:
          'checkpoint notifications by LISTEN on the storage URL, which goes through transaction pooling: live checkpoints would not reach sync clients',
        fix: 'Set storage.checkpoint_notifications.uri to a direct or session-mode URL (check it with --powersync-notify-url), or mode: poll (--powersync-notify poll).',
        data: { mode: 'listen', separateUrl: false, transactionPooling: true },
      };
    }
    return {
      id,
      status: 'pass',
      detail: 'checkpoint notifications by LISTEN on the storage URL (no transaction pooling on it)',
      data: { mode: 'listen', separateUrl: false, transactionPooling: false },
    };
  }
  const probe = await context.probePooling(url);
  if ('error' in probe) {
    return {
      id,
      status: 'fail',
      code: probe.error.code,
      detail: `checkpoint notifications by LISTEN on ${probe.where}: ${probe.error.message}`,
      ...(probe.error.fix ? { fix: probe.error.fix } : {}),
      data: { mode: 'listen', separateUrl: true },
    };
  }
  if (probe.pooled) {
    return {
      id,
      status: 'warn',
      detail: `checkpoint notifications by LISTEN on ${probe.where}, which also goes through transaction pooling`,
      fix: 'Point storage.checkpoint_notifications.uri at the server itself (or a session-mode pool), or use mode: poll.',
      data: { mode: 'listen', separateUrl: true, transactionPooling: true },
    };
  }
  return {
    id,
    status: 'pass',
    detail: `checkpoint notifications by LISTEN on a separate notification URL (${probe.where}, no transaction pooling)`,
    data: { mode: 'listen', separateUrl: true, transactionPooling: false },
  };
}
