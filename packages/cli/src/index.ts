export const packageName = 'pgstate';
