import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  isDiscovery,
  normalizeMethod,
  parseRequestInfo,
  requestInfoAttributes,
  spanName,
  type RequestInfo,
} from '../../../src/stages/request-info.ts';

// Vectors from the apiserver's own RequestInfo tests, kept in the repository (test/fixtures/README.md).
const CASES_PATH = fileURLToPath(new URL('../../fixtures/requestinfo-cases.json', import.meta.url));

interface ResourceCase {
  method: string;
  url: string;
  verb: string;
  apiPrefix: string;
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  parts: string[];
}
interface IsResourceCase {
  method: string;
  url: string;
  isResourceRequest: boolean;
}
interface SelectorCase {
  method: string;
  url: string;
  name: string;
  verb: string;
  fieldSelector: string;
  labelSelector: string;
}
interface Cases {
  about: string;
  resourceRequests: ResourceCase[];
  isResourceRequest: IsResourceCase[];
  selectors: SelectorCase[];
}

function loadCases(): Cases {
  let text: string;
  try {
    text = readFileSync(CASES_PATH, 'utf8');
  } catch (err) {
    throw new Error(`RequestInfo vectors not found at ${CASES_PATH}`, { cause: err });
  }
  return JSON.parse(text) as Cases;
}

const cases = loadCases();

/** Split a vector URL the way the proxy hands it over: path and raw query separately. */
function parse(method: string, url: string): RequestInfo {
  const q = url.indexOf('?');
  return q === -1 ? parseRequestInfo(method, url) : parseRequestInfo(method, url.slice(0, q), url.slice(q + 1));
}

describe('requestinfo-cases.json', () => {
  it('has exactly the sections this suite covers, none empty', () => {
    expect(Object.keys(cases).sort()).toEqual(['about', 'isResourceRequest', 'resourceRequests', 'selectors']);
    expect(cases.about).toMatch(/requestinfo/i);
    expect(cases.resourceRequests.length).toBeGreaterThan(30);
    expect(cases.isResourceRequest.length).toBeGreaterThan(15);
    expect(cases.selectors.length).toBeGreaterThan(10);
  });

  describe('resourceRequests', () => {
    it.each(cases.resourceRequests.map((c) => [`${c.method} ${c.url}`, c] as const))('%s', (_, c) => {
      const info = parse(c.method, c.url);
      expect(info).toMatchObject({
        isResourceRequest: true,
        verb: c.verb,
        apiPrefix: c.apiPrefix,
        apiGroup: c.apiGroup,
        apiVersion: c.apiVersion,
        namespace: c.namespace,
        resource: c.resource,
        subresource: c.subresource,
        name: c.name,
        parts: c.parts,
      });
    });
  });

  describe('isResourceRequest', () => {
    it.each(cases.isResourceRequest.map((c) => [`${c.method} ${JSON.stringify(c.url)}`, c] as const))('%s', (_, c) => {
      expect(parse(c.method, c.url).isResourceRequest).toBe(c.isResourceRequest);
    });
  });

  describe('selectors', () => {
    it.each(cases.selectors.map((c) => [`${c.method} ${c.url}`, c] as const))('%s', (_, c) => {
      expect(parse(c.method, c.url)).toMatchObject({
        name: c.name,
        verb: c.verb,
        fieldSelector: c.fieldSelector,
        labelSelector: c.labelSelector,
      });
    });
  });
});

