export * from './keys.js';
export * from './contract.js';
export * from './client.js';
export * from './sessions.js';
