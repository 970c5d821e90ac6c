/**
 * vitest reporter used by the runner: one JSON line per test case (with the kit's adapter/lane meta) on the file
 * descriptor named by PGSTATE_CONFORMANCE_EVENTS_FD, so the runner can build the matrix and show progress.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';

export interface CaseEvent {
  type: 'case';
  file: string;
  adapter: string;
  lane: string;
  name: string;
  state: 'passed' | 'failed' | 'skipped' | 'pending';
  notRun?: string;
  durationMs: number;
  errors: string[];
  /** Figures the test measured (the kit's `figure(name, value)`). */
  figures?: Record<string, number | string>;
}
export interface ModuleEvent {
  type: 'module';
  file: string;
  errors: string[];
}
export interface EndEvent {
  type: 'end';
  errors: string[];
}
export type ReporterEvent = CaseEvent | ModuleEvent | EndEvent;

const short = (e: { message?: string; name?: string }) =>
  `${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message ?? ''}`.slice(0, 2000);

/** Files that are not conformance suites report under their file name as the adapter. */
function adapterOf(file: string): string {
  return path.basename(file).replace(/\.(conformance|test)\.[cm]?[jt]s$/, '');
}

export default class ConformanceReporter implements Reporter {
  private emit(event: ReporterEvent): void {
    const fd = Number(process.env.PGSTATE_CONFORMANCE_EVENTS_FD ?? 0);
    const line = `${JSON.stringify(event)}\n`;
    if (fd > 2) fs.writeSync(fd, line);
    else process.stdout.write(line);
  }

  onTestCaseResult(testCase: TestCase): void {
    const meta = testCase.meta().conformance;
    const result = testCase.result();
    const file = path.relative(process.cwd(), testCase.module.moduleId);
    this.emit({
      type: 'case',
      file,
      adapter: meta?.adapter ?? adapterOf(file),
      lane: meta?.lane ?? 'default',
      name: testCase.name,
      state: result.state,
      ...(meta?.notRun ? { notRun: meta.notRun } : {}),
      ...(meta?.figures ? { figures: meta.figures } : {}),
      durationMs: Math.round(testCase.diagnostic()?.duration ?? 0),
      errors: (result.errors ?? []).map(short),
    });
  }

  onTestModuleEnd(testModule: TestModule): void {
    const errors = testModule.errors().map(short);
    if (errors.length) this.emit({ type: 'module', file: path.relative(process.cwd(), testModule.moduleId), errors });
  }

  onTestRunEnd(
    _modules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<{ message?: string; name?: string }>,
  ): void {
    this.emit({ type: 'end', errors: unhandledErrors.map(short) });
  }
}
