/**
 * The rewritten kubeconfig, written as every private file is (src/fs/private.ts): 0600 from the first byte,
 * in full, renamed into place, in a directory that is this user's alone.
 */
import { stringify } from 'yaml';
import { writePrivateFile } from '../fs/private.ts';
import type { Entry } from './load.ts';

export function writeKubeconfig(file: string, config: Entry): void {
  writePrivateFile(
    file,
    `# Written by kubetrail; every cluster points at the local kubetrail proxy.\n${stringify(config)}`,
  );
}