describe('parseRequestInfo: kubectl 1.32 URLs (protocol.md)', () => {
  const ns = '/api/v1/namespaces/default';
  it.each([
    // [method, url, verb, resource, subresource, name]
    ['GET', '/api/v1/pods?limit=500', 'list', 'pods', '', ''], // get pods -A
    ['GET', `${ns}/pods?includeObject=Object`, 'list', 'pods', '', ''], // --sort-by
    ['GET', `${ns}/pods?continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ&limit=500`, 'list', 'pods', '', ''],
    ['GET', `${ns}/pods?fieldSelector=status.phase%3DRunning&labelSelector=app%3Dx&limit=500`, 'list', 'pods', '', ''],
    ['GET', `${ns}/pods/nginx-1`, 'get', 'pods', '', 'nginx-1'], // get pod NAME -w, step 1
    [
      'GET',
      `${ns}/pods?fieldSelector=metadata.name%3Dnginx-1&resourceVersion=0&watch=true`,
      'watch',
      'pods',
      '',
      'nginx-1',
    ],
    ['GET', `${ns}/pods/nginx-1/log?container=nginx&follow=true`, 'get', 'pods', 'log', 'nginx-1'],
    // exec: WebSocket GET first, SPDY POST as the fallback
    ['GET', `${ns}/pods/p/exec?command=sh&container=c&stdin=true&stdout=true&tty=true`, 'get', 'pods', 'exec', 'p'],
    ['POST', `${ns}/pods/p/exec?command=sh&container=c&stdin=true&stdout=true&tty=true`, 'create', 'pods', 'exec', 'p'],
    ['GET', `${ns}/pods/p/attach?container=c&stdout=true`, 'get', 'pods', 'attach', 'p'],
    ['GET', `${ns}/pods/p/portforward`, 'get', 'pods', 'portforward', 'p'],
    ['POST', `${ns}/pods/p/portforward`, 'create', 'pods', 'portforward', 'p'],
    [
      'PATCH',
      `${ns}/pods/nginx-1?fieldManager=kubectl-client-side-apply&fieldValidation=Ignore`,
      'patch',
      'pods',
      '',
      'nginx-1',
    ],
    ['DELETE', `${ns}/pods/nginx-1`, 'delete', 'pods', '', 'nginx-1'],
    ['POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', 'create', 'selfsubjectaccessreviews', '', ''],
  ])('%s %s → %s', (method, url, verb, resource, subresource, name) => {
    expect(parse(method, url)).toMatchObject({ isResourceRequest: true, verb, resource, subresource, name });
  });

  it('takes the query from the path when none is given separately', () => {
    const info = parseRequestInfo('GET', '/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb&watch=1');
    expect(info).toMatchObject({ verb: 'watch', name: 'web', path: '/api/v1/namespaces/default/pods' });
  });

  it('accepts URLSearchParams', () => {
    const info = parseRequestInfo(
      'GET',
      '/api/v1/pods',
      new URLSearchParams({ watch: 'true', fieldSelector: 'metadata.name=a' }),
    );
    expect(info).toMatchObject({ verb: 'watch', name: 'a', fieldSelector: 'metadata.name=a' });
  });
});

