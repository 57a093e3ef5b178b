// Moved to src/net/http.ts (the HTTP helpers sit below every room that talks
// to another process). Kept only so modules not yet updated still compile;
// import from '../net/http.js' instead.
export * from '../net/http.js';
