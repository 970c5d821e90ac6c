import { describe, expect, it } from 'vitest';
import { documentedCommands, runCli } from './helpers.js';

/** Every command path the CLI has, read from its own `--help` ("Commands:" sections), depth first. */
async function commandPaths(prefix: string[] = []): Promise<{ path: string[]; help: string }[]> {
  const r = await runCli([...prefix, '--help']);
  expect(r.code, `${prefix.join(' ')} --help: ${r.stderr}`).toBe(0);
  const found = [{ path: prefix, help: r.stdout }];
  const section = /\nCommands:\n([\s\S]*?)(?:\n\n|$)/.exec(r.stdout)?.[1] ?? '';
  const names = [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1] as string).filter((n) => n !== 'help');
  for (const name of names) found.push(...(await commandPaths([...prefix, name])));
  return found;
}

describe('every command’s --help', () => {
  it('has examples and states each default once', async () => {
    const all = await commandPaths();
    expect(all.length).toBeGreaterThan(20);
    for (const { path, help } of all) {
      const name = `pgstate ${path.join(' ')}`.trim();
      expect(help, `${name} has no Examples: block`).toMatch(/\nExamples:\n {2}\$ /);
      // An option whose description names its default must not get a second, different one from commander.
      const options = help.split(/\n(?= {2}-)/);
      for (const option of options) {
        const defaults = option.match(/\bdefault\b/g) ?? [];
        expect(defaults.length, `${name}: ${option.trim().replace(/\s+/g, ' ')}`).toBeLessThanOrEqual(1);
      }
    }
    // Every command that does something (not a group of commands) documents its --json data in docs/json.
    const leaves = all.filter(({ path, help }) => path.length > 0 && !/\nCommands:\n/.test(help)).map((c) => c.path);
    expect(
      documentedCommands()
        .map((p) => p.join(' '))
        .sort(),
    ).toEqual(leaves.map((p) => p.join(' ')).sort());
  }, 300_000);
});