describe('parseRequestInfo: upstream edge cases', () => {
  const list = '/api/v1/namespaces/ns/pods';

  it.each([
    ['watch=', 'watch'], // an empty value is true
    ['watch=TRUE', 'watch'],
    ['watch=yes', 'watch'],
    ['watch=FALSE', 'list'],
    ['watch=0', 'list'],
    ['watch=false&watch=true', 'list'], // only the first value counts
    ['watch=1;x=y', 'list'], // Go drops a pair containing ';'
    ['watch=%zz', 'list'], // and a pair with a bad escape
  ])('?%s → %s', (query, verb) => {
    expect(parseRequestInfo('GET', list, query).verb).toBe(verb);
  });

  it.each([
    ['fieldSelector=metadata.name%3D%3Dweb', 'web'], // ==
    ['fieldSelector=metadata.name%3Dweb%2Cstatus.phase%3DRunning', 'web'], // AND terms
    ['fieldSelector=metadata.name%3Dzeta%2Cmetadata.name%3Dalpha', 'alpha'], // terms are sorted first
    ['fieldSelector=metadata.name!%3Dweb', ''], // != never names
    ['fieldSelector=metadata.name%3D..', ''], // not a valid path segment
    ['fieldSelector=metadata.name%3Da%2Fb', ''], // '/' in the name
    ['fieldSelector=metadata.name%3Da%3Db', ''], // unescaped '=' in the value: parse error
    ['fieldSelector=metadata.name%3Dweb%2Cjunk', ''], // a term without operator: parse error
    ['fieldSelector=metadata.name%3Dweb%5C', ''], // dangling backslash: parse error
    ['fieldSelector=metadata.name%3Dweb&limit=abc', ''], // ListOptions decode fails on limit
    ['fieldSelector=metadata.name%3Dweb&limit=', ''],
    ['fieldSelector=metadata.name%3Dweb&timeoutSeconds=1.5', ''],
    ['fieldSelector=metadata.name%3Dweb&limit=9223372036854775808', ''], // int64 overflow
    ['fieldSelector=metadata.name%3Dweb&limit=9223372036854775807', 'web'],
    ['fieldSelector=metadata.name%3Dweb&limit=-1', 'web'], // parses; validation is later
    ['fieldSelector=spec.nodeName%3Dn1', ''],
  ])('?%s → name %j', (query, name) => {
    const info = parseRequestInfo('GET', list, query);
    expect(info.verb).toBe('list');
    expect(info.name).toBe(name);
  });

  it('derives a name with an escaped comma in it (a,b is a valid path segment)', () => {
    // metadata.name=a\,b unescapes to "a,b"
    expect(parseRequestInfo('GET', list, 'fieldSelector=metadata.name%3Da%5C%2Cb').name).toBe('a,b');
  });

  it('keeps the verb of a failed ListOptions decode: watch still counts', () => {
    const info = parseRequestInfo('GET', list, 'watch=true&limit=abc&fieldSelector=metadata.name%3Dweb');
    expect(info).toMatchObject({ verb: 'watch', name: '', fieldSelector: 'metadata.name=web' });
  });

  it('does not derive a name for deletecollection, but copies its selectors', () => {
    const info = parseRequestInfo('DELETE', list, 'fieldSelector=metadata.name%3Dweb&labelSelector=app%3Dx');
    expect(info).toMatchObject({
      verb: 'deletecollection',
      name: '',
      fieldSelector: 'metadata.name=web',
      labelSelector: 'app=x',
    });
  });

  it('copies no selectors for get, create or a /watch/ path', () => {
    for (const [method, url] of [
      ['GET', `${list}/web?fieldSelector=a%3Db`],
      ['POST', `${list}?fieldSelector=a%3Db`],
      ['GET', '/api/v1/watch/namespaces/ns/pods?fieldSelector=a%3Db'],
    ] as const) {
      expect(parse(method, url)).toMatchObject({ fieldSelector: '', labelSelector: '' });
    }
  });

  it('decodes the path like Go: %2F becomes a segment separator', () => {
    const info = parseRequestInfo('GET', '/api/v1/namespaces/ns/pods/a%2Fb');
    expect(info).toMatchObject({ path: '/api/v1/namespaces/ns/pods/a/b', name: 'a', subresource: 'b' });
  });

  it('keeps a path with a malformed escape undecoded', () => {
    expect(parseRequestInfo('GET', '/api/v1/namespaces/ns/pods/a%zz').name).toBe('a%zz');
  });

  it('maps methods case-sensitively and unknown ones to an empty verb', () => {
    expect(parseRequestInfo('OPTIONS', '/api/v1/pods').verb).toBe('');
    expect(parseRequestInfo('post', '/api/v1/namespaces/ns/pods').verb).toBe('');
    expect(parseRequestInfo('constructor', '/api/v1/namespaces/ns/pods').verb).toBe('');
  });

  it('keeps the lower-cased method as the verb of a non-resource request', () => {
    expect(parseRequestInfo('GET', '/version')).toMatchObject({
      isResourceRequest: false,
      verb: 'get',
      parts: [],
      resource: '',
    });
    expect(parseRequestInfo('POST', '/apis/apps/v1').verb).toBe('post');
  });

  it('returns what is known when a path verb has nothing after it (the apiserver answers 500)', () => {
    expect(parseRequestInfo('GET', '/api/v1/watch')).toMatchObject({
      isResourceRequest: true,
      apiVersion: 'v1',
      verb: 'get',
      resource: '',
      parts: [],
    });
  });

  it('treats the namespace of /namespaces/{ns} as its own namespace', () => {
    expect(parseRequestInfo('GET', '/api/v1/namespaces/ns1')).toMatchObject({
      resource: 'namespaces',
      name: 'ns1',
      namespace: 'ns1',
    });
  });
});

describe('spanName', () => {
  it.each([
    ['GET', '/api/v1/namespaces/default/pods', 'list pods'],
    ['GET', '/api/v1/namespaces/default/pods/web/log', 'get pods/log'],
    ['GET', '/api/v1/namespaces/default/pods?watch=true', 'watch pods'],
    ['POST', '/api/v1/namespaces/default/pods/web/exec', 'create pods/exec'],
    ['GET', '/api/v1/namespaces/default/pods/web/exec', 'get pods/exec'],
    ['DELETE', '/apis/apps/v1/namespaces/default/deployments', 'deletecollection deployments'],
    ['GET', '/api/v1/nodes/n1/proxy/metrics/cadvisor', 'get nodes/proxy'],
    ['GET', '/api/v1/proxy/namespaces/ns/services/s/a/b', 'proxy services'],
    ['OPTIONS', '/api/v1/pods', 'OPTIONS pods'], // no kube verb: the method stands in
    ['BREW', '/api/v1/pods', '_OTHER pods'],
    ['GET', '/api/v1/watch', 'get'],
    // non-resource: templates, never raw paths
    ['GET', '/', 'GET /'],
    ['GET', '/api', 'GET /api'],
    ['GET', '/apis', 'GET /apis'],
    ['GET', '/version', 'GET /version'],
    ['GET', '/api/v1', 'GET /api/{version}'],
    ['GET', '/apis/apps', 'GET /apis/{group}'],
    ['GET', '/apis/apps/v1', 'GET /apis/{group}/{version}'],
    ['GET', '/apis/apps/v1/', 'GET /apis/{group}/{version}'],
    ['GET', '/openapi/v2', 'GET /openapi/v2'],
    ['GET', '/openapi/v3', 'GET /openapi/v3'],
    ['GET', '/openapi/v3/apis/apps/v1', 'GET /openapi/v3/{path}'],
    ['GET', '/openapi/v9/x', 'GET /openapi/{path}'],
    ['GET', '/healthz', 'GET /healthz'],
    ['GET', '/readyz/etcd', 'GET /readyz/{path}'],
    ['GET', '/.well-known/openid-configuration', 'GET /.well-known/{path}'],
    ['GET', '/some-random-123', 'GET'],
    ['get', '/version', 'GET /version'],
    ['PURGE', '/version', '_OTHER /version'],
  ])('%s %s → %s', (method, url, name) => {
    expect(spanName(parse(method, url), method)).toBe(name);
  });

  it('never contains the query', () => {
    const info = parseRequestInfo('GET', '/openapi/v3/apis/apps/v1', 'hash=ABCDEF0123');
    expect(spanName(info, 'GET')).not.toContain('ABCDEF');
  });
});

