// Small helpers shared by the end-to-end tests: input files, watching a running transfer,
// and reading numbers out of the -v summary.

import { readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { makeRandomFile } from "./netns";

/** A random file of `bytes` in `dir`. */
export async function randomFile(dir: string, name: string, bytes: number): Promise<string> {
  const path = `${dir}/${name}`;
  await makeRandomFile(path, bytes);
  return path;
}

/** The receiver's output file of a running transfer() (its name is transfer's choice). */
export function outputOf(input: string): string | null {
  const f = readdirSync(dirname(input)).find((n) => n.startsWith(`${basename(input)}.out.`) && !n.endsWith(".rc"));
  return f ? join(dirname(input), f) : null;
}

export function sizeOf(path: string | null): number {
  if (!path) return 0;
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export const running = (p: Bun.Subprocess) => p.exitCode === null && p.signalCode === null;

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** A per-link counter from a -v summary line such as "  eth0: ... 12 bad ...". */
export function vcount(stderr: string, dev: string, field: string): number {
  const m = new RegExp(`^  ${dev}:.*?(\\d+) ${field}\\b`, "m").exec(stderr);
  if (!m) throw new Error(`no "${field}" for ${dev} in:\n${stderr}`);
  return Number(m[1]);
}
