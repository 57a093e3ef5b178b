// Upstream behaviours, one row each, read from cloudfoundry/cf-networking-release
// (the policy server) and cloudfoundry/silk-release (silk-controller): the
// request, what upstream's handler answers, and the file that says so. The
// rows drive the controller's real router; a last test runs a real server on
// a unix socket for the headers that only the HTTP layer writes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller, DEFAULT_LEASE_EXPIRY_SECONDS } from '../../../src/control/controller.js';
import { MemoryStore } from '../../../src/control/store.js';
import { controllerRouter, startController } from '../../../src/control/server.js';
import { HttpError, type JsonRequest } from '../../../src/net/http.js';
import { TokenVerifier, signToken } from '../../../src/control/auth.js';

const PS = 'cf-networking-release: src/code.cloudfoundry.org/policy-server/';
const SILK = 'silk-release: src/code.cloudfoundry.org/silk/controller/';

const EXT = '/networking/v1/external/policies';
const DEL = '/networking/v1/external/policies/delete';
const pol = (s: string, d: string, start = 8080, end = start, protocol = 'tcp') => ({
  source: { id: s },
  destination: { id: d, protocol, ports: { start, end } },
});
const V = 'mapper: validate policies: ';
const U = 'mapper: unmarshal json: json: cannot unmarshal ';

/** Token kinds a step can carry; signed once in beforeAll. */
type TokenKind = 'none' | 'garbage' | 'admin' | 'write' | 'expired' | 'admin-lowercase' | 'other-key';

interface Step {
  method: string;
  path: string;
  body?: unknown;
  /** Over TCP with this token (default: the unix socket, trusted). */
  token?: TokenKind;
  want: {
    status: number;
    body?: unknown;
    error?: string;
    text?: RegExp;
    headers?: Record<string, string>;
  };
}

interface Case {
  name: string;
  /** The upstream file the behaviour comes from. */
  from: string;
  controller?: { overlayNetwork?: string; subnetPrefixLength?: number; leaseExpirySeconds?: number };
  /** Requests made first; each must answer 200. */
  before?: Omit<Step, 'want'>[];
  steps: Step[];
}

