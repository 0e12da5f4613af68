/** The only place kubetrail writes to the terminal. stdout is the wrapped command's; kubetrail uses stderr. */
export function errLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function outLine(line: string): void {
  process.stdout.write(`${line}\n`);
}
