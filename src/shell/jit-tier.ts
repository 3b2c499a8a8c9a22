// JavaScriptCore's top tier (FTL) costs l2pipe more than it gives: compiling the per-frame code
// with it took ~0.15 CPU-s per side on a 1 GiB run, and the code it made ran no faster than the
// tier below's. 1 GiB over one veth, -0, perf samples of both sides, three alternating rounds:
// with FTL sender 1.09-1.23 s (compiler thread 0.14-0.17), receiver 0.85-0.98; without it
// 1.00-1.03 (0.08-0.09) and 0.80-0.81. The runtime reads its options from the environment once,
// at start, so the binary starts itself again with the option set: execve keeps the process id,
// descriptors and signal dispositions, and costs ~10 ms.

import { readFileSync } from "node:fs";
import { ptr } from "bun:ffi";
import { asPtr, libc } from "../../ffi/libc";

const OPTION = "BUN_JSC_useFTLJIT";

/** A NULL-terminated table of pointers to the NUL-terminated strings packed in `packed`. */
function pointerTable(packed: Uint8Array): BigUint64Array {
  const starts: number[] = [];
  for (let i = 0; i < packed.length; i++) if (i === 0 || packed[i - 1] === 0) starts.push(i);
  const base = ptr(packed) as number;
  const table = new BigUint64Array(starts.length + 1);
  starts.forEach((s, i) => (table[i] = BigInt(base + s)));
  return table;
}

/**
 * In the compiled binary, unless the option is already set (by the user, or by this on the
 * first start): runs the same binary again (/proc/self/exe) with the same arguments and
 * environment, byte for byte, plus the option. Returns only if it did not (running from source,
 * no /proc, or execve failed: then the run goes on as it is).
 */
export function restartWithoutFtl(): void {
  if (!Bun.main.startsWith("/$bunfs/") || process.env[OPTION] !== undefined) return;
  let args: Uint8Array;
  let env: Uint8Array;
  try {
    args = readFileSync("/proc/self/cmdline");
    const environ = readFileSync("/proc/self/environ");
    env = new Uint8Array(environ.length + OPTION.length + 3);
    env.set(environ);
    env.set(new TextEncoder().encode(`${OPTION}=0\0`), environ.length);
  } catch {
    return;
  }
  if (args.length === 0 || args[args.length - 1] !== 0 || env[0] === 0) return;
  const path = new TextEncoder().encode("/proc/self/exe\0");
  const argv = pointerTable(args);
  const envp = pointerTable(env);
  libc().execve(asPtr(ptr(path) as number), asPtr(ptr(argv) as number), asPtr(ptr(envp) as number));
}
