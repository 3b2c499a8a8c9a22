// Starting a Worker of ours: post its init message, wait for its "ready" (or its error).

import { L2Error } from "../errors";

/**
 * What to pass to `new Worker` for one of src/workers/. Inside the compiled binary, a URL built
 * from import.meta.url names the source file at its build-time path, and Bun loads that file when
 * it exists (a newer checkout, or anything anyone put there) instead of the copy embedded in the
 * binary; a relative specifier always finds the embedded copy. From source, the URL is right.
 */
function workerSpecifier(name: "compressor" | "output"): string {
  return Bun.main.startsWith("/$bunfs/") ? `./workers/${name}.ts` : new URL(`./${name}.ts`, import.meta.url).href;
}

/** A new Worker running src/workers/<name>.ts. */
export function createWorker(name: "compressor" | "output"): Worker {
  return new Worker(workerSpecifier(name), {
    // Bun would give the Worker the environment from process start; L2PIPE_LZ4_LIB may be set later.
    env: { ...process.env } as Record<string, string>,
  });
}

/** Resolves when the Worker says "ready"; rejects with its message (and exit code) or its error, as `what` failing to start. */
export function startWorker(w: Worker, init: unknown, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    w.onmessage = (ev: MessageEvent) => {
      const m = ev.data as { type: string; message?: string; exitCode?: number };
      w.onmessage = null;
      w.onerror = null;
      if (m.type === "ready") resolve();
      else reject(new L2Error(m.message ?? `${what} failed to start`, m.exitCode));
    };
    w.onerror = (ev) => {
      w.onerror = null;
      reject(new L2Error(`${what} failed to start: ${ev.message}`));
    };
    w.postMessage(init);
  });
}
