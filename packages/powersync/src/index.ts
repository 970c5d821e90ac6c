/** Placeholder: filled by the issue that builds this package. */
export const packageName = '@pgstate/powersync';
