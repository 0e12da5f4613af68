import { describe, expect, it } from 'vitest';
import { upstreamLatency, upstreamLatencyAttributes, type UpstreamTimings } from '../../../src/stages/latency.ts';
import type { Attributes } from '../../../src/stages/attributes.ts';

/** The stage as the span sees it: timings in, the upstream span's attributes out. */
const latencyAttributes = (t: UpstreamTimings): Attributes => upstreamLatencyAttributes(upstreamLatency(t));

describe('latencyAttributes', () => {
  it('a new connection: connect from the socket, TLS, ttfb from request sent, transfer', () => {
    expect(
      latencyAttributes({
        start: 1000,
        socketAssigned: 1000.4,
        connectEnd: 1003.44,
        tlsEnd: 1010.06,
        requestSent: 1010.5,
        firstByte: 1030.62,
        end: 1042.13,
        reused: false,
      }),
    ).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': false,
      'upstream.connect_ms': 3,
      'upstream.tls_ms': 6.6,
      'upstream.ttfb_ms': 20.1,
      'upstream.transfer_ms': 11.5,
    });
  });

  it('measures connect from start when the socket time is unknown', () => {
    expect(latencyAttributes({ start: 10, connectEnd: 12.25, reused: false })).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': false,
      'upstream.connect_ms': 2.3,
    });
  });

  it('a reused connection: no connect or TLS, even if stale times are passed', () => {
    expect(
      latencyAttributes({
        start: 0,
        socketAssigned: 0.2,
        connectEnd: 5,
        tlsEnd: 9,
        requestSent: 0.3,
        firstByte: 12.34,
        end: 13,
        reused: true,
      }),
    ).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': true,
      'upstream.ttfb_ms': 12,
      'upstream.transfer_ms': 0.7,
    });
  });

  it('ttfb without requestSent (upgrades): from TLS end on a new connection', () => {
    const attrs = latencyAttributes({ start: 0, connectEnd: 2, tlsEnd: 8, firstByte: 20, reused: false });
    expect(attrs['upstream.ttfb_ms']).toBe(12);
  });

  it('ttfb without requestSent or tlsEnd on a new connection: from connect end', () => {
    expect(latencyAttributes({ start: 0, connectEnd: 2, firstByte: 20, reused: false })['upstream.ttfb_ms']).toBe(18);
  });

  it('ttfb without requestSent on a reused connection: from the socket, else from start', () => {
    expect(latencyAttributes({ start: 0, socketAssigned: 1, firstByte: 20, reused: true })['upstream.ttfb_ms']).toBe(
      19,
    );
    expect(latencyAttributes({ start: 0, firstByte: 20, reused: true })['upstream.ttfb_ms']).toBe(20);
  });

  it('omits what it cannot know: a connection that failed before TLS', () => {
    expect(latencyAttributes({ start: 0, socketAssigned: 0, connectEnd: 4, reused: false })).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': false,
      'upstream.connect_ms': 4,
    });
  });

  it('omits everything but reuse when only start is known', () => {
    expect(latencyAttributes({ start: 5, reused: false })).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': false,
    });
  });

  it('omits durations whose ends are out of order (a response before the body was sent)', () => {
    const attrs = latencyAttributes({ start: 0, requestSent: 50, firstByte: 40, end: 45, reused: true });
    expect(attrs).not.toHaveProperty('upstream.ttfb_ms');
    expect(attrs['upstream.transfer_ms']).toBe(5);
  });

  it('omits durations with non-finite ends', () => {
    const attrs = latencyAttributes({
      start: 0,
      requestSent: 0,
      firstByte: Number.NaN,
      end: Number.POSITIVE_INFINITY,
      reused: true,
    });
    expect(attrs).toEqual({ 'network.protocol.version': '1.1', 'upstream.connection_reused': true });
  });

  it('keeps zero durations', () => {
    expect(latencyAttributes({ start: 3, requestSent: 3, firstByte: 3, end: 3, reused: true })).toEqual({
      'network.protocol.version': '1.1',
      'upstream.connection_reused': true,
      'upstream.ttfb_ms': 0,
      'upstream.transfer_ms': 0,
    });
  });

  it('rounds to 0.1 ms', () => {
    const attrs = latencyAttributes({ start: 0, requestSent: 0, firstByte: 0.04, end: 0.16, reused: true });
    expect(attrs['upstream.ttfb_ms']).toBe(0);
    expect(attrs['upstream.transfer_ms']).toBe(0.1);
  });

  it('names the protocol: "2" for a stream on a shared HTTP/2 connection, "1.1" otherwise', () => {
    expect(latencyAttributes({ start: 0, firstByte: 2, reused: true, h2: true })['network.protocol.version']).toBe('2');
    expect(latencyAttributes({ start: 0, firstByte: 2, reused: true, h2: false })['network.protocol.version']).toBe(
      '1.1',
    );
  });
});
