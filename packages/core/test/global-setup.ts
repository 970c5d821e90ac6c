import 'vitest';
import type { TestProject } from 'vitest/node';
import { vitestGlobalSetup } from '../src/testing.js';

export default (project: TestProject) => vitestGlobalSetup(project);

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
