// Smoke test of the published `pgstate` CLI, installed alone: its bin runs.
import { execFileSync } from 'node:child_process';

const out = execFileSync('npx', ['--no-install', 'pgstate', '--help'], { encoding: 'utf8' });
console.log(`cli: ${out.trim().split('\n')[0]}`);