const l1 = { underlay_ip: '10.244.4.5', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };
const l2 = { underlay_ip: '10.244.4.6', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' };

const CASES: Case[] = [
  // --- external policy API ---
  {
    name: 'create answers 200 {}',
    from: PS + 'handlers/policies_create.go',
    steps: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b')] }, want: { status: 200, body: {} } }],
  },
  {
    name: 'delete answers 200 {}',
    from: PS + 'handlers/policies_delete.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b')] } }],
    steps: [
      { method: 'POST', path: DEL, body: { policies: [pol('a', 'b')] }, want: { status: 200, body: {} } },
      { method: 'GET', path: EXT, want: { status: 200, body: { total_policies: 0, policies: [] } } },
    ],
  },
  {
    name: 'index lists total_policies and policies without tags',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b')] } }],
    steps: [{ method: 'GET', path: EXT, want: { status: 200, body: { total_policies: 1, policies: [pol('a', 'b')] } } }],
  },
  {
    name: 'index ?id= keeps policies naming the app on either side',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b'), pol('c', 'a'), pol('c', 'd')] } }],
    steps: [{ method: 'GET', path: `${EXT}?id=a`, want: { status: 200, body: { total_policies: 2, policies: [pol('a', 'b'), pol('c', 'a')] } } }],
  },
  {
    name: 'index: id wins over source_id and dest_id',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b'), pol('c', 'a'), pol('c', 'd')] } }],
    steps: [
      { method: 'GET', path: `${EXT}?id=a&source_id=c&dest_id=d`, want: { status: 200, body: { total_policies: 2, policies: [pol('a', 'b'), pol('c', 'a')] } } },
    ],
  },
  {
    name: 'index: source_id and dest_id together must both match',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b'), pol('c', 'a'), pol('c', 'd')] } }],
    steps: [{ method: 'GET', path: `${EXT}?source_id=c&dest_id=d`, want: { status: 200, body: { total_policies: 1, policies: [pol('c', 'd')] } } }],
  },
  {
    name: 'index: source_id alone, comma-separated',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b'), pol('c', 'a'), pol('e', 'd')] } }],
    steps: [{ method: 'GET', path: `${EXT}?source_id=a,e`, want: { status: 200, body: { total_policies: 2, policies: [pol('a', 'b'), pol('e', 'd')] } } }],
  },
  {
    name: 'index: dest_id alone',
    from: PS + 'handlers/policies_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b'), pol('c', 'a')] } }],
    steps: [{ method: 'GET', path: `${EXT}?dest_id=a`, want: { status: 200, body: { total_policies: 1, policies: [pol('c', 'a')] } } }],
  },
  {
    name: 'unknown fields are ignored (Go decoder), so a GET body posts back',
    from: PS + 'api/api_policy_mapper.go',
    steps: [
      {
        method: 'POST',
        path: EXT,
        body: { total_policies: 1, policies: [{ ...pol('a', 'b'), source: { id: 'a', type: 'app' }, extra: true }] },
        want: { status: 200, body: {} },
      },
      { method: 'GET', path: EXT, want: { status: 200, body: { total_policies: 1, policies: [pol('a', 'b')] } } },
    ],
  },
  {
    name: 'an empty tag is "not specified"',
    from: PS + 'api/policy_validator.go',
    steps: [{ method: 'POST', path: EXT, body: { policies: [{ source: { id: 'a', tag: '' }, destination: pol('a', 'b').destination }] }, want: { status: 200, body: {} } }],
  },
  ...(
    [
      ['empty list', { policies: [] }, V + 'missing policies'],
      ['no source id', { policies: [{ source: {}, destination: pol('a', 'b').destination }] }, V + 'missing source id'],
      ['no destination id', { policies: [{ source: { id: 'a' }, destination: { protocol: 'tcp', ports: { start: 1, end: 1 } } }] }, V + 'missing destination id'],
      ['protocol icmp', { policies: [pol('a', 'b', 80, 80, 'icmp')] }, V + 'invalid destination protocol, specify either udp or tcp'],
      ['start above end', { policies: [pol('a', 'b', 90, 80)] }, V + 'invalid port range 90-80, start must be less than or equal to end'],
      ['negative start', { policies: [pol('a', 'b', -1, 80)] }, V + 'invalid start port -1, must be in range 1-65535'],
      ['start 0', { policies: [pol('a', 'b', 0, 80)] }, V + 'missing start port'],
      ['end 65536', { policies: [pol('a', 'b', 80, 65536)] }, V + 'invalid end port 65536, must be in range 1-65535'],
      ['a tag', { policies: [{ source: { id: 'a', tag: '0001' }, destination: pol('a', 'b').destination }] }, V + 'tags may not be specified'],
      ['id a number', { policies: [{ source: { id: 5 }, destination: pol('a', 'b').destination }] }, U + 'number into Go struct field Source.policies.source.id of type string'],
      ['fractional port', { policies: [pol('a', 'b', 80.5, 81)] }, U + 'number 80.5 into Go struct field Ports.policies.destination.ports.start of type int'],
      ['body an array', [pol('a', 'b')], U + 'array into Go value of type api.PoliciesPayload'],
    ] as [string, unknown, string][]
  ).map(
    ([what, body, error]): Case => ({
      name: `validator: ${what} → 400 "${error}"`,
      from: PS + (error.startsWith(V) ? 'api/policy_validator.go' : 'api/api_policy_mapper.go'),
      steps: [
        { method: 'POST', path: EXT, body, want: { status: 400, error } },
        { method: 'POST', path: DEL, body, want: { status: 400, error } },
      ],
    }),
  ),
  {
    name: 'an empty body is "unexpected end of JSON input"',
    from: PS + 'api/api_policy_mapper.go',
    steps: [{ method: 'POST', path: EXT, want: { status: 400, error: 'mapper: unmarshal json: unexpected end of JSON input' } }],
  },
  {
    name: 'another API version is 406',
    from: PS + 'handlers/check_version_wrapper.go',
    steps: [
      { method: 'GET', path: '/networking/v2/external/policies', want: { status: 406, error: "api version 'v2' not supported" } },
      { method: 'GET', path: '/networking/v9/external/tags', want: { status: 406, error: "api version 'v9' not supported" } },
    ],
  },
  {
    name: 'tags index carries type "app"',
    from: PS + 'handlers/tags_index.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b')] } }],
    steps: [
      {
        method: 'GET',
        path: '/networking/v1/external/tags',
        want: { status: 200, body: { tags: [{ id: 'a', tag: '0001', type: 'app' }, { id: 'b', tag: '0002', type: 'app' }] } },
      },
    ],
  },
  // --- internal API ---
  {
    name: 'internal policies carry both tags',
    from: PS + 'handlers/policies_index_internal.go',
    before: [{ method: 'POST', path: EXT, body: { policies: [pol('a', 'b')] } }],
    steps: [
      {
        method: 'GET',
        path: '/networking/v1/internal/policies?id=b',
        want: {
          status: 200,
          body: {
            total_policies: 1,
            policies: [{ source: { id: 'a', tag: '0001' }, destination: { id: 'b', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }],
          },
        },
      },
    ],
  },
  {
    name: 'PUT internal tags makes a tag with its type, and gives it back the same',
    from: PS + 'handlers/tags_create.go',
    steps: [
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { id: 'space-1', type: 'space' }, want: { status: 200, body: { id: 'space-1', tag: '0001', type: 'space' } } },
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { id: 'space-1', type: 'space' }, want: { status: 200, body: { id: 'space-1', tag: '0001', type: 'space' } } },
      { method: 'GET', path: '/networking/v1/external/tags', want: { status: 200, body: { tags: [{ id: 'space-1', tag: '0001', type: 'space' }] } } },
    ],
  },
  {
    name: 'a made tag stays without policies; a policy then takes it over',
    from: PS + 'store/group.go',
    steps: [
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { id: 'a', type: 'app' }, want: { status: 200, body: { id: 'a', tag: '0001', type: 'app' } } },
      { method: 'POST', path: EXT, body: { policies: [pol('b', 'a')] }, want: { status: 200, body: {} } },
      { method: 'POST', path: DEL, body: { policies: [pol('b', 'a')] }, want: { status: 200, body: {} } },
      { method: 'GET', path: '/networking/v1/external/tags', want: { status: 200, body: { tags: [] } } },
    ],
  },
  {
    // Found running upstream's vxlan-policy-agent against silkworm (scripts/upstream-by-hand.sh, part d):
    // its policy_client sends TagRequest{ID, Type}, a struct without json tags, so the keys are "ID" and
    // "Type"; the policy server's Group{`json:"type"`, `json:"id"`} decodes them because Go's decoder
    // matches keys ignoring case. silkworm answered 400 "id is missing" and the agent's every cycle failed.
    name: "PUT internal tags as vxlan-policy-agent sends it ({\"ID\",\"Type\"}): keys match ignoring case, as Go's decoder does",
    from: 'silk-release: src/code.cloudfoundry.org/vendor/code.cloudfoundry.org/policy_client/internal_policy_client.go',
    steps: [
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { ID: 'INGRESS_ROUTER', Type: 'router' }, want: { status: 200, body: { id: 'INGRESS_ROUTER', tag: '0001', type: 'router' } } },
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { id: 'INGRESS_ROUTER', TYPE: 'router' }, want: { status: 200, body: { id: 'INGRESS_ROUTER', tag: '0001', type: 'router' } } },
      // An exact key and a folded one: the later key wins, as in encoding/json.
      { method: 'PUT', path: '/networking/v1/internal/tags', body: { id: 'other', Id: 'space-9', type: 'space' }, want: { status: 200, body: { id: 'space-9', tag: '0002', type: 'space' } } },
    ],
  },
  {
    name: 'lease bodies decode as Go does: keys match ignoring case',
    // handlers/lease_acquire.go and renew_lease.go json.Unmarshal into controller.Lease (json:"underlay_ip"…).
    from: SILK + 'handlers/renew_lease.go',
    steps: [
      { method: 'PUT', path: '/leases/acquire', body: { Underlay_IP: '10.244.4.5' }, want: { status: 200, body: l1 } },
      { method: 'PUT', path: '/leases/renew', body: { UNDERLAY_IP: l1.underlay_ip, Overlay_Subnet: l1.overlay_subnet, overlay_hardware_addr: l1.overlay_hardware_addr }, want: { status: 200 } },
    ],
  },
  {
    name: 'PUT internal tags with a body that does not parse is 400',
    from: PS + 'handlers/tags_create.go',
    steps: [{ method: 'PUT', path: '/networking/v1/internal/tags', body: ['x'], want: { status: 400, error: 'failed parsing request body' } }],
  },
  {
    name: 'policies_last_updated is Unix nanoseconds as text',
    from: PS + 'handlers/policies_last_updated_internal.go',
    steps: [{ method: 'GET', path: '/networking/v1/internal/policies_last_updated', want: { status: 200, text: /^1700000000000000000$/ } }],
  },
  {
    name: 'security_groups is an empty page',
    from: PS + 'handlers/asgs_index.go',
    steps: [{ method: 'GET', path: '/networking/v1/internal/security_groups', want: { status: 200, body: { next: 0, security_groups: [] } } }],
  },
  {
    name: 'GET / and /networking are the uptime text',
    from: PS + 'handlers/uptime_handler.go',
    steps: [
      { method: 'GET', path: '/', want: { status: 200, text: /^Network policy server, up for [0-9.]+(ns|µs|ms|s)\n$/ } },
      { method: 'GET', path: '/networking', want: { status: 200, text: /^Network policy server, up for / } },
    ],
  },
  {
    name: 'GET /health is 200 with an empty body',
    from: PS + 'handlers/health.go',
    steps: [{ method: 'GET', path: '/health', want: { status: 200, text: /^$/ } }],
  },
  // --- tokens ---
  {
    name: 'TCP without Authorization is 401 "missing authorization header" with WWW-Authenticate',
    from: PS + 'handlers/auth_middleware.go',
    steps: [{ method: 'GET', path: EXT, token: 'none', want: { status: 401, error: 'missing authorization header', headers: { 'www-authenticate': 'Bearer' } } }],
  },
  {
    name: 'a token that does not verify is 401 "failed to verify token with uaa"',
    from: PS + 'handlers/auth_middleware.go',
    steps: [
      { method: 'GET', path: EXT, token: 'garbage', want: { status: 401, error: 'failed to verify token with uaa' } },
      { method: 'GET', path: EXT, token: 'expired', want: { status: 401, error: 'failed to verify token with uaa' } },
      { method: 'GET', path: EXT, token: 'other-key', want: { status: 401, error: 'failed to verify token with uaa' } },
    ],
  },
  {
    name: 'network.write may read but not change: 403 with the scopes',
    from: PS + 'cmd/policy-server/main.go',
    steps: [
      { method: 'GET', path: EXT, token: 'write', want: { status: 200, body: { total_policies: 0, policies: [] } } },
      {
        method: 'POST',
        path: EXT,
        token: 'write',
        body: { policies: [pol('a', 'b')] },
        want: { status: 403, error: 'provided scopes [network.write] do not include allowed scopes [network.admin]' },
      },
    ],
  },
  {
    name: 'network.admin changes; "bearer " in lower case is accepted too',
    from: PS + 'handlers/auth_middleware.go',
    steps: [
      { method: 'POST', path: EXT, token: 'admin', body: { policies: [pol('a', 'b')] }, want: { status: 200, body: {} } },
      { method: 'POST', path: DEL, token: 'admin-lowercase', body: { policies: [pol('a', 'b')] }, want: { status: 200, body: {} } },
    ],
  },
  {
    name: 'version is checked before the token',
    from: PS + 'cmd/policy-server/main.go',
    steps: [{ method: 'GET', path: '/networking/v2/external/policies', token: 'none', want: { status: 406, error: "api version 'v2' not supported" } }],
  },
  // --- silk-controller leases ---
  {
    name: 'acquire gives a /24 with the ee:ee VTEP MAC; again gives the same',
    from: SILK + 'integration/integration_test.go',
    steps: [
      { method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' }, want: { status: 200, body: l1 } },
      { method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' }, want: { status: 200, body: l1 } },
    ],
  },
  {
    name: 'single_overlay_ip acquires a /32 inside the first block',
    from: SILK + 'leaser/cidrpool.go',
    steps: [
      {
        method: 'PUT',
        path: '/leases/acquire',
        body: { underlay_ip: '10.244.4.6', single_overlay_ip: true },
        want: { status: 200, body: { underlay_ip: '10.244.4.6', overlay_subnet: '10.255.0.1/32', overlay_hardware_addr: 'ee:ee:0a:ff:00:01' } },
      },
    ],
  },
  {
    name: 'a bad underlay IP is "invalid ipv4 address"',
    from: SILK + 'leaser/lease_controller.go',
    steps: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: 'cell1' }, want: { status: 400, error: 'invalid ipv4 address: cell1' } }],
  },
  {
    name: 'acquire body with a wrong type is 400 unmarshal-request',
    from: SILK + 'handlers/lease_acquire.go',
    steps: [
      {
        method: 'PUT',
        path: '/leases/acquire',
        body: { underlay_ip: 7 },
        want: { status: 400, error: 'unmarshal-request: json: cannot unmarshal number into Go struct field .underlay_ip of type string' },
      },
    ],
  },
  {
    name: 'no free subnet is 409 "no lease available"',
    from: SILK + 'handlers/lease_acquire.go',
    controller: { overlayNetwork: '10.255.0.0/29', subnetPrefixLength: 30 },
    before: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' } }],
    steps: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.6' }, want: { status: 409, error: 'no lease available' } }],
  },
  {
    name: 'renew of the held lease is 200',
    from: SILK + 'handlers/renew_lease.go',
    before: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' } }],
    steps: [{ method: 'PUT', path: '/leases/renew', body: l1, want: { status: 200 } }],
  },
  {
    name: 'renew of a corrupted lease is 409 "renew-subnet-lease: lease mismatch" and changes nothing',
    from: SILK + 'integration/integration_test.go',
    before: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' } }],
    steps: [
      { method: 'PUT', path: '/leases/renew', body: { ...l1, overlay_subnet: '10.9.9.9/24' }, want: { status: 409, error: 'renew-subnet-lease: lease mismatch' } },
      { method: 'GET', path: '/leases', want: { status: 200, body: { leases: [l1] } } },
    ],
  },
  {
    name: 'renew of a lease the controller does not hold re-creates it',
    from: SILK + 'integration/integration_test.go',
    steps: [
      {
        method: 'PUT',
        path: '/leases/renew',
        body: { underlay_ip: '10.244.9.9', overlay_subnet: '10.255.9.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:09:00' },
        want: { status: 200 },
      },
      {
        method: 'GET',
        path: '/leases',
        want: { status: 200, body: { leases: [{ underlay_ip: '10.244.9.9', overlay_subnet: '10.255.9.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:09:00' }] } },
      },
    ],
  },
  {
    name: 'a lease that does not parse is non-retriable (409) with the validator text',
    from: SILK + 'leaser/validator.go',
    steps: [
      { method: 'PUT', path: '/leases/renew', body: { ...l1, underlay_ip: 'x' }, want: { status: 409, error: 'renew-subnet-lease: invalid underlay ip: x' } },
      { method: 'PUT', path: '/leases/renew', body: { ...l1, overlay_subnet: '10.255.1.0' }, want: { status: 409, error: 'renew-subnet-lease: invalid CIDR address: 10.255.1.0' } },
      { method: 'PUT', path: '/leases/renew', body: { ...l1, overlay_hardware_addr: 'zz' }, want: { status: 409, error: 'renew-subnet-lease: address zz: invalid MAC address' } },
    ],
  },
  {
    name: 'renew body with a wrong type is 400 unmarshal-request',
    from: SILK + 'handlers/renew_lease.go',
    steps: [
      {
        method: 'PUT',
        path: '/leases/renew',
        body: { ...l1, underlay_ip: 1 },
        want: { status: 400, error: 'unmarshal-request: json: cannot unmarshal number into Go struct field Lease.underlay_ip of type string' },
      },
    ],
  },
  {
    name: 'release answers {}, also for a lease nobody holds',
    from: SILK + 'handlers/release_lease.go',
    before: [{ method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' } }],
    steps: [
      { method: 'PUT', path: '/leases/release', body: { underlay_ip: '10.244.4.5' }, want: { status: 200, body: {} } },
      { method: 'PUT', path: '/leases/release', body: { underlay_ip: '10.244.4.5' }, want: { status: 200, body: {} } },
      { method: 'GET', path: '/leases', want: { status: 200, body: { leases: [] } } },
    ],
  },
  {
    name: 'GET /leases lists blocks and single IPs',
    from: SILK + 'integration/integration_test.go',
    before: [
      { method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.5' } },
      { method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.6' } },
      { method: 'PUT', path: '/leases/acquire', body: { underlay_ip: '10.244.4.7', single_overlay_ip: true } },
    ],
    steps: [
      {
        method: 'GET',
        path: '/leases',
        want: {
          status: 200,
          body: {
            leases: [
              { underlay_ip: '10.244.4.7', overlay_subnet: '10.255.0.1/32', overlay_hardware_addr: 'ee:ee:0a:ff:00:01' },
              l1,
              l2,
            ],
          },
        },
      },
    ],
  },
];

describe('upstream behaviours, one row each', () => {
  let tokens: Record<TokenKind, string | undefined>;
  let verifier: TokenVerifier;

  beforeAll(async () => {
    const kp = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = kp.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    verifier = TokenVerifier.fromText(kp.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const sign = (scopes: string[], expiresInS = 3600, now?: number, key = pem) => signToken({ signingKeyPem: key, scopes, expiresInS, now });
    const admin = await sign(['network.admin']);
    tokens = {
      none: undefined,
      garbage: 'Bearer not.a.token',
      admin: `Bearer ${admin}`,
      'admin-lowercase': `bearer ${admin}`,
      write: `Bearer ${await sign(['network.write'])}`,
      expired: `Bearer ${await sign(['network.admin'], 60, Date.now() - 3_600_000)}`,
      'other-key': `Bearer ${await sign(['network.admin'], 3600, undefined, other.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())}`,
    };
  });

  it('has at least 40 rows, each naming an upstream file', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    for (const c of CASES) expect(c.from, c.name).toMatch(/^(cf-networking-release|silk-release): src\/code\.cloudfoundry\.org\/\S+\.go$/);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const ctl = new Controller({ store: new MemoryStore(), now: () => 1_700_000_000_000, ...c.controller });
    const handle = controllerRouter(ctl, { tokenVerifier: verifier }).handle;
    const call = async (s: Omit<Step, 'want'>) => {
      const u = new URL(s.path, 'http://x');
      const req: JsonRequest = {
        method: s.method,
        path: u.pathname,
        query: u.searchParams,
        body: s.body,
        signal: new AbortController().signal,
        transport: s.token ? 'tcp' : 'unix',
        headers: s.token && tokens[s.token] !== undefined ? { authorization: tokens[s.token] } : {},
      };
      try {
        return await handle(req);
      } catch (e) {
        if (e instanceof HttpError) return { status: e.status, body: { error: e.message }, headers: undefined, raw: undefined, contentType: undefined };
        throw e;
      }
    };
    for (const b of c.before ?? []) expect((await call(b)).status, `before: ${b.method} ${b.path}`).toBe(200);
    for (const s of c.steps) {
      const r = await call(s);
      const where = `${s.method} ${s.path}`;
      expect(r.status, where).toBe(s.want.status);
      const json = r.raw !== undefined && !(r.contentType ?? '').startsWith('text/');
      const body = json ? JSON.parse(r.raw!.toString()) : r.body;
      if (s.want.body !== undefined) expect(body, where).toEqual(s.want.body);
      if (s.want.error !== undefined) expect(body, where).toEqual({ error: s.want.error });
      if (s.want.text !== undefined) expect(r.raw?.toString(), where).toMatch(s.want.text);
      if (s.want.headers) expect(r.headers, where).toMatchObject(s.want.headers);
    }
    ctl.close();
  });
});

// Rows that need more than one controller (the overlay network changes between
// two runs over one store, as silk's integration tests restart silk-controller).
describe('upstream behaviours across a network change', () => {
  const from = SILK + 'integration/integration_test.go';
  const restart = (store: MemoryStore, overlayNetwork: string, now = () => 0) =>
    new Controller({ store, overlayNetwork, now });

  it(`renews the same lease in the old network (${from})`, () => {
    const store = new MemoryStore();
    const old = restart(store, '10.255.0.0/16').acquireLease('10.244.4.5');
    const c = restart(store, '10.254.0.0/16');
    expect(c.renewLease(old)).toEqual(old);
    expect(c.leases()).toEqual([old]);
  });

  it(`acquire returns a new lease in the new network (${from})`, () => {
    const store = new MemoryStore();
    const old = restart(store, '10.255.0.0/16').acquireLease('10.244.4.5');
    const c = restart(store, '10.254.0.0/16');
    const fresh = c.acquireLease('10.244.4.5');
    expect(fresh).not.toEqual(old);
    expect(fresh).toEqual({ underlay_ip: '10.244.4.5', overlay_subnet: '10.254.1.0/24', overlay_hardware_addr: 'ee:ee:0a:fe:01:00' });
    expect(c.leases()).toEqual([fresh]);
    // and the old-network lease is gone for good, in the store too
    expect(restart(store, '10.254.0.0/16').leases()).toEqual([fresh]);
  });

  it(`lists the leases of both networks (${from})`, () => {
    const store = new MemoryStore();
    const old = restart(store, '10.255.0.0/16').acquireLease('10.244.4.5');
    const c = restart(store, '10.254.0.0/16');
    const fresh = c.acquireLease('10.244.4.6');
    expect(c.leases()).toEqual([fresh, old]);
  });

  it(`does not return expired leases; a renewed one stays (${from})`, () => {
    let now = 0;
    const c = new Controller({ store: new MemoryStore(), leaseExpirySeconds: 2, now: () => now });
    const a = c.acquireLease('10.244.4.5');
    const b = c.acquireLease('10.244.4.6');
    now = 1500;
    c.renewLease(b);
    now = 2500;
    expect(c.leases()).toEqual([b]);
    expect(a.overlay_subnet).toBe('10.255.1.0/24');
  });

  it(`reclaims expired leases when the pool is exhausted (${from})`, () => {
    let now = 0;
    const c = new Controller({ store: new MemoryStore(), overlayNetwork: '10.255.0.0/29', subnetPrefixLength: 30, leaseExpirySeconds: 1, now: () => now });
    const old = c.acquireLease('10.244.4.5');
    expect(() => c.acquireLease('10.244.4.6')).toThrow(/no overlay subnet is free/);
    now = 1001;
    expect(c.acquireLease('10.244.4.6').overlay_subnet).toBe(old.overlay_subnet);
  });

  it('the lease expiry default is 168 hours (silk-release: jobs/silk-controller/spec, subnet_lease_expiration_hours)', () => {
    expect(DEFAULT_LEASE_EXPIRY_SECONDS).toBe(168 * 3600);
    expect(new Controller({ store: new MemoryStore() }).leaseExpiryMs).toBe(168 * 3600 * 1000);
  });
});

describe('headers the HTTP layer writes (real server on a unix socket)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-upstream-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`X-Content-Type-Options: nosniff on every answer (${PS}handlers/no_sniff_header_handler.go)`, async () => {
    const running = await startController({ listen: { kind: 'unix', path: path.join(dir, 'c.sock') }, store: ':memory:' });
    try {
      for (const p of [EXT, '/', '/nope', '/networking/v2/external/policies']) {
        const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
          const req = http.request({ socketPath: path.join(dir, 'c.sock'), path: p, method: 'GET' }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.headers));
          });
          req.on('error', reject);
          req.end();
        });
        expect(headers['x-content-type-options'], p).toBe('nosniff');
      }
    } finally {
      await running.close();
    }
  });
});

