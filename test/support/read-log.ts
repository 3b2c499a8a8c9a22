// A consumer for the receiver's stdout: copies stdin to stdout and logs every read as
// "milliseconds bytes" to the file named by argv[2], so a test can see the write pattern.
import { readSync, writeSync, writeFileSync } from "node:fs";

const log: string[] = [];
const buf = Buffer.alloc(8 << 20);
const t0 = performance.now();
for (;;) {
  let n: number;
  try {
    n = readSync(0, buf, 0, buf.length, null);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EAGAIN") continue;
    throw e;
  }
  if (n === 0) break;
  log.push(`${(performance.now() - t0).toFixed(1)} ${n}`);
  let off = 0;
  while (off < n) off += writeSync(1, buf, off, n - off);
}
writeFileSync(process.argv[2], log.join("\n") + "\n");
