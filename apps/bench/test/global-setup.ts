import 'vitest';
import { vitestGlobalSetup } from '@pgstate/core/testing';
import type { TestProject } from 'vitest/node';

export default (project: TestProject) => vitestGlobalSetup(project);

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
