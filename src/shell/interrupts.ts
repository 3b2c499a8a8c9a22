// SIGINT, SIGTERM and SIGHUP end a run on purpose: the loop notices, tells the peer, exits 128+n.

import { EXIT_SIGNAL_BASE } from "../errors";

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

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
