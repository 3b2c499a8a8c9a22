// JavaScriptCore's top tier (FTL) costs l2pipe more than it gives: compiling the per-frame code
// with it took ~0.15 CPU-s per side on a 1 GiB run, and the code it made ran no faster than the
// tier below's. 1 GiB over one veth, -0, perf samples of both sides, three alternating rounds:
// with FTL sender 1.09-1.23 s (compiler thread 0.14-0.17), receiver 0.85-0.98; without it
// 1.00-1.03 (0.08-0.09) and 0.80-0.81. The runtime reads its options from the environment once,
// at start, so the binary starts itself again with the option set: execve keeps the process id,
// descriptors and signal dispositions, and costs ~10 ms.

import { ptr } from "bun:ffi";
import { asPtr, libc } from "../../ffi/libc";

const OPTION = "BUN_JSC_useFTLJIT";

function cStrings(list: string[]): { table: BigUint64Array; keep: Uint8Array[] } {
  const keep = list.map((s) => new TextEncoder().encode(s + "\0"));
  const table = new BigUint64Array(list.length + 1);
  keep.forEach((b, i) => (table[i] = BigInt(ptr(b) as number)));
  return { table, keep };
}

/**
 * In the compiled binary, unless the option is already set (by the user, or by this on the
 * first start): runs the binary again with FTL off. Returns only if it did not (running from
 * source, or execve failed: then the run goes on as it is).
 */
export function restartWithoutFtl(): void {
  if (!Bun.main.startsWith("/$bunfs/") || process.env[OPTION] !== undefined) return;
  const path = new TextEncoder().encode(process.execPath + "\0");
  const argv = cStrings([process.argv0, ...process.argv.slice(2)]);
  const env = cStrings([...Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ""}`), `${OPTION}=0`]);
  libc().execve(asPtr(ptr(path) as number), asPtr(ptr(argv.table) as number), asPtr(ptr(env.table) as number));
  void argv.keep;
  void env.keep;
}
