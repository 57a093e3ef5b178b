// The cell's forwarding tables: route (longest prefix), neighbor, FDB.
export { RouteTable, LinearRouteTable, formatRoute, routeJson } from './route.js';
export type { RouteEntry, RouteJson } from './route.js';
export { NeighborTable, formatNeighbor, neighborJson } from './neighbor.js';
export type { NeighborEntry, NeighborJson } from './neighbor.js';
export { Fdb, macKey, formatFdb, fdbJson } from './fdb.js';
export type { FdbEntry, FdbJson } from './fdb.js';
export { U32Map } from './u32map.js';
