import { describe, expect, it } from 'vitest';
import { commandTraceLine, renderWaterfall } from '../../../src/report/waterfall.ts';
import { totals, type CommandSummary, type RequestSummary } from '../../../src/telemetry/commands.ts';
import { requestSummary } from '../../helpers/summaries.ts';

function req(over: Partial<RequestSummary>): RequestSummary {
  return requestSummary({ id: 'x', ...over });
}

const cmd: CommandSummary = {
  traceId: '0123456789abcdef0123456789abcdef',
  command: 'kubectl get',
  session: 's',
  startedAt: 1_000,
  durationMs: 400,
  requests: [
    req({
      name: 'GET /api',
      discovery: true,
      startedAt: 1_000,
      durationMs: 60,
      items: 1,
      connectMs: 1.2,
      tlsMs: 3.4,
      ttfbMs: 40,
      transferMs: 15,
      reused: false,
    }),
    req({ name: 'GET /apis/{group}/{version}', discovery: true, startedAt: 1_070, durationMs: 40 }),
    req({
      name: 'list pods',
      startedAt: 1_120,
      durationMs: 250,
      items: 500,
      bytes: 2_500_000,
      ttfbMs: 210,
      transferMs: 39,
    }),
    req({ name: 'list pods', startedAt: 1_380, durationMs: 20, items: 100, page: true }),
  ],
};

describe('what a command read (#19 item 4)', () => {
  const get = (over: Partial<RequestSummary>): RequestSummary =>
    req({
      name: 'get configmaps',
      path: '/api/v1/namespaces/default/configmaps/x',
      reads: 'object',
      group: '',
      namespace: 'default',
      objectName: 'x',
      items: undefined,
      ...over,
    });
  const head = (requests: RequestSummary[]): string =>
    renderWaterfall({ ...cmd, requests }, { jaegerUrl: 'http://j', color: false })[0] ?? '';

  it('a single GET is 1 object, as a Table of one row (no "items in 1 page") or as the object itself (-o yaml)', () => {
    const table = get({ items: 1 });
    expect(totals([table])).toMatchObject({ objects: 1, items: 0, pages: 0 });
    expect(head([table])).toBe('kubectl get · 1 request · 400ms · 1 object');
    expect(renderWaterfall({ ...cmd, requests: [table] }, { jaegerUrl: 'http://j', color: false })[1]).not.toContain(
      'item',
    );
    expect(totals([get({ items: undefined })])).toMatchObject({ objects: 1, items: 0, pages: 0 });
  });

  it("a NotFound reads nothing, nor does kubectl's namespace check after it; a namespace read for itself counts", () => {
    const missing = get({ statusCode: 404, objectName: 'nope' });
    const check = get({
      name: 'get namespaces',
      path: '/api/v1/namespaces/default',
      namespace: '',
      objectName: 'default',
      startedAt: 1_020,
      items: 1,
    });
    expect(totals([missing, check])).toMatchObject({ objects: 0, items: 0, pages: 0 });
    expect(head([missing, check])).toBe('kubectl get · 2 requests · 400ms');
    expect(totals([check])).toMatchObject({ objects: 1 });
    // Three missing objects (get -k): nothing read, not "3 items in 3 pages".
    expect(totals([1, 2, 3].map((i) => get({ statusCode: 404, objectName: `m${i}`, items: 1 })))).toMatchObject({
      objects: 0,
      items: 0,
      pages: 0,
    });
  });

  it('lists and single objects apart; one item is "1 item"', () => {
    expect(head([req({ items: 1 })])).toBe('kubectl get · 1 request · 400ms · 1 item in 1 page');
    expect(head([req({ items: 12 }), req({ items: 3, page: true }), get({}), get({ objectName: 'y' })])).toBe(
      'kubectl get · 4 requests · 400ms · 15 items in 2 pages, 2 objects',
    );
    // A failed list and a watch are no page.
    expect(
      totals([req({ items: 0, statusCode: 403 }), req({ name: 'watch pods', items: undefined, watchEvents: 3 })]),
    ).toMatchObject({ items: 0, pages: 0, objects: 0 });
  });
});

