/** The state dir: this user's, 0700, its files 0600, its CA a certificate and key that have not expired. */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../../errors.ts';
import type { Finding } from './format.ts';

export function checkStateDir(dir: string): Finding[] {
  const subject = 'state dir';
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return [
        { level: 'ok', subject, message: `${dir} does not exist yet: kubetrail creates it (0700) on its first run` },
      ];
    }
    return [
      {
        level: 'fail',
        subject,
        message: `${dir}: ${describeError(err)}`,
        fix: 'make it readable by you, or pass --state-dir DIR',
      },
    ];
  }
  if (!st.isDirectory())
    return [
      { level: 'fail', subject, message: `${dir} is not a directory`, fix: 'remove it, or pass --state-dir DIR' },
    ];
  const out: Finding[] = [];
  const mode = (m: number): string => (m & 0o777).toString(8).padStart(4, '0');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    out.push({
      level: 'fail',
      subject,
      message: `${dir} belongs to uid ${st.uid}, not to you (uid ${uid})`,
      fix: `use your own: pass --state-dir DIR (or chown -R ${uid} ${dir})`,
    });
  }
  if ((st.mode & 0o077) !== 0) {
    out.push({
      level: 'warn',
      subject,
      message: `${dir} is ${mode(st.mode)}: others may list it (it holds kubetrail's CA key and kubeconfigs with your credentials)`,
      fix: `chmod 700 ${dir} (kubetrail also tightens it to 0700 on its next run)`,
    });
  }
  const open: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) {
        if ((s.mode & 0o077) !== 0) open.push(`${p} (${mode(s.mode)})`);
        walk(p);
      } else if ((s.mode & 0o077) !== 0) {
        open.push(`${p} (${mode(s.mode)})`);
      }
    }
  };
  try {
    walk(dir);
  } catch (err) {
    out.push({
      level: 'fail',
      subject,
      message: `cannot read ${dir}: ${describeError(err)}`,
      fix: 'make it readable by you, or pass --state-dir DIR',
    });
  }
  if (open.length > 0) {
    out.push({
      level: 'fail',
      subject,
      message: `readable by others: ${open.join(', ')}`,
      fix: `chmod -R go-rwx ${dir}; if others could read ca.pem, delete ${join(dir, 'ca.pem')} and ${join(dir, 'server.pem')} so kubetrail makes a new CA`,
    });
  }
  try {
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(ca)?.[0];
    if (!cert || !/-----BEGIN PRIVATE KEY-----/.test(ca)) throw new Error('not a certificate and key');
    const x = new X509Certificate(cert);
    if (Date.parse(x.validTo) < Date.now()) throw new Error(`expired ${x.validTo}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      out.push({
        level: 'fail',
        subject,
        message: `${join(dir, 'ca.pem')}: ${describeError(err)}`,
        fix: `delete ${join(dir, 'ca.pem')} and ${join(dir, 'server.pem')}: kubetrail makes a new CA (then re-run \`kubetrail kubeconfig\`)`,
      });
    }
  }
  if (!out.some((f) => f.level !== 'ok')) out.push({ level: 'ok', subject, message: `${dir} is 0700, its files 0600` });
  return out;
}