describe('lease bookkeeping against a slow reference', () => {
  it('random acquire/release/renew/expire over blocks and single IPs hands out what a linear scan would', () => {
    let now = 0;
    const c = new Controller({ store: new MemoryStore(), overlayNetwork: '10.255.0.0/26', subnetPrefixLength: 29, leaseExpirySeconds: 10, now: () => now });
    // reference: underlay → { subnet, expiresAt }
    const ref = new Map<string, { subnet: string; expiresAt: number }>();
    const blocks = Array.from({ length: 7 }, (_, i) => `10.255.0.${(i + 1) * 8}/29`);
    const singles = Array.from({ length: 7 }, (_, i) => `10.255.0.${i + 1}/32`);
    let seed = 99;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let step = 0; step < 3000; step++) {
      const ip = `198.18.1.${rnd(20)}`;
      const op = rnd(10);
      if (op < 5) {
        const single = rnd(3) === 0;
        const held = ref.get(ip);
        let want: string | undefined;
        if (held) want = held.subnet;
        else {
          const pool = single ? singles : blocks;
          const taken = new Set([...ref.values()].map((l) => l.subnet));
          want = pool.find((s) => !taken.has(s));
          if (want === undefined) {
            const expired = [...ref].filter(([, l]) => l.expiresAt <= now && pool.includes(l.subnet)).sort((a, b) => a[1].expiresAt - b[1].expiresAt || a[1].subnet.localeCompare(b[1].subnet, 'en', { numeric: true }));
            if (expired.length) {
              want = expired[0]![1].subnet;
              ref.delete(expired[0]![0]);
            }
          }
        }
        if (want === undefined) {
          expect(() => c.acquireLease(ip, single)).toThrow(/is free/);
        } else {
          expect(c.acquireLease(ip, single).overlay_subnet, `step ${step}`).toBe(want);
          ref.set(ip, { subnet: want, expiresAt: now + 10_000 });
        }
      } else if (op < 7) {
        c.releaseLease({ underlay_ip: ip });
        ref.delete(ip);
      } else if (op < 9) {
        const held = ref.get(ip);
        if (held) {
          const l = c.renewLease({ underlay_ip: ip, overlay_subnet: held.subnet });
          expect(l.overlay_subnet).toBe(held.subnet);
          held.expiresAt = now + 10_000;
        }
      } else {
        now += 1000 * rnd(4);
      }
      const live = [...ref].filter(([, l]) => l.expiresAt > now).map(([u, l]) => `${u}=${l.subnet}`).sort();
      expect(c.leases().map((l) => `${l.underlay_ip}=${l.overlay_subnet}`).sort(), `step ${step}`).toEqual(live);
    }
  });
});
