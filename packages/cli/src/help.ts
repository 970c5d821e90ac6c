import type { Command } from 'commander';

/** Appends an "Examples:" block to a command's --help. Every command should have one. */
export function withExamples(command: Command, examples: readonly (readonly [string, string])[]): Command {
  const width = Math.max(...examples.map(([cmd]) => cmd.length));
  return command.addHelpText(
    'after',
    `\nExamples:\n${examples.map(([cmd, what]) => `  $ ${cmd.padEnd(width)}  # ${what}`).join('\n')}\n`,
  );
}
