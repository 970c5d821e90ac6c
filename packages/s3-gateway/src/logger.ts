/** One structured log record. Never carries secrets: no Authorization header, signature or credential values. */
export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  requestId?: string;
  [field: string]: unknown;
}

export type Logger = (record: LogRecord) => void;

/** JSON lines on stderr, one record per line. */
export const jsonStderrLogger: Logger = (record) => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
};

export const silentLogger: Logger = () => {};
