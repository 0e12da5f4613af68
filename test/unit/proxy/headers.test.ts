import { describe, expect, it } from 'vitest';
import {
  forwardHeaders,
  h2RawHeaders,
  h2RequestHeaders,
  header,
  headerAll,
  responseFacts,
  responseHead,
  withoutPseudoHeaders,
} from '../../../src/proxy/headers.ts';

describe('forwardHeaders', () => {
  it('keeps order, case and duplicates, and drops hop-by-hop headers and those Connection names', () => {
    const raw = [
      'Host',
      'kt:1',
      'Warning',
      'a',
      'Connection',
      'keep-alive, X-Hop',
      'X-Hop',
      'gone',
      'Keep-Alive',
      'timeout=5',
      'Warning',
      'b',
      'Proxy-Authorization',
      'Basic x',
      'TE',
      'trailers',
    ];
    expect(forwardHeaders(raw, { keepUpgrade: false })).toEqual(['Host', 'kt:1', 'Warning', 'a', 'Warning', 'b']);
  });

  it('replaces Host in place, once, and adds it first when the client sent none', () => {
    expect(
      forwardHeaders(['Accept', '*/*', 'host', 'a', 'Host', 'b'], { keepUpgrade: false, host: 'api:6443' }),
    ).toEqual(['Accept', '*/*', 'host', 'api:6443']);
    expect(forwardHeaders(['Accept', '*/*'], { keepUpgrade: false, host: 'api:6443' })).toEqual([
      'Host',
      'api:6443',
      'Accept',
      '*/*',
    ]);
  });

  it('keeps Connection and Upgrade for an upgrade request', () => {
    const raw = ['Connection', 'Upgrade', 'Upgrade', 'SPDY/3.1', 'X-Stream-Protocol-Version', 'v4.channel.k8s.io'];
    expect(forwardHeaders(raw, { keepUpgrade: true })).toEqual(raw);
  });

  it("puts kubetrail's added headers last, in place of any the client sent by the same name", () => {
    const out = forwardHeaders(['traceparent', 'client', 'Accept', 'x'], {
      keepUpgrade: false,
      add: { Traceparent: '00-abc', 'Audit-ID': 'id' },
    });
    expect(out).toEqual(['Accept', 'x', 'Traceparent', '00-abc', 'Audit-ID', 'id']);
  });
});

describe('header lookups', () => {
  const raw = ['Warning', '299 - "one"', 'Content-Type', 'application/json', 'warning', '299 - "two"'];
  it('finds the first value and every value, whatever the case', () => {
    expect(header(raw, 'content-type')).toBe('application/json');
    expect(header(raw, 'audit-id')).toBeUndefined();
    expect(headerAll(raw, 'warning')).toEqual(['299 - "one"', '299 - "two"']);
  });

  it("reads the stages' facts from an answer's head", () => {
    const facts = responseFacts(12, 429, [
      'Retry-After',
      '1',
      'Audit-Id',
      'x',
      'X-Kubernetes-PF-FlowSchema-UID',
      'f',
      ...raw,
    ]);
    expect(facts).toMatchObject({
      t: 12,
      statusCode: 429,
      retryAfter: '1',
      auditId: 'x',
      flowSchemaUid: 'f',
      contentType: 'application/json',
      warnings: ['299 - "one"', '299 - "two"'],
    });
  });
});

describe('HTTP/2 heads', () => {
  it('turns Host into :authority, joins repeated headers and drops what HTTP/2 forbids', () => {
    const h = h2RequestHeaders(
      ['Host', 'api:6443', 'Impersonate-Group', 'a', 'Impersonate-Group', 'b', 'Transfer-Encoding', 'chunked'],
      'GET',
      '/api/v1/pods?watch=1',
    );
    expect(h).toEqual({
      ':method': 'GET',
      ':path': '/api/v1/pods?watch=1',
      ':authority': 'api:6443',
      'impersonate-group': ['a', 'b'],
    });
  });

  it('lists an answer without its pseudo-headers', () => {
    expect(h2RawHeaders({ ':status': 200, 'content-type': 'application/json', warning: ['a', 'b'] } as never)).toEqual([
      'content-type',
      'application/json',
      'warning',
      'a',
      'warning',
      'b',
    ]);
    expect(withoutPseudoHeaders([':status', '200', 'content-type', 'x'])).toEqual(['content-type', 'x']);
  });
});

describe('responseHead', () => {
  it('writes a head byte for byte as given', () => {
    expect(responseHead(101, 'Switching Protocols', ['Upgrade', 'SPDY/3.1', 'Connection', 'Upgrade'])).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n',
    );
  });
});