describe('normalizeMethod', () => {
  it('upper-cases known methods and folds the rest into _OTHER', () => {
    expect(['get', 'Patch', 'DELETE', 'FOO', ''].map(normalizeMethod)).toEqual([
      'GET',
      'PATCH',
      'DELETE',
      '_OTHER',
      '_OTHER',
    ]);
  });
});

describe('isDiscovery', () => {
  it.each([
    ['/api', true],
    ['/api/', true],
    ['/apis', true],
    ['/api/v1', true],
    ['/apis/apps', true],
    ['/apis/apps/v1', true],
    ['/apis/extensions/v1beta1/', true],
    ['/openapi/v2', true],
    ['/openapi/v3', true],
    ['/openapi/v3/apis/apps/v1', true],
    ['/version', true],
    ['/', false],
    ['/healthz', false],
    ['/metrics', false],
    ['/version/extra', false],
    ['/api/v1/pods', false],
    ['/apis/apps/v1/deployments', false],
    ['/api/v1/namespaces', false],
  ])('%s → %s', (path, expected) => {
    expect(isDiscovery(parseRequestInfo('GET', path))).toBe(expected);
  });

  it('judges the path given, defaulting to the parsed one', () => {
    const info = parseRequestInfo('GET', '/healthz');
    expect(isDiscovery(info, '/apis')).toBe(true);
    expect(isDiscovery(info)).toBe(false);
  });
});

describe('requestInfoAttributes', () => {
  it('emits the contract keys for a namespaced, grouped subresource', () => {
    const info = parseRequestInfo('GET', '/apis/apps/v1/namespaces/kube-system/deployments/coredns/scale');
    expect(requestInfoAttributes(info)).toEqual({
      'kube.verb': 'get',
      'kube.resource': 'deployments',
      'kube.subresource': 'scale',
      'kube.name': 'coredns',
      'kube.api_group': 'apps',
      'kube.api_version': 'v1',
      'k8s.namespace.name': 'kube-system',
      'kube.discovery': false,
    });
  });

  it('omits empty values: core group, no name, no namespace, no subresource', () => {
    expect(requestInfoAttributes(parseRequestInfo('GET', '/api/v1/pods', 'limit=500'))).toEqual({
      'kube.verb': 'list',
      'kube.resource': 'pods',
      'kube.api_version': 'v1',
      'kube.discovery': false,
    });
  });

  it('marks discovery and keeps the method verb for non-resource requests', () => {
    expect(requestInfoAttributes(parseRequestInfo('GET', '/apis/apps/v1'))).toEqual({
      'kube.verb': 'get',
      'kube.discovery': true,
    });
  });

  it('derives the name of a watch through its field selector', () => {
    const info = parseRequestInfo(
      'GET',
      '/api/v1/namespaces/default/pods',
      'fieldSelector=metadata.name%3Dnginx-1&resourceVersion=0&watch=true',
    );
    expect(requestInfoAttributes(info)).toMatchObject({ 'kube.verb': 'watch', 'kube.name': 'nginx-1' });
  });

  it('emits no selector, query or path', () => {
    const info = parseRequestInfo('GET', '/api/v1/pods', 'labelSelector=secret%3Dhunter2&fieldSelector=a%3Db');
    expect(JSON.stringify(requestInfoAttributes(info))).not.toMatch(/hunter2|a=b/);
  });
});
