import { describe, expect, it } from 'vitest';
import { redactUrl, redactUserinfo, splitUserinfo } from '../../src/redact.ts';

describe('URL userinfo redaction', () => {
  it('replaces user and password, keeps the rest as written', () => {
    expect(redactUrl('http://user:pa%40ss@collector:4318/v1/traces')).toBe('http://***@collector:4318/v1/traces');
    expect(redactUrl('https://token@jaeger.example')).toBe('https://***@jaeger.example');
    expect(redactUrl('http://localhost:16686')).toBe('http://localhost:16686');
  });
  it('cleans what does not parse, and URLs quoted in a message', () => {
    expect(redactUrl('http://u:p@[bad')).toBe('http://***@[bad');
    expect(redactUserinfo('POST http://u:secret@h:1/v1/traces failed; see https://a:b@c/')).toBe(
      'POST http://***@h:1/v1/traces failed; see https://***@c/',
    );
  });
  it('splits userinfo into a Basic authorization for a request that needs it', () => {
    expect(splitUserinfo('http://al%3Ace:pw@jaeger:16686/')).toEqual({
      url: 'http://jaeger:16686/',
      authorization: `Basic ${Buffer.from('al:ce:pw').toString('base64')}`,
    });
    expect(splitUserinfo('http://jaeger:16686/')).toEqual({ url: 'http://jaeger:16686/', authorization: undefined });
  });
});
