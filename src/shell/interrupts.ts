// SIGINT, SIGTERM and SIGHUP end a run on purpose: the loop notices, tells the peer, exits 128+n.

import { EXIT_SIGNAL_BASE } from "../errors";

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/**
 * Longest sleep of an event loop in poll(). The cores' nextTimeout covers every protocol timer,
 * but a signal handler runs only in Bun's event loop, which the loops enter between their
 * sleeps (breathe), and -p progress is redrawn there too: so they wake at least this often.
 */
export const MAX_SLEEP_MS = 50;

/** Milliseconds to sleep in poll() until an absolute deadline (Infinity: none), at most MAX_SLEEP_MS. */
export function sleepMs(deadline: number, now: number): number {
  const ms = deadline - now;
  // Compared first, not Math.ceil(Infinity): its optimized code deoptimized on that (an overflow).
  return ms >= MAX_SLEEP_MS ? MAX_SLEEP_MS : ms > 0 ? Math.ceil(ms) : 0;
}

export class Interrupts {
  private received: string | null = null;

  constructor() {
    for (const sig of Object.keys(SIGNALS)) {
      process.on(sig as NodeJS.Signals, () => {
        this.received ??= sig;
      });
    }
  }

  private lastBreath = performance.now();

  /** The event loops sleep in poll(), not in Bun's loop: time to let signal handlers run? */
  due(now: number): boolean {
    return now - this.lastBreath > 20;
  }

  /** Lets Bun's event loop run once; returns the signal that arrived meanwhile, if any. */
  async breathe(): Promise<string | null> {
    await Bun.sleep(0);
    this.lastBreath = performance.now();
    return this.received;
  }

  exitCode(): number {
    return EXIT_SIGNAL_BASE + (this.received ? SIGNALS[this.received] : 0);
  }
}