describe('renderWaterfall', () => {
  it('says when upstream connections were shared (--reuse-upstream), within 80 columns, and not otherwise', () => {
    const shared = renderWaterfall(
      { ...cmd, upstreamShared: true },
      { jaegerUrl: 'http://localhost:16686', color: false },
    );
    const line = shared.find((l) => l.startsWith('upstream: shared connections (--reuse-upstream)'));
    expect(line).toBeDefined();
    expect(line?.length).toBeLessThanOrEqual(80);
    expect(renderWaterfall(cmd, { jaegerUrl: 'http://localhost:16686', color: false }).join('\n')).not.toContain(
      'shared connections',
    );
  });

  it('marks a count that is a lower bound (a list decoded only up to the scan budget) with ≥', () => {
    const big: CommandSummary = {
      ...cmd,
      requests: [req({ name: 'list pods', items: 3902, itemsPartial: true, bytes: 86_000_000 })],
    };
    const lines = renderWaterfall(big, { jaegerUrl: 'http://localhost:16686', color: false });
    expect(lines[0]).toContain('≥3902 items in 1 page');
    expect(lines[1]).toContain('≥3902 items');
  });

  it('a row per request in time order, on a shared axis, within 80 columns and with no colour off a TTY', () => {
    const lines = renderWaterfall(cmd, { jaegerUrl: 'http://localhost:16686/', color: false });
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(80);
    expect(lines.join('\n')).not.toMatch(/\x1b\[/);
    expect(lines[0]).toBe('kubectl get · 4 requests · 400ms · 600 items in 2 pages');
    const rows = lines.slice(1, 5);
    expect(rows.map((r) => r.trim().split(/\s{2,}|\s(?=\d{3}\s)/)[0])).toEqual([
      'GET /api',
      'GET /apis/{group}/{version}',
      'list pods',
      'list pods',
    ]);
    // Bars start where the request started: later requests start further right.
    const barStart = rows.map((r) => r.indexOf('█'));
    expect(barStart).toEqual([...barStart].sort((a, b) => a - b));
    expect(rows[2]).toContain('500 items 2.4MB');
  });

  it("calls out the slowest request's stages, the discovery share, and ends with the Jaeger link", () => {
    const text = renderWaterfall(cmd, { jaegerUrl: 'http://localhost:16686/', color: false }).join('\n');
    expect(text).toContain('slowest: list pods 250ms\n  reused conn · TTFB 210ms · transfer 39.0ms');
    expect(text).toContain('discovery: 2 requests, 100ms (25% of the command)');
    expect(text.split('\n').at(-1)).toBe('trace: http://localhost:16686/trace/0123456789abcdef0123456789abcdef');
  });

  it('explains a denial and colours only when asked', () => {
    const denied: CommandSummary = {
      ...cmd,
      requests: [
        req({
          statusCode: 403,
          rbac: { decision: 'denied', denial: { user: 'mallory', verb: 'list', resource: 'pods' } },
        }),
      ],
    };
    const plain = renderWaterfall(denied, { jaegerUrl: 'http://j', color: false });
    expect(plain).toContain('rbac: denied for mallory: cannot list pods');
    const coloured = renderWaterfall(denied, { jaegerUrl: 'http://j', color: true }).join('\n');
    expect(coloured).toMatch(/\x1b\[33m403\x1b\[0m/);
  });
});

describe('renderWaterfall: the terminal width (#12 item 8)', () => {
  const long: CommandSummary = {
    ...cmd,
    requests: [
      req({
        name: 'list validatingadmissionpolicybindings',
        group: 'admissionregistration.k8s.io',
        startedAt: 1_000,
        durationMs: 30,
        items: 0,
      }),
      req({ name: 'list events', group: '', startedAt: 1_040, durationMs: 50, items: 12 }),
      req({ name: 'list events', group: 'events.k8s.io', startedAt: 1_100, durationMs: 290, items: 12 }),
    ],
  };
  const url = 'http://localhost:16686/trace/0123456789abcdef0123456789abcdef';

  it('at 200 columns, the name column holds whole names and the group where two names collide', () => {
    const lines = renderWaterfall(long, { jaegerUrl: 'http://localhost:16686', color: false, width: 200 });
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(200);
    const rows = lines.slice(1, 4);
    expect(rows[0]).toMatch(/^ {2}list validatingadmissionpolicybindings +200 /);
    // `list events` twice, once per API group: the group tells them apart, as kubectl's resource.group does.
    expect(rows[1]).toMatch(/^ {2}list events +200 /);
    expect(rows[2]).toMatch(/^ {2}list events\.events\.k8s\.io +200 /);
    // The bar uses the room: wider than at 80 columns.
    const bar = (l: string): number => (l.match(/█+/)?.[0] ?? '').length;
    const narrow = renderWaterfall(long, { jaegerUrl: 'http://localhost:16686', color: false, width: 80 });
    expect(bar(rows[2] ?? '')).toBeGreaterThan(bar(narrow[3] ?? '') * 2);
    expect(lines.at(-1)).toBe(`trace: ${url}`);
  });

  it('at 40 columns, every row fits and the trace link stays whole on a line of its own', () => {
    const lines = renderWaterfall(long, { jaegerUrl: 'http://localhost:16686', color: false, width: 40 });
    const others = lines.filter((l) => l !== url);
    for (const l of others) expect(l.length, l).toBeLessThanOrEqual(40);
    expect(lines).toContain(url);
    // Each row still has its status and duration.
    for (const r of lines.slice(1, 4)) expect(r).toMatch(/ 200 .* \d+(\.\d)?ms/);
  });
});

describe('renderWaterfall: a watch (#12 item 7)', () => {
  it('prints no slowest or discovery block: a watch lasts as long as the user chose', () => {
    const watch: CommandSummary = {
      ...cmd,
      durationMs: 42_980,
      requests: [
        req({ name: 'GET /api', discovery: true, startedAt: 1_000, durationMs: 6 }),
        req({ name: 'list pods', startedAt: 1_010, durationMs: 8, items: 3 }),
        req({ name: 'watch pods', startedAt: 1_020, durationMs: 42_960, watchEvents: 12 }),
      ],
    };
    const text = renderWaterfall(watch, { jaegerUrl: 'http://j', color: false }).join('\n');
    expect(text).not.toMatch(/^slowest:|^discovery:/m);
    expect(text).toContain('43.0s');
    expect(text).toContain('12 ev');
  });
});

describe('a trace that was not sent (#12 item 5)', () => {
  it('the waterfall says why instead of a link that would lead nowhere', () => {
    const lines = renderWaterfall(cmd, {
      jaegerUrl: 'http://localhost:16686',
      color: false,
      exportNote: 'cannot export to http://127.0.0.1:9/v1/traces (connection refused)',
    });
    expect(lines.at(-1)).toBe('trace not sent: cannot export to http://127.0.0.1:9/v1/traces (connection refused)');
    expect(lines.join('\n')).not.toContain('/trace/');
  });

  it("start mode's line: the link, or the command and why there is none", () => {
    expect(commandTraceLine(cmd, 'http://j/', undefined)).toBe(
      'trace: http://j/trace/0123456789abcdef0123456789abcdef kubectl get (4 requests, 400ms)',
    );
    expect(
      commandTraceLine(
        { ...cmd, requests: cmd.requests.slice(0, 1), durationMs: 42_980 },
        'http://j',
        'export disabled by OTEL_SDK_DISABLED',
      ),
    ).toBe('trace not sent: kubectl get (1 request, 43.0s): export disabled by OTEL_SDK_DISABLED');
  });
});
