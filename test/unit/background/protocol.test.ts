import { describe, expect, it } from 'vitest';
import { fromHttp, fromLine, toHttp, toLine, type ControlMessage } from '../../../src/background/protocol.ts';

const messages: ControlMessage[] = [
  { op: 'status' },
  { op: 'stop', ifIdle: false },
  { op: 'stop', ifIdle: true },
  { op: 'finish', tag: 'abc123defg', color: false, width: undefined, life: undefined },
  {
    op: 'finish',
    tag: 'abc123defg',
    color: true,
    width: 120,
    life: { spawnedAt: 1700000000000.25, exitedAt: 1700000000100.5, exitCode: 1 },
  },
];

describe('a control message reads back as it was written, whichever way it travels', () => {
  it('over HTTPS (method, path and query)', () => {
    for (const msg of messages) {
      const { method, subpath } = toHttp(msg);
      const [path = '', query = ''] = subpath.split('?');
      expect(method).toBe(msg.op === 'status' ? 'GET' : 'POST');
      expect(fromHttp(path, query)).toEqual(msg);
    }
  });

  it('on the socket (one JSON line carrying the token)', () => {
    for (const msg of messages) {
      const line = toLine(msg, 'secret');
      expect(line.endsWith('\n')).toBe(true);
      expect(line.slice(0, -1)).not.toContain('\n');
      expect(fromLine(line)).toEqual({ msg, token: 'secret' });
    }
  });

  it('what names no control call is not one', () => {
    expect(fromHttp('commands/x/other', '')).toBeUndefined();
    expect(fromHttp('nothing', '')).toBeUndefined();
    expect(fromLine('not json')).toBeUndefined();
    expect(fromLine('{"op":"explode","token":"t"}')).toBeUndefined();
  });

  it("a finish's terminal width and kubectl's life are taken only when they make sense", () => {
    expect(fromHttp('commands/abc123defg/finish', 'color=1&width=-3&spawned=5&exited=4&exit=0')).toEqual({
      op: 'finish',
      tag: 'abc123defg',
      color: true,
      width: undefined,
      life: undefined,
    });
    expect(fromLine('{"op":"finish","tag":"abc123defg","width":"80","color":"1","life":{"spawnedAt":1}}')).toEqual({
      msg: { op: 'finish', tag: 'abc123defg', color: false, width: undefined, life: undefined },
      token: undefined,
    });
  });
});
