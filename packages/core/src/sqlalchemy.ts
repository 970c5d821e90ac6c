/**
 * SQLAlchemy names the driver in the URL scheme (`postgresql+psycopg://`, Meltano's own `database_uri` form); libpq
 * and node-postgres only know `postgres://` and `postgresql://`. The driver part means nothing here, so drop it.
 */
const SQLALCHEMY_SCHEME = /^(postgres|postgresql)\+[A-Za-z0-9_]+:\/\//i;

/** `postgresql+psycopg://...` -> `postgresql://...`; any other string is returned unchanged. */
export function withoutSqlAlchemyDriver(url: string): string {
  return url.replace(SQLALCHEMY_SCHEME, 'postgresql://');
}
