#!/usr/bin/env node
import { packageName } from './index.js';

console.log(`${packageName}: the command line is being built`);
